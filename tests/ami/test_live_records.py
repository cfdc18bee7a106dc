"""The live call's record: written when someone answers, completed by the final one.

A call's row must know who answered while the call lasts (the operator's notes and
"resolved" during the call depend on it), so the tracker hands out an ``in_progress``
record when the call is answered (queue: ``AgentConnect``; a direct dial:
``DialEnd ANSWER``) and each time a transfer gives it to someone else; the final record
at hangup completes the row. Event streams: the recorded Asterisk 22 traces, and the
transfer scenarios of ``tests/ami/transfers.py`` built from them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from callrouter.ami.interfaces import InterfaceMap
from callrouter.ami.message import AmiMessage, parse_block
from callrouter.ami.tracker import CallAnswered, CallTracker
from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.legs import LegEnd
from callrouter.service.ports import CallRecord, DecisionRecord
from callrouter.simulator.ami_traces import asterisk_events
from callrouter.store import Store
from callrouter.store.models import CallRow
from tests.ami.conftest import OPERATORS, TRACES
from tests.ami.test_tracker import events
from tests.ami.test_transfers import messages
from tests.ami.transfers import (
    CALLER_UID,
    attended_transfer_to_op2,
    blind_transfer_back_to_queue,
    blind_transfer_to_op2,
    value,
)

TRACE_DAY = datetime(2026, 11, 23, 9, 12, tzinfo=UTC)  # when the traces were recorded

# name -> the events, and the caller's uniqueid (the trace's queue or routed call)
SCENARIOS: dict[str, Callable[[], tuple[list[AmiMessage], str]]] = {
    "queue-caller-hangup": lambda: (events("ami-queue-answered-caller-hangup"),
                                    "1795425134.71"),
    "queue-agent-hangup": lambda: (events("ami-queue-answered-agent-hangup"), CALLER_UID),
    "queue-ringnoanswer-then-other": lambda: (events("ami-queue-ringnoanswer-then-other"),
                                              "1795425150.79"),
    "direct-dial": lambda: (events("ami-direct-dial-answered"), "1795425171.89"),
    "blind-transfer": lambda: (messages(blind_transfer_to_op2()), CALLER_UID),
    "attended-transfer": lambda: (messages(attended_transfer_to_op2()), CALLER_UID),
    "blind-transfer-back-to-queue": lambda: (messages(blind_transfer_back_to_queue()),
                                             CALLER_UID),
}
# Who took the call, in order, per scenario.
TAKERS = {
    "queue-caller-hangup": ["op1"], "queue-agent-hangup": ["op1"],
    "queue-ringnoanswer-then-other": ["op2"], "direct-dial": ["op1"],
    "blind-transfer": ["op1", "op2"], "attended-transfer": ["op1", "op2"],
    "blind-transfer-back-to-queue": ["op1", "op2"],
}


@dataclass
class Out:
    """What the tracker handed out, each with the event (index, name) it came on."""

    live: list[tuple[int, str, CallRecord]]
    final: list[tuple[int, str, CallRecord]]
    answered: list[tuple[int, str, CallAnswered]]

    def live_and_final(self) -> list[CallRecord]:
        return [r for _, _, r in sorted(self.live + self.final, key=lambda x: x[0])]


def run(evs: list[AmiMessage], uid: str | None = None,
        expect: tuple[str, str] | None = None) -> Out:
    out = Out([], [], [])
    at: list[tuple[int, str]] = [(-1, "")]
    tracker = CallTracker(
        InterfaceMap(OPERATORS), on_progress=lambda r: out.live.append((*at[0], r)),
        on_record=lambda r: out.final.append((*at[0], r)),
        on_answered=lambda a: out.answered.append((*at[0], a)))
    if expect is not None and uid is not None:
        tracker.expect(uid, *expect)
    for i, ev in enumerate(evs):
        at[0] = (i, ev.name or "")
        tracker.feed(ev, float(i))
    at[0] = (len(evs), "tick")
    tracker.tick(1e9)
    if uid is not None:
        out.live = [x for x in out.live if x[2].uniqueid == uid]
        out.final = [x for x in out.final if x[2].uniqueid == uid]
    return out


def scenario(name: str) -> tuple[list[AmiMessage], str, Out]:
    evs, uid = SCENARIOS[name]()
    # The direct dial is a routed call: the FastAGI side tells the tracker its decision.
    return evs, uid, run(evs, uid, expect=("dec-1", "op1"))


def live_facts(r: CallRecord) -> tuple[object, ...]:
    return (r.operator_id, r.answered_interface, r.answered_at, r.transferred_from,
            r.transferred, r.hold_seconds, r.sticky_hit, r.decision_id, r.queue)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_call_is_recorded_live_when_answered_and_completed_at_hangup(name: str) -> None:
    _evs, _uid, out = scenario(name)
    [(end_at, _, final)] = out.final
    assert final.outcome == "answered"
    # One live record per party that took the call, on the event that says so, all
    # before the final one; none has an end, a talk time or a side that hung up. A blind
    # transfer adds one more when it happens: the transferring operator's leg ended.
    takes = [(at, e, r) for at, e, r in out.live if e != "BlindTransfer"]
    assert [r.operator_id for _, _, r in takes] == TAKERS[name]
    for _at, _event, r in [x for x in out.live if x[1] == "BlindTransfer"]:
        assert r.operator_id == r.legs[-1].operator_id == "op1"
        assert r.legs[-1].end == LegEnd.BLIND_TRANSFER and r.legs[-1].ended_at is not None
    for at, event, r in out.live:
        assert at < end_at
        assert event in ("AgentConnect", "DialEnd", "AttendedTransfer", "BlindTransfer"), event
        assert (r.outcome, r.ended_at, r.hangup_by, r.talk_seconds) == (
            "in_progress", None, None, 0)
        assert r.answered_at == final.answered_at  # the first answer, also after a transfer
        assert r.started_at == final.started_at and r.linkedid == final.linkedid
    first, last = out.live[0][2], out.live[-1][2]
    assert first.transferred is False and first.transferred_from is None
    # The last live record says what the final one says about who has the call.
    assert live_facts(last) == live_facts(final)
    # The screen-pop and the live record come from the same event.
    assert [(at, a.operator_id) for at, _, a in out.answered if a.operator_id] == [
        (at, r.operator_id) for at, _, r in takes]
    # Each live record's legs: the final legs so far, the last one still open.
    for _, _, r in takes:
        *done, open_leg = r.legs
        assert [leg.operator_id for leg in r.legs] == TAKERS[name][: len(r.legs)]
        assert (open_leg.end, open_leg.ended_at, open_leg.talk_seconds) == (None, None, 0)
        assert done == list(final.legs[: len(done)])
    assert [leg.operator_id for leg in final.legs] == TAKERS[name]


def test_unanswered_calls_have_no_live_record() -> None:
    out = run(events("ami-queue-abandon"))
    assert out.live == [] and [r.outcome for _, _, r in out.final] == ["abandoned"]
    # The routed caller whose direct dial went unanswered: live only once the queue
    # answers it; the one waiting in the queue meanwhile likewise.
    out = run(events("ami-direct-dial-noanswer-queue-priority"))
    assert sorted(r.uniqueid for _, _, r in out.live) == sorted(
        r.uniqueid for _, _, r in out.final)
    for _, event, r in out.live:
        assert event == "AgentConnect" and r.fallback_cause in (None, "NOANSWER")


@pytest.mark.parametrize("name", ["queue-caller-hangup", "direct-dial", "attended-transfer",
                                  "blind-transfer-back-to-queue"])
def test_duplicated_events_give_the_same_live_records(name: str) -> None:
    evs, uid, out = scenario(name)
    doubled = run([e for ev in evs for e in (ev, ev)], uid, expect=("dec-1", "op1"))
    assert [live_facts(r) for _, _, r in doubled.live] == [
        live_facts(r) for _, _, r in out.live]


@pytest.mark.parametrize("name", ["ami-queue-answered-caller-hangup",
                                  "ami-queue-answered-agent-hangup",
                                  "ami-queue-ringnoanswer-then-other"])
def test_another_run_another_order_the_same_live_record(name: str) -> None:
    rerun = TRACES / "rerun" / f"{name}.events-on.session"
    if not rerun.exists():
        pytest.skip(f"trace {rerun} not available")
    a = run(events(name))
    b = run([m for m in (parse_block(e.raw.decode()) for e in asterisk_events(rerun))
             if m is not None])
    assert [(r.operator_id, r.answered_interface, r.queue, r.outcome) for _, _, r in a.live] \
        == [(r.operator_id, r.answered_interface, r.queue, r.outcome) for _, _, r in b.live]


@pytest.mark.parametrize("seed", range(3))
def test_member_events_anywhere_change_no_live_record(seed: int) -> None:
    evs = events("ami-queue-ringnoanswer-then-other")
    caller = [e for e in evs if (e.get("Channel") or "").startswith("Local/s@")
              or e.name == "AgentComplete"]
    mixed = list(caller)
    rnd = random.Random(seed)
    for e in (e for e in evs if e not in caller):
        mixed.insert(rnd.randrange(len(mixed) + 1), e)
    assert [live_facts(r) for _, _, r in run(mixed).live] == [
        live_facts(r) for _, _, r in run(evs).live]


# --- the transferring operator's part ends when they leave ----------------------------


def test_blind_transfer_tells_the_transferring_operator_at_once() -> None:
    """op1's part ends at the BlindTransfer (2 s after the caller's BridgeEnter), before
    op2 is even rung: a notification that names nobody yet, with op1's part."""
    raws = blind_transfer_to_op2()
    transfer_ts = float(value(next(r for r in raws if value(r, "Event") == "BlindTransfer"),
                              "Timestamp") or 0)
    out = run(messages(raws), CALLER_UID)
    told = [(event, a) for _, event, a in out.answered if a.leg_ended is not None]
    [(event, note)] = told
    assert event == "BlindTransfer"
    assert (note.operator_id, note.interface, note.transferred_from) == (None, None, "op1")
    leg = note.leg_ended
    assert leg is not None
    assert (leg.operator_id, leg.interface, leg.hold_seconds, leg.talk_seconds) == (
        "op1", "Local/op1@operators/n", 1, 2)
    assert leg.ended_at is not None and leg.ended_at.timestamp() == pytest.approx(transfer_ts)
    assert leg.answered_at == out.final[0][2].answered_at
    # op2's screen-pop later says where the call came from, and tells op1 nothing again.
    assert [(a.operator_id, a.transferred_from, a.leg_ended is None)
            for _, _, a in out.answered] == [
        ("op1", None, True), (None, "op1", False), ("op2", "op1", True)]


