"""Transferred calls: the record names who handled the call last and keeps who answered it.

The event streams come from ``tests/ami/transfers.py``: recorded Asterisk 22 events,
re-addressed, around ``BlindTransfer``/``AttendedTransfer`` events laid out as Asterisk
22.10.1's ``main/stasis_bridges.c`` writes them (that module's docstring says which
header comes from which source file).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from callrouter.ami.interfaces import InterfaceMap
from callrouter.ami.message import AmiMessage, parse_block
from callrouter.ami.tracker import CallAnswered, CallTracker
from callrouter.domain.model import OperatorState
from callrouter.legs import CallLeg, LegEnd
from callrouter.service.ports import CallRecord
from callrouter.simulator.ami import FakeAmiServer
from callrouter.store import Store
from callrouter.store.models import CallRow
from tests.ami.conftest import OPERATORS, until
from tests.ami.transfers import (
    CALLER_NUMBER,
    CALLER_UID,
    OP2_LEG_UID,
    attended_transfer_to_op2,
    blind_transfer_back_to_queue,
    blind_transfer_chain,
    blind_transfer_nobody_takes,
    blind_transfer_to_op2,
    value,
)


def messages(raws: list[bytes]) -> list[AmiMessage]:
    out = []
    for raw in raws:
        msg = parse_block(raw.decode())
        assert msg is not None
        out.append(msg)
    return out


def run(raws: list[bytes], *, expect: tuple[str, str] | None = None,
        ) -> tuple[list[CallRecord], list[CallAnswered]]:
    records: list[CallRecord] = []
    answered: list[CallAnswered] = []
    tracker = CallTracker(InterfaceMap(OPERATORS), on_record=records.append,
                          on_answered=answered.append)
    if expect is not None:
        tracker.expect(CALLER_UID, *expect)
    for i, msg in enumerate(messages(raws)):
        tracker.feed(msg, float(i))
    tracker.tick(1e9)
    return [r for r in records if r.uniqueid == CALLER_UID], answered


def facts(r: CallRecord) -> tuple[object, ...]:
    return (r.outcome, r.operator_id, r.answered_interface, r.transferred_from, r.transferred,
            r.hold_seconds, r.talk_seconds, r.hangup_by)


def test_blind_transfer_names_the_operator_who_took_the_call() -> None:
    [record], answered = run(blind_transfer_to_op2())
    # op1 talked 2 s (AgentComplete TalkTime), op2 3 s after answering the caller's Dial.
    assert facts(record) == ("answered", "op2", "Local/op2@operators/n", "op1", True, 1, 5,
                             "operator")
    assert record.caller_number == CALLER_NUMBER and record.queue == "support-q"
    # Screen-pops: op1 on AgentConnect, op2 when the caller's Dial to op2 was answered;
    # between them, at the BlindTransfer, op1's part ended (nobody has the call yet).
    assert [(a.operator_id, a.transferred_from) for a in answered] == [
        ("op1", None), (None, "op1"), ("op2", "op1")]


@pytest.mark.parametrize("refer_on_consult", [False, True], ids=["refer-on-call",
                                                                  "refer-on-consult"])
def test_attended_transfer_names_the_transfer_target(refer_on_consult: bool) -> None:
    [record], answered = run(attended_transfer_to_op2(refer_on_consult=refer_on_consult))
    # op1's TalkTime covers the consultation (4 s); op2 then talks 3 s.
    assert facts(record) == ("answered", "op2", "Local/op2@operators/n", "op1", True, 1, 7,
                             "operator")
    assert [(a.operator_id, a.transferred_from) for a in answered] == [
        ("op1", None), ("op2", "op1")]


def test_blind_transfer_back_into_a_queue() -> None:
    """The second queue rings op1 (no answer) and op2 answers: two AgentConnects, two
    AgentCompletes; op2's ends with ``Reason: agent``."""
    [record], _ = run(blind_transfer_back_to_queue())
    assert facts(record) == ("answered", "op2", "Local/op2@operators/n", "op1", True, 1, 6,
                             "operator")


