"""Transferred calls through the API: every operator who handled the call finishes their
own follow-up, and the call shows who had it, leg by leg.

The call is one of the recorded-trace transfer scenarios of ``tests/ami/transfers.py``
(op1 -> op2 -> op3 by blind transfers, or op1 -> op2), followed by the real call tracker
and written through the real store as the listener's writer does. On SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from callrouter.ami.interfaces import InterfaceMap
from callrouter.ami.tracker import CallTracker
from callrouter.api.services.streams import call_ended, screen_pop
from callrouter.config.rules_holder import RulesHolder
from callrouter.domain.model import Operator
from callrouter.legs import CallLeg, LegEnd, LeggedCallRecord
from callrouter.service.ports import CallRecord
from callrouter.store import Role, Store
from tests.ami.test_transfers import messages
from tests.ami.transfers import CALLER_UID, blind_transfer_chain, blind_transfer_to_op2
from tests.api.conftest import NOW, World

NUMBER = "+79161112233"
AMI_OPERATORS = {
    op: Operator(op, name, (f"Local/{op}@operators/n",), queues=("support-q",))
    for op, name in (("op1", "Anna"), ("op2", "Boris"), ("op3", "Carl"))
}


@pytest.fixture
def api_store(store: Store) -> Store:
    return store


async def transferred_call(world: World, build: Callable[[], list[bytes]]) -> str:
    """Run the scenario through the tracker, write its records, return the call row id.
    Adds op3 (Carl) and a token for them and one for spec1, who never had the call."""
    async with world.store.transaction() as tx:
        await tx.operators.add(AMI_OPERATORS["op3"])
        for role, operator in (("operator3", "op3"), ("specialist", "spec1")):
            issued = await tx.tokens.create(f"test-{role}", Role.OPERATOR, operator_id=operator)
            world.tokens[role] = issued.plaintext
    records: list[CallRecord] = []
    tracker = CallTracker(InterfaceMap(AMI_OPERATORS), on_record=records.append,
                          on_progress=records.append)
    for i, msg in enumerate(messages(build())):
        tracker.feed(msg, float(i))
    tracker.tick(1e9)
    # As app.py's writer path: the number in E.164.
    await world.store.write_call_records([replace(r, caller_number=NUMBER) for r in records])
    async with world.store.transaction() as tx:
        call = await tx.calls.get_by_uniqueid(CALLER_UID)
    assert call is not None
    return call.id


async def follow_up(client: httpx.AsyncClient, call_id: str, note: str,
                    resolved: bool | None) -> tuple[int, int]:
    noted = await client.put(f"/api/v1/calls/{call_id}/note", json={"note": note})
    verdict = await client.put(f"/api/v1/calls/{call_id}/resolved", json={"resolved": resolved})
    return noted.status_code, verdict.status_code


async def test_the_operator_who_transferred_the_call_finishes_their_follow_up(
        world: World) -> None:
    """Gap 1 of the transfer work: after op1 -> op2, op1 got 403 on their own call."""
    call_id = await transferred_call(world, blind_transfer_to_op2)
    async with world.client("operator") as anna, world.client("operator2") as boris, \
            world.client("specialist") as sveta:
        assert await follow_up(anna, call_id, "router reboots hourly; sent to Boris",
                               False) == (200, 200)
        assert await follow_up(boris, call_id, "replaced the power supply", True) == (200, 200)
        # Someone who never had the call: the same 403 as for a call that does not exist.
        assert await follow_up(sveta, call_id, "not mine", True) == (403, 403)
        assert (await sveta.get(f"/api/v1/calls/{call_id}")).status_code == 403
        body = (await anna.get(f"/api/v1/calls/{call_id}")).json()
    assert [(n["operator_id"], n["note"], n["resolved"]) for n in body["notes"]] == [
        ("op1", "router reboots hourly; sent to Boris", False),
        ("op2", "replaced the power supply", True)]
    # Boris had the caller last: his verdict is the call's, whoever wrote first.
    assert body["resolved"] is True
    assert (body["operator_id"], body["transferred_from"], body["handled_by"]) == (
        "op2", "op1", ["op1", "op2"])


async def test_a_chain_shows_every_leg_and_each_handlers_note(world: World) -> None:
    call_id = await transferred_call(world, blind_transfer_chain)
    async with world.client("operator") as anna, world.client("operator2") as boris, \
            world.client("operator3") as carl, world.client("specialist") as sveta:
        assert await follow_up(carl, call_id, "PSU replaced", True) == (200, 200)
        assert await follow_up(anna, call_id, "router reboots", False) == (200, 200)
        # The middle operator, recorded nowhere before legs, may write and read too.
        assert await follow_up(boris, call_id, "not a line fault", None) == (200, 200)
        call = (await boris.get(f"/api/v1/calls/{call_id}")).json()
        # ...and sees the caller's context, as anyone who had one of their calls.
        context = await boris.get(f"/api/v1/callers/{NUMBER}")
        assert (await sveta.get(f"/api/v1/callers/{NUMBER}")).status_code == 403
    assert context.status_code == 200
    [previous] = [c for c in context.json()["recent_calls"] if c["id"] == call_id]
    assert previous == call  # the caller context carries the same legs and notes
    assert call["handled_by"] == ["op1", "op2", "op3"]
    assert [(leg["seq"], leg["operator_id"], leg["operator_name"], leg["via"],
             leg["ended_how"], leg["transferred_to"], leg["transferred_to_name"],
             leg["transfer_target"], leg["hangup_by"]) for leg in call["legs"]] == [
        (0, "op1", "Anna", "queue", "blind_transfer", "op2", "Boris", "op2@transfer", None),
        (1, "op2", "Boris", "dial", "blind_transfer", "op3", "Carl", "op3@transfer", None),
        (2, "op3", "Carl", "dial", "hung_up", None, None, None, "operator")]
    assert [leg["talk_seconds"] for leg in call["legs"]] == [2, 3, 3]
    assert sum(leg["talk_seconds"] for leg in call["legs"]) == call["talk_seconds"]
    assert [(n["operator_name"], n["note"]) for n in call["notes"]] == [
        ("Anna", "router reboots"), ("Boris", "not a line fault"), ("Carl", "PSU replaced")]
    assert call["resolved"] is True  # Carl's: he had the caller last


async def test_supervisors_write_the_calls_own_note_and_verdict(world: World) -> None:
    call_id = await transferred_call(world, blind_transfer_to_op2)
    async with world.client("supervisor") as sup, world.client("operator2") as boris:
        assert await follow_up(boris, call_id, "fixed", True) == (200, 200)
        r = await sup.put(f"/api/v1/calls/{call_id}/note", json={"note": "call back Friday"})
        assert r.status_code == 200
        r = await sup.put(f"/api/v1/calls/{call_id}/resolved", json={"resolved": False})
        body = r.json()
        assert (body["note"], body["resolved"]) == ("call back Friday", False)
        assert [(n["operator_id"], n["note"], n["resolved"]) for n in body["notes"]] == [
            ("op2", "fixed", True)]  # Boris's own follow-up is untouched
        assert (await sup.get("/api/v1/calls/no-such-call")).status_code == 404


async def test_the_operator_who_left_keeps_the_call_id_on_their_stream(world: World) -> None:
    """op1's screen-pop and call_ended name the call's row also once op2 has it, so the
    console can still send op1's note and verdict."""
    call_id = await transferred_call(world, blind_transfer_chain)
    payload = {"server_id": "default", "uniqueid": CALLER_UID, "operator_id": "op1",
               "caller_number": NUMBER, "queue": "support-q"}
    for operator in ("op1", "op2", "op3"):
        assert (await call_ended(world.deps, operator, payload))["call"]["id"] == call_id
        assert (await screen_pop(world.deps, operator, payload))["call"]["id"] == call_id
    assert (await call_ended(world.deps, "spec1", payload))["call"]["id"] is None