def test_attended_transfer_tells_it_with_the_new_operators_screen_pop() -> None:
    out = run(messages(attended_transfer_to_op2()), CALLER_UID)
    assert [(event, a.operator_id, a.leg_ended.operator_id if a.leg_ended else None)
            for _, event, a in out.answered] == [
        ("AgentConnect", "op1", None), ("AttendedTransfer", "op2", "op1")]
    leg = out.answered[1][2].leg_ended
    assert leg is not None and leg.talk_seconds == 4  # with the consultation, as TalkTime


def test_back_into_the_queue_op1_is_told_at_the_transfer() -> None:
    out = run(messages(blind_transfer_back_to_queue()), CALLER_UID)
    assert [(event, a.operator_id, a.leg_ended is not None) for _, event, a in out.answered] \
        == [("AgentConnect", "op1", False), ("BlindTransfer", None, True),
            ("AgentConnect", "op2", False)]


@pytest.mark.parametrize("raws", [lambda: blind_transfer_to_op2(result="Fail"),
                                  lambda: attended_transfer_to_op2(dest_type="Threeway")],
                         ids=["failed", "threeway"])
def test_no_part_ends_when_nobody_left(raws: Callable[[], list[bytes]]) -> None:
    out = run(messages(raws()), CALLER_UID)
    assert [a.leg_ended for _, _, a in out.answered] == [None]
    assert [r.operator_id for _, _, r in out.live] == ["op1"]