def test_a_failed_transfer_changes_nothing() -> None:
    """``Result: Fail``: the caller stays with op1 (the old tracker marked it transferred)."""
    raws = blind_transfer_to_op2(result="Fail")
    assert any(value(r, "Result") == "Fail" for r in raws)
    [record], _ = run(raws)
    assert facts(record) == ("answered", "op1", "Local/op1@operators/n", None, False, 1, 4,
                             "operator")


def test_a_threeway_is_not_a_transfer() -> None:
    [record], _ = run(attended_transfer_to_op2(dest_type="Threeway"))
    assert (record.operator_id, record.transferred, record.transferred_from) == (
        "op1", False, None)


def test_sticky_hit_is_about_who_answered_first() -> None:
    """The decision sent the call to op1, op1 answered and then transferred it."""
    [record], answered = run(blind_transfer_to_op2(), expect=("dec-1", "op1"))
    assert record.sticky_hit is True and record.decision_id == "dec-1"
    assert record.operator_id == "op2"
    assert {a.decision_id for a in answered} == {"dec-1"}


def test_duplicated_events_give_the_same_record() -> None:
    raws = attended_transfer_to_op2()
    doubled = [r for raw in raws for r in (raw, raw)]
    assert [facts(r) for r in run(doubled)[0]] == [facts(r) for r in run(raws)[0]]
    raws = blind_transfer_back_to_queue()
    doubled = [r for raw in raws for r in (raw, raw)]
    assert [facts(r) for r in run(doubled)[0]] == [facts(r) for r in run(raws)[0]]


@pytest.mark.parametrize("where", ["first", "last"])
def test_transfer_event_order_does_not_matter(where: str) -> None:
    """app_queue's AgentComplete and the manager's AttendedTransfer come from different
    stasis subscribers: either may be first. The swap's bridge events too."""
    raws = attended_transfer_to_op2()
    event = next(r for r in raws if value(r, "Event") == "AttendedTransfer")
    raws.remove(event)
    swap_start = next(i for i, r in enumerate(raws) if value(r, "Event") == "BridgeLeave"
                      and value(r, "Channel") == "Local/op2@operators-00000028;1")
    if where == "first":
        raws.insert(swap_start, event)
    else:  # after op1's legs are gone and AgentComplete came
        last_op1 = max(i for i, r in enumerate(raws) if value(r, "Event") == "Hangup"
                       and (value(r, "Channel") or "").startswith("Local/op1@"))
        raws.insert(last_op1 + 1, event)
    [record], _ = run(raws)
    assert facts(record) == ("answered", "op2", "Local/op2@operators/n", "op1", True, 1, 7,
                             "operator")


async def test_transfer_over_the_wire_moves_the_call_between_operators(
        make_listener, ami_server: FakeAmiServer) -> None:
    listener, rec = await make_listener()
    raws = attended_transfer_to_op2()
    cut = next(i for i, r in enumerate(raws) if value(r, "Event") == "AgentComplete")
    await ami_server.replay(raws[: cut + 1])
    await until(lambda: len(rec.answered) == 2)
    details = listener.presence.details()
    assert details["op2"].call_uniqueid == CALLER_UID
    assert details["op1"].call_uniqueid is None  # handed over: no longer in this call
    leg = rec.answered[1].leg_ended
    assert leg is not None and leg.operator_id == "op1"  # op1 is told their part ended
    # The call row learns who has the call now, while it lasts.
    assert [(r.operator_id, r.transferred_from, r.outcome) for r in rec.live] == [
        ("op1", None, "in_progress"), ("op2", "op1", "in_progress")]
    await ami_server.replay(raws[cut + 1:])
    [record] = await rec.wait_records(1)
    assert (record.operator_id, record.transferred_from, record.server_id) == (
        "op2", "op1", "ast1")
    await until(lambda: listener.presence.details()["op2"].call_uniqueid is None)
    assert listener.presence.states()["op2"] in (OperatorState.AVAILABLE,
                                                 OperatorState.IN_CALL)


