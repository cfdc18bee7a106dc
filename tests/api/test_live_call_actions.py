"""Notes and the verdict during the call: the answering operator may, others may not.

The call row learns who answered from the AMI listener's live record, written when the
call is answered (here: the recorded Asterisk 22 queue call answered by op1, fed to the
call tracker event by event and its records written as the listener's writer does); the
final record at hangup completes the row without losing what was written meanwhile.
On SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from callrouter.ami.interfaces import InterfaceMap
from callrouter.ami.message import AmiMessage, parse_block
from callrouter.ami.tracker import CallTracker
from callrouter.api.services.streams import screen_pop
from callrouter.legs import LegEnd
from callrouter.service.ports import CallRecord
from callrouter.simulator.ami_traces import asterisk_events
from callrouter.store import Store
from tests import traces
from tests.api.conftest import ANNA_CALLER, World
from tests.api.test_streams import (
    AMI_OPERATORS,
    TRACE,
    TRACE_CALLER,
    TRACE_UNIQUEID,
    sticky_decision,
)


@pytest.fixture
def api_store(store: Store) -> Store:
    return store


def trace_events() -> list[AmiMessage]:
    traces.present(TRACE)
    out = []
    for event in asterisk_events(TRACE):
        msg = parse_block(event.raw.decode().replace(TRACE_CALLER, "89123456789"))
        if msg is not None:
            out.append(msg)
    return out


class Listener:
    """The tracker as the AMI listener runs it; records wait here until ``write()``."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.pending: list[CallRecord] = []
        self.written: list[CallRecord] = []
        self.tracker = CallTracker(InterfaceMap(AMI_OPERATORS), on_record=self.pending.append,
                                   on_progress=self.pending.append)

    def feed(self, events: list[AmiMessage], start: int) -> None:
        for i, msg in enumerate(events, start):
            self.tracker.feed(msg, float(i))

    async def write(self) -> None:
        # As app.py's writer path: a routed call's number is the decision's, not AMI's.
        batch = [replace(r, caller_number=None) if r.decision_id else r for r in self.pending]
        self.pending.clear()
        await self.world.store.write_call_records(batch)
        self.written.extend(batch)


async def act(client: httpx.AsyncClient, call_id: str, note: str) -> tuple[int, int]:
    noted = await client.put(f"/api/v1/calls/{call_id}/note", json={"note": note})
    resolved = await client.put(f"/api/v1/calls/{call_id}/resolved", json={"resolved": True})
    return noted.status_code, resolved.status_code


async def test_the_answering_operator_writes_during_the_call_others_are_refused(
        world: World) -> None:
    decision = sticky_decision(TRACE_UNIQUEID)
    await world.store.record(decision)  # the routing decision opened the row
    async with world.store.transaction() as tx:
        row = await tx.calls.get_by_uniqueid(TRACE_UNIQUEID)
    assert row is not None and row.operator_id is None
    call_id = row.id

    events = trace_events()
    connect = next(i for i, e in enumerate(events) if e.name == "AgentConnect")
    listener = Listener(world)
    assert decision.uniqueid is not None
    listener.tracker.expect(decision.uniqueid, decision.id, "op1")

    async with world.client("operator") as anna, world.client("operator2") as boris:
        listener.feed(events[:connect], 0)  # in the queue, op1 rings: nobody answered yet
        await listener.write()
        assert listener.written == []
        assert await act(anna, call_id, "too early") == (403, 403)

        listener.feed(events[connect:connect + 1], connect)  # op1 answers
        await listener.write()
        [live] = listener.written
        assert (live.outcome, live.operator_id, live.ended_at) == ("in_progress", "op1", None)

        # The call is up: op1 writes, op2 is refused as for any call not theirs.
        assert await act(anna, call_id, "router reboots every hour") == (200, 200)
        assert await act(boris, call_id, "not my call") == (403, 403)
        r = await anna.get(f"/api/v1/callers/{ANNA_CALLER}")
        mine = next(c for c in r.json()["recent_calls"] if c["id"] == call_id)
        assert (mine["operator_id"], mine["outcome"], mine["ended_at"]) == (
            "op1", "in_progress", None)
        assert [(n["operator_id"], n["note"]) for n in mine["notes"]] == [
            ("op1", "router reboots every hour")]
        assert mine["resolved"] is True and mine["note"] is None
        # The screen-pop of this call names its row for op1 only.
        payload = {"server_id": "default", "uniqueid": TRACE_UNIQUEID, "operator_id": "op1",
                   "caller_number": ANNA_CALLER, "decision_id": decision.id,
                   "queue": "support-q"}
        assert (await screen_pop(world.deps, "op1", payload))["call"]["id"] == call_id
        assert (await screen_pop(world.deps, "op2", payload))["call"]["id"] is None

        listener.feed(events[connect + 1:], connect + 1)  # the caller hangs up
        listener.tracker.tick(len(events) + 10.0)
        await listener.write()
        final = listener.written[-1]
        assert (final.outcome, final.operator_id) == ("answered", "op1")

        async with world.store.transaction() as tx:
            done = await tx.calls.get(call_id)
        assert done is not None
        # The final record completed the row and kept what op1 wrote during the call.
        assert (done.outcome.value, done.operator_id, done.ended_at) == (
            "answered", "op1", final.ended_at)
        assert (done.talk_seconds, done.hangup_by) == (final.talk_seconds, "caller")
        assert [(n.operator_id, n.note) for n in done.notes] == [
            ("op1", "router reboots every hour")]
        assert done.resolved is True
        assert [(leg.operator_id, leg.end) for leg in done.legs] == [("op1", LegEnd.HUNG_UP)]
        assert done.caller_number == ANNA_CALLER  # routing's number, not AMI's
        assert await act(boris, call_id, "still not mine") == (403, 403)
        assert await act(anna, call_id, "wrap-up") == (200, 200)