# --- through the store: the final row is what the final record alone would make ------


def _decision(uid: str) -> DecisionRecord:
    return DecisionRecord(
        id=f"d-{uid}", decided_at=TRACE_DAY, caller_raw="5551002",
        caller_number="+15551002", queue="support-q", latency_ms=1.0, uniqueid=uid,
        decision=Decision(Action.OPERATOR, "support-q", 0,
                          (Reason(ReasonCode.STICKY_AVAILABLE, "spoke with op1"),),
                          target_operator_id="op1", target_interface="Local/op1@operators/n"),
    )


async def _row(store: Store, uid: str) -> dict[str, object]:
    async with store.transaction() as tx:
        row = (await tx.session.execute(
            select(CallRow).where(CallRow.uniqueid == uid, CallRow.server_id == "default")
        )).scalar_one()
        return {c.name: getattr(row, c.name) for c in CallRow.__table__.columns}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_live_then_final_leaves_the_row_the_final_record_makes(
        store: Store, name: str) -> None:
    evs, uid, _ = scenario(name)
    out = run(evs, uid, expect=(f"d-{uid}", "op1"))
    await store.record(_decision(uid))  # the routing decision opened the row
    for _, _, live in out.live:
        await store.write_call_records([live])
        row = await _row(store, uid)
        # While the call lasts the row names who has it, and it is still in progress.
        assert (row["operator_id"], row["answered_interface"], row["outcome"],
                row["ended_at"], row["hangup_by"]) == (
            live.operator_id, live.answered_interface, "in_progress", None, None)
        assert row["answered_at"] is not None and row["decision_id"] == f"d-{uid}"
    [(_, _, final)] = out.final
    await store.write_call_records([final])
    await store.write_call_records(out.live_and_final())  # a batch written again
    after_both = await _row(store, uid)

    alone = f"{uid}-alone"  # the same call, its final record only
    await store.record(_decision(alone))
    await store.write_call_records([replace(final, uniqueid=alone, decision_id=f"d-{alone}")])
    final_only = await _row(store, alone)
    skip = {"id", "uniqueid", "decision_id"}
    assert {k: v for k, v in after_both.items() if k not in skip} == {
        k: v for k, v in final_only.items() if k not in skip}
    assert (after_both["outcome"], after_both["operator_id"]) == ("answered", TAKERS[name][-1])