async def test_the_next_repeat_call_goes_to_who_took_the_transfer(store: Store) -> None:
    """Through the real store (SQLite and PostgreSQL): the caller's history says op2
    handled the call, so the sticky rule sees op2; op1 stays on the row."""
    [record], _ = run(blind_transfer_to_op2())
    await store.write_call_records([record])
    assert record.ended_at is not None
    snapshot = await store.snapshot(CALLER_NUMBER, record.ended_at + timedelta(minutes=5),
                                    3600)
    [past] = snapshot.recent_calls
    assert past.operator_id == "op2"
    async with store.transaction() as tx:
        row = (await tx.session.execute(
            select(CallRow.operator_id, CallRow.transferred_from, CallRow.transferred)
            .where(CallRow.uniqueid == CALLER_UID, CallRow.server_id == "default"))).one()
    assert tuple(row) == ("op2", "op1", True)


# -- legs: every party's part of the call ------------------------------------------------


def leg_facts(leg: CallLeg) -> tuple[object, ...]:
    return (leg.seq, leg.operator_id, leg.via, leg.hold_seconds, leg.talk_seconds, leg.end,
            leg.hangup_by, leg.transferred_to, leg.transfer_target)


def test_a_blind_transfer_gives_two_legs() -> None:
    [record], _ = run(blind_transfer_to_op2())
    assert [leg_facts(x) for x in record.legs] == [
        (0, "op1", "queue", 1, 2, LegEnd.BLIND_TRANSFER, None, "op2", "op2@transfer"),
        (1, "op2", "dial", 1, 3, LegEnd.HUNG_UP, "operator", None, None)]
    first, second = record.legs
    # op1's part ends at the BlindTransfer; op2's starts when the caller's Dial is answered.
    assert first.answered_at == record.answered_at
    assert first.ended_at is not None and second.answered_at is not None
    assert first.ended_at < second.answered_at and second.ended_at is not None
    assert second.interface == record.answered_interface == "Local/op2@operators/n"
    assert sum(x.talk_seconds for x in record.legs) == record.talk_seconds


@pytest.mark.parametrize("refer_on_consult", [False, True], ids=["refer-on-call",
                                                                  "refer-on-consult"])
def test_an_attended_transfer_gives_two_legs(refer_on_consult: bool) -> None:
    [record], _ = run(attended_transfer_to_op2(refer_on_consult=refer_on_consult))
    # op1's TalkTime covers the consultation; op2 takes over at the AttendedTransfer.
    assert [leg_facts(x) for x in record.legs] == [
        (0, "op1", "queue", 1, 4, LegEnd.ATTENDED_TRANSFER, None, "op2",
         "Local/op2@operators/n"),
        (1, "op2", "transfer", 0, 3, LegEnd.HUNG_UP, "operator", None, None)]
    assert record.legs[0].ended_at == record.legs[1].answered_at


def test_a_transfer_back_into_a_queue_gives_the_second_queue_wait() -> None:
    [record], _ = run(blind_transfer_back_to_queue())
    assert [leg_facts(x) for x in record.legs] == [
        (0, "op1", "queue", 1, 2, LegEnd.BLIND_TRANSFER, None, "op2", "queue@transfer"),
        (1, "op2", "queue", 7, 4, LegEnd.HUNG_UP, "operator", None, None)]
    assert sum(x.talk_seconds for x in record.legs) == record.talk_seconds


