"""Operators see only callers of their own calls, and a refusal never says whether one exists."""

from __future__ import annotations

import pytest

from callrouter.store import Store
from tests.api.conftest import ANNA_CALLER, BORIS_CALLER, NEVER_CALLED, World


@pytest.fixture
def api_store(store: Store) -> Store:
    """These run on SQLite and on PostgreSQL (the ``store`` fixture's two params)."""
    return store

# An operator token asking about someone else's caller, or a number that never called,
# must get the same answer: existence is not something an operator token can probe.
REFUSED = {"detail": "operators may only see callers of their own calls"}


@pytest.mark.parametrize("number", [BORIS_CALLER, NEVER_CALLED, "8 999 555-00-00"])
@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/tickets", None),
        ("POST", "/tickets", {"subject": "x"}),
        ("PUT", "/abusive", {"abusive": True}),
        ("PUT", "/note", {"note": "x"}),
        ("PUT", "/opt-out", None),
    ],
)
async def test_operator_cannot_reach_other_callers(
    world: World, number: str, method: str, suffix: str, body: object
) -> None:
    async with world.client("operator") as client:
        r = await client.request(method, f"/api/v1/callers/{number}{suffix}", json=body)
    assert r.status_code == 403
    assert r.json() == REFUSED


async def test_same_answer_for_existing_and_missing_callers(world: World) -> None:
    async with world.client("operator") as client:
        existing = await client.get(f"/api/v1/callers/{BORIS_CALLER}")
        missing = await client.get(f"/api/v1/callers/{NEVER_CALLED}")
    assert (existing.status_code, existing.content) == (missing.status_code, missing.content)


async def test_each_operator_sees_own_caller(world: World) -> None:
    async with world.client("operator") as anna, world.client("operator2") as boris:
        assert (await anna.get(f"/api/v1/callers/{ANNA_CALLER}")).status_code == 200
        assert (await boris.get(f"/api/v1/callers/{BORIS_CALLER}")).status_code == 200
        assert (await boris.get(f"/api/v1/callers/{ANNA_CALLER}")).status_code == 403


@pytest.mark.parametrize("call", ["boris_call", "no-such-call"])
async def test_operator_cannot_touch_other_calls(world: World, call: str) -> None:
    call_id = world.ids.get(call, call)
    async with world.client("operator") as client:
        r1 = await client.put(f"/api/v1/calls/{call_id}/resolved", json={"resolved": True})
        r2 = await client.put(f"/api/v1/calls/{call_id}/note", json={"note": "x"})
        r3 = await client.get(f"/api/v1/calls/{call_id}")
    assert (r1.status_code, r2.status_code, r3.status_code) == (403, 403, 403)
    assert r1.json() == REFUSED == r3.json()


async def test_operator_cannot_touch_other_tickets(world: World) -> None:
    async with world.client("admin") as admin:
        r = await admin.post(f"/api/v1/callers/{BORIS_CALLER}/tickets", json={"subject": "tv"})
        boris_ticket = r.json()["id"]
    async with world.client("operator") as client:
        for ticket in (boris_ticket, "no-such-ticket"):
            r = await client.patch(f"/api/v1/tickets/{ticket}", json={"status": "closed"})
            assert r.status_code == 403
            assert r.json() == REFUSED


async def test_admin_gets_404_for_missing_call_and_ticket(world: World) -> None:
    async with world.client("admin") as client:
        r1 = await client.put("/api/v1/calls/nope/resolved", json={"resolved": True})
        r2 = await client.patch("/api/v1/tickets/nope", json={"status": "closed"})
    assert (r1.status_code, r2.status_code) == (404, 404)


async def test_readonly_sees_masked_numbers(world: World) -> None:
    from callrouter.domain.model import Action, Decision
    from callrouter.domain.reasons import Reason, ReasonCode
    from callrouter.service.ports import DecisionRecord
    from tests.api.conftest import NOW

    await world.store.record(DecisionRecord(
        id="d1", decided_at=NOW, caller_raw=ANNA_CALLER, caller_number=ANNA_CALLER,
        queue="support", latency_ms=2.0,
        decision=Decision(Action.QUEUE, "support", 0, (Reason(ReasonCode.NEW_CALLER, "new"),)),
    ))
    async with world.client("readonly") as ro, world.client("supervisor") as sup:
        masked = (await ro.get("/api/v1/decisions")).json()[0]
        clear = (await sup.get("/api/v1/decisions")).json()[0]
    assert clear["caller_number"] == ANNA_CALLER
    assert masked["caller_number"] == "*********789"
    assert ANNA_CALLER not in str(masked)