async def test_a_call_transferred_back_is_not_transferred_from_its_own_operator(
        store: Store) -> None:
    """A -> B -> A: B's live record said "from A"; A's final record has no source, and
    the row must not say A's call came from A."""
    start = TRACE_DAY
    base = CallRecord(uniqueid="u-aba", caller_raw="5551002", queue="support-q",
                      started_at=start, answered_at=start + timedelta(seconds=5),
                      answered_interface="Local/op1@operators/n", hold_seconds=5)
    steps = [
        replace(base, operator_id="op1"),
        replace(base, operator_id="op2", answered_interface="Local/op2@operators/n",
                transferred=True, transferred_from="op1"),
        replace(base, operator_id="op1", transferred=True),
        replace(base, operator_id="op1", transferred=True, outcome="answered",
                ended_at=start + timedelta(minutes=3), talk_seconds=170, hangup_by="caller"),
    ]
    seen = []
    for record in steps:
        await store.write_call_records([record])
        row = await _row(store, "u-aba")
        seen.append((row["operator_id"], row["transferred_from"], row["outcome"]))
    assert seen == [("op1", None, "in_progress"), ("op2", "op1", "in_progress"),
                    ("op1", None, "in_progress"), ("op1", None, "answered")]
    # ...while a final record that names nobody (the directory lost the operator) keeps
    # what the live ones said.
    await store.write_call_records([replace(steps[1], uniqueid="u-kept")])
    await store.write_call_records([replace(steps[-1], uniqueid="u-kept", operator_id=None,
                                            answered_interface=None)])
    row = await _row(store, "u-kept")
    assert (row["operator_id"], row["transferred_from"], row["outcome"]) == (
        "op2", "op1", "answered")