def test_the_middle_operator_of_a_chain_is_recorded() -> None:
    """op1 -> op2 -> op3: the row names op3 (who handled it last) and op1 (who answered
    first); op2 is only in the legs, and is told when their part ended."""
    [record], answered = run(blind_transfer_chain())
    assert facts(record) == ("answered", "op3", "Local/op3@operators/n", "op1", True, 1, 8,
                             "operator")
    assert [leg_facts(x) for x in record.legs] == [
        (0, "op1", "queue", 1, 2, LegEnd.BLIND_TRANSFER, None, "op2", "op2@transfer"),
        (1, "op2", "dial", 1, 3, LegEnd.BLIND_TRANSFER, None, "op3", "op3@transfer"),
        (2, "op3", "dial", 1, 3, LegEnd.HUNG_UP, "operator", None, None)]
    assert sum(x.talk_seconds for x in record.legs) == record.talk_seconds
    told = [a.leg_ended.operator_id for a in answered if a.leg_ended is not None]
    assert told == ["op1", "op2"]
    assert [(a.operator_id, a.transferred_from) for a in answered] == [
        ("op1", None), (None, "op1"), ("op2", "op1"), (None, "op2"), ("op3", "op2")]


def test_a_blind_transfer_nobody_takes_stays_with_the_operator_who_made_it() -> None:
    """op2's phone rings out and the caller hangs up: the call is op1's, whose one leg
    ended by the transfer (to nobody); op1 was told so at the BlindTransfer."""
    [record], answered = run(blind_transfer_nobody_takes())
    assert (record.outcome, record.operator_id, record.transferred, record.transferred_from) \
        == ("answered", "op1", True, None)
    assert [leg_facts(x) for x in record.legs] == [
        (0, "op1", "queue", 1, 2, LegEnd.BLIND_TRANSFER, None, None, "op2@transfer")]
    assert [(a.operator_id, a.leg_ended is not None) for a in answered] == [
        ("op1", False), (None, True)]


def test_duplicated_events_give_the_same_legs() -> None:
    for build in (attended_transfer_to_op2, blind_transfer_chain, blind_transfer_back_to_queue):
        raws = build()
        doubled = [r for raw in raws for r in (raw, raw)]
        assert [r.legs for r in run(doubled)[0]] == [r.legs for r in run(raws)[0]]


def test_a_call_one_operator_answered_has_one_leg_with_the_records_figures() -> None:
    [record], _ = run(blind_transfer_to_op2(result="Fail"))
    [leg] = record.legs
    assert leg_facts(leg) == (0, "op1", "queue", record.hold_seconds, record.talk_seconds,
                              LegEnd.HUNG_UP, record.hangup_by, None, None)
    assert (leg.answered_at, leg.interface) == (record.answered_at, record.answered_interface)


async def test_the_chain_reaches_the_store_with_every_leg(store: Store) -> None:
    """The tracker's live and final records of op1 -> op2 -> op3, written in order as the
    listener's writer does (SQLite and PostgreSQL): the row keeps every handler."""
    written: list[CallRecord] = []
    tracker = CallTracker(InterfaceMap(OPERATORS), on_record=written.append,
                          on_progress=written.append)
    chain = blind_transfer_chain()
    half = 1 + next(i for i, r in enumerate(chain) if value(r, "Event") == "DialEnd"
                    and value(r, "DestUniqueid") == OP2_LEG_UID)  # op2 answered
    raws = messages(chain)
    for i, msg in enumerate(raws[:half]):
        tracker.feed(msg, float(i))
    await store.write_call_records(written)  # mid-call: op2 has the call
    async with store.transaction() as tx:
        call = await tx.calls.get_by_uniqueid(CALLER_UID)
    assert call is not None and call.outcome.value == "in_progress"
    assert [(x.operator_id, x.end) for x in call.legs] == [
        ("op1", LegEnd.BLIND_TRANSFER), ("op2", None)]
    for i, msg in enumerate(raws[half:], half):
        tracker.feed(msg, float(i))
    tracker.tick(1e9)
    await store.write_call_records(written)  # everything again: the writer may repeat
    async with store.transaction() as tx:
        call = await tx.calls.get_by_uniqueid(CALLER_UID)
    assert call is not None
    assert call.legs == written[-1].legs  # type: ignore[attr-defined]
    assert call.handlers == ("op1", "op2", "op3")
    assert (call.operator_id, call.transferred_from) == ("op3", "op1")
