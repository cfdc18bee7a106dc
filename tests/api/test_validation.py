"""422 answers name the field that is wrong, in ``detail`` and in ``errors``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import ANNA_CALLER, World


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", f"/api/v1/callers/{ANNA_CALLER}/tickets", {}, "subject"),
        ("POST", f"/api/v1/callers/{ANNA_CALLER}/tickets", {"subject": "x", "tier": "boss"},
         "tier"),
        ("POST", f"/api/v1/callers/{ANNA_CALLER}/tickets", {"subject": "x", "colour": "red"},
         "colour"),
        ("PUT", f"/api/v1/callers/{ANNA_CALLER}/abusive", {"abusive": "very"}, "abusive"),
        ("PUT", f"/api/v1/callers/{ANNA_CALLER}/class", {"vip_class": "gold class!"},
         "vip_class"),
        ("PUT", "/api/v1/callers/12/note", {"note": "x"}, "number"),
        ("GET", "/api/v1/callers/not-a-number", None, "number"),
        ("POST", "/api/v1/route/simulate", {"caller": "1", "operator_states": {"op1": "asleep"}},
         "operator_states.op1"),
        ("POST", "/api/v1/route/simulate", {"queue": "support"}, "caller"),
        ("GET", "/api/v1/decisions?limit=0", None, "limit"),
        ("GET", "/api/v1/decisions?reason=because", None, "reason"),
        ("GET", "/api/v1/decisions?caller=123", None, "caller"),
        ("GET", "/api/v1/decisions?since=2026-01-01T00:00:00", None, "since"),
        ("POST", "/api/v1/operators", {"id": "op 9", "name": "Nina"}, "id"),
        ("POST", "/api/v1/operators", {"id": "op9", "name": "N", "interfaces": ["1009"]},
         "interfaces.0"),
        ("POST", "/api/v1/incidents", {"announcement": "../../etc/passwd"}, "announcement"),
        ("POST", "/api/v1/incidents", {"announcement": "x", "prefixes": ["7912"]},
         "prefixes.0"),
        ("POST", "/api/v1/tokens", {"name": "x", "role": "god"}, "role"),
        ("POST", "/api/v1/rules/validate", {}, "text"),
    ],
)
async def test_422_names_the_field(
    world: World, method: str, path: str, body: Any, field: str
) -> None:
    async with world.client("admin") as client:
        r = await client.request(method, path, json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert [e["field"] for e in problem["errors"]] == [field]
    assert f".{field}: " in problem["detail"]


async def test_malformed_json_is_422(world: World) -> None:
    async with world.client("admin") as client:
        r = await client.post("/api/v1/incidents", content=b"{not json",
                              headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["location"] == "body"


async def test_unknown_path_is_404_json(world: World) -> None:
    async with world.client("admin") as client:
        r = await client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found"}
