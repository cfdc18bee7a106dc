"""Operator interfaces must be a Tech/resource the dialplan can Dial: 422 naming the field."""

from __future__ import annotations

import re

import pytest

from callrouter.domain.interfaces import INTERFACE_PATTERN, MAX_INTERFACE_LENGTH
from tests.api.conftest import World

# Each of these the dialplan refuses as CALLROUTER_TARGET (or Dial misreads), or a queue
# member cannot hold whole.
NOT_DIALABLE = [
    "1009",  # no technology: Dial fails with INVALIDARGS and ends the call
    "/1009",
    "PJSIP/",
    "9PJSIP/1009",
    "PJSIP/10,09",  # ',' ends Dial's first argument: the rest becomes the timeout
    "PJSIP/1009(x)",
    "PJSIP/[1009]",
    "PJSIP/1009&PJSIP/1010",  # '&' rings several devices at once
    "PJSIP/1009|x",
    "PJSIP/10 09",
    "PJSIP/1009\n",
    "PJSIP/1009;x",
    "PJSIP/${EVIL}",
    "PJSIP/" + "1" * (MAX_INTERFACE_LENGTH - 5),  # 80 characters: app_queue keeps 79
]
DIALABLE = [
    "PJSIP/1009",
    "SIP/anna.smith",
    "Local/op9@operators/n",
    "IAX2/user:secret@host",
    "PJSIP/+79123456789@trunk",
    "DAHDI/g1/5551234",
    "PJSIP/" + "1" * (MAX_INTERFACE_LENGTH - 6),
]


@pytest.mark.parametrize("interface", NOT_DIALABLE)
async def test_create_refuses_an_interface_the_dialplan_cannot_dial(
    world: World, interface: str
) -> None:
    async with world.client("admin") as client:
        r = await client.post("/api/v1/operators", json={
            "id": "op9", "name": "Nina", "interfaces": ["PJSIP/1009", interface],
        })
        missing = await client.get("/api/v1/operators/op9")
    assert r.status_code == 422, r.text
    problem = r.json()
    assert [e["field"] for e in problem["errors"]] == ["interfaces.1"]
    assert problem["detail"].startswith(
        "body.interfaces.1: expected an Asterisk interface Tech/resource such as PJSIP/1001"
    )
    assert "\n" not in problem["detail"]
    assert missing.status_code == 404, "nothing was created"


@pytest.mark.parametrize("interface", NOT_DIALABLE)
async def test_update_refuses_an_interface_the_dialplan_cannot_dial(
    world: World, interface: str
) -> None:
    async with world.client("admin") as client:
        r = await client.patch("/api/v1/operators/op1", json={"interfaces": [interface]})
        after = await client.get("/api/v1/operators/op1")
    assert r.status_code == 422, r.text
    problem = r.json()
    assert [e["field"] for e in problem["errors"]] == ["interfaces.0"]
    assert "Tech/resource" in problem["detail"]
    assert after.json()["interfaces"] == ["PJSIP/1001"], "the operator is unchanged"


async def test_create_and_update_accept_dialable_interfaces(world: World) -> None:
    async with world.client("admin") as client:
        created = await client.post("/api/v1/operators", json={
            "id": "op9", "name": "Nina", "interfaces": DIALABLE[:4],
        })
        updated = await client.patch("/api/v1/operators/op9",
                                     json={"interfaces": DIALABLE[4:]})
    assert created.status_code == 201, created.text
    assert created.json()["interfaces"] == DIALABLE[:4]
    assert updated.status_code == 200, updated.text
    assert updated.json()["interfaces"] == DIALABLE[4:]


async def test_openapi_describes_the_interface_rule(world: World) -> None:
    async with world.client() as client:
        spec = (await client.get("/api/v1/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    for model in ("OperatorCreate", "OperatorUpdate"):
        interfaces = schemas[model]["properties"]["interfaces"]
        items = [s["items"] for s in interfaces.get("anyOf", [interfaces]) if "items" in s]
        assert items == [
            {"type": "string", "pattern": INTERFACE_PATTERN, "maxLength": MAX_INTERFACE_LENGTH}
        ], model
    # what the schema promises is what the API accepts, for clients that check first
    assert all(re.fullmatch(INTERFACE_PATTERN.strip("^$"), i) for i in DIALABLE)