async def test_sticky_counts_the_last_operators_own_talk(world: World, tmp_path: Path) -> None:
    """Anna talks ten minutes and blind-transfers to Boris, who drops the caller after 5 s.
    With ``min_talk_seconds = 30`` the call binds the caller to nobody, in the caller's
    context and in the bindings list, as ``decide`` routes the next call; with 0 it binds
    them to Boris."""
    at = NOW - timedelta(minutes=15)
    legs = (
        CallLeg(0, "op1", "PJSIP/1001", "queue", at, at + timedelta(seconds=600), 10, 600,
                LegEnd.BLIND_TRANSFER, None, "op2", "1002@transfer"),
        CallLeg(1, "op2", "PJSIP/1002", "dial", at + timedelta(seconds=605),
                at + timedelta(seconds=610), 5, 5, LegEnd.HUNG_UP, "operator"),
    )
    await world.store.write_call_records([LeggedCallRecord(
        uniqueid="u-transfer", caller_raw=NUMBER, caller_number=NUMBER, queue="support",
        started_at=at - timedelta(seconds=10), answered_at=at, ended_at=legs[1].ended_at,
        operator_id="op2", answered_interface="PJSIP/1002", hold_seconds=10,
        talk_seconds=605, outcome="answered", hangup_by="operator", transferred=True,
        transferred_from="op1", legs=legs)])

    async def bound() -> tuple[str | None, str | None]:
        async with world.client("supervisor") as client:
            sticky = (await client.get(f"/api/v1/callers/{NUMBER}")).json()["sticky"]
            listed = {b["caller_number"]: b["operator_id"]
                      for b in (await client.get("/api/v1/bindings")).json()}
        return (sticky["operator_id"] if sticky else None), listed.get(NUMBER)

    assert await bound() == ("op2", "op2")  # min_talk_seconds = 0: the last operator
    rules = tmp_path / "rules.toml"
    rules.write_text("[rules.defaults]\nmin_talk_seconds = 30\n")
    world.deps.rules = RulesHolder.from_file(rules)
    assert await bound() == (None, None)  # Boris's own 5 s, not the call's 605 s
