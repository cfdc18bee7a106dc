"""Call legs and per-operator notes in the store, on SQLite and PostgreSQL.

Legs come with the AMI listener's records (``LeggedCallRecord``): the latest record with
legs replaces the stored list, a live one never undoes a final one. Each handler keeps
their own note and verdict; the call's verdict follows the handler who had the caller
latest among those who gave one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from callrouter.domain.model import PastCall
from callrouter.legs import CallLeg, LegEnd, LeggedCallRecord
from callrouter.service.ports import CallRecord, RecordRejected
from callrouter.store import Store, StoredCall

from .builders import CALLER, NOW, ago, decision_record


def leg(seq: int, operator: str, at: datetime, talk: int | None = None,
        end: LegEnd | None = None, to: str | None = None) -> CallLeg:
    return CallLeg(
        seq=seq, operator_id=operator, interface=f"PJSIP/{operator}",
        via="queue" if seq == 0 else "dial", answered_at=at,
        ended_at=at + timedelta(seconds=talk) if talk is not None else None,
        hold_seconds=5, talk_seconds=talk or 0, end=end,
        hangup_by="caller" if end is LegEnd.HUNG_UP else None, transferred_to=to,
        transfer_target=f"{to}@transfer" if to else None)


T0 = ago(minutes=30)
A = leg(0, "anna", T0, 60, LegEnd.BLIND_TRANSFER, "boris")
B = leg(1, "boris", T0 + timedelta(seconds=65), 40, LegEnd.BLIND_TRANSFER, "carl")
C = leg(2, "carl", T0 + timedelta(seconds=110), 90, LegEnd.HUNG_UP)
OPEN_A = replace(A, ended_at=None, talk_seconds=0, end=None, transferred_to=None,
                 transfer_target=None)
OPEN_B = replace(B, ended_at=None, talk_seconds=0, end=None, transferred_to=None,
                 transfer_target=None)


def live(uid: str, operator: str, *legs: CallLeg, first: str | None = None) -> LeggedCallRecord:
    return LeggedCallRecord(
        uniqueid=uid, caller_raw=CALLER, caller_number=CALLER, queue="support",
        started_at=T0 - timedelta(seconds=5), answered_at=T0, operator_id=operator,
        answered_interface=f"PJSIP/{operator}", transferred=first is not None,
        transferred_from=first, legs=legs)


def final(uid: str = "u1") -> LeggedCallRecord:
    return replace(live(uid, "carl", A, B, C, first="anna"), outcome="answered",
                   ended_at=C.ended_at, talk_seconds=190, hangup_by="caller")


async def stored(store: Store, uid: str = "u1") -> StoredCall:
    async with store.transaction() as tx:
        call = await tx.calls.get_by_uniqueid(uid)
    assert call is not None
    return call


async def test_every_handler_of_a_chain_is_stored_in_order(store: Store) -> None:
    await store.write_call_records([live("u1", "anna", OPEN_A)])
    assert (await stored(store)).legs == (OPEN_A,)
    await store.write_call_records([live("u1", "anna", A, OPEN_B, first="anna")])
    await store.write_call_records([final()])
    call = await stored(store)
    assert call.legs == (A, B, C)
    # The row itself: the last handler, and the first (the middle one only in the legs).
    assert (call.operator_id, call.transferred_from, call.transferred) == ("carl", "anna", True)
    assert call.handlers == ("anna", "boris", "carl")
    assert call.handled_by("boris") and not call.handled_by("dora")


async def test_several_records_of_one_call_in_one_batch(store: Store) -> None:
    """The writer batches: the live records and the final one may arrive together."""
    await store.write_call_records([live("u1", "anna", OPEN_A),
                                    live("u1", "boris", A, OPEN_B, first="anna"), final()])
    assert (await stored(store)).legs == (A, B, C)


async def test_a_live_record_after_the_final_one_changes_nothing(store: Store) -> None:
    """A journal replay can write an earlier batch again after a later one."""
    await store.write_call_records([final()])
    await store.write_call_records([live("u1", "anna", OPEN_A)])
    await store.write_call_records([live("u1", "anna", OPEN_A), final(),
                                    live("u1", "anna", A, OPEN_B, first="anna")])
    call = await stored(store)
    assert call.legs == (A, B, C) and call.outcome.value == "answered"


async def test_a_record_without_legs_leaves_them_alone(store: Store) -> None:
    await store.write_call_records([final()])
    plain = CallRecord(uniqueid="u1", operator_id="carl", outcome="answered")
    await store.write_call_records([plain, replace(final(), legs=())])
    assert (await stored(store)).legs == (A, B, C)


async def test_legs_of_different_calls_and_servers_do_not_mix(store: Store) -> None:
    other = replace(final("u1"), server_id="ast2", legs=(replace(C, seq=0),))
    await store.write_call_records([final("u1"), other])
    assert (await stored(store)).legs == (A, B, C)
    async with store.transaction() as tx:
        call = await tx.calls.get_by_uniqueid("u1", "ast2")
        assert call is not None and call.legs == (replace(C, seq=0),)
        by_caller = await tx.calls.recent_by_caller(CALLER)
    assert sorted(len(c.legs) for c in by_caller) == [1, 3]


async def test_calls_without_legs_name_their_first_and_last_operator(store: Store) -> None:
    """Rows written before legs existed (or by a plain CallRecord)."""
    await store.write_call_records([CallRecord(
        uniqueid="u2", caller_number=CALLER, started_at=T0, operator_id="boris",
        transferred=True, transferred_from="anna", outcome="answered", ended_at=NOW)])
    call = await stored(store, "u2")
    assert call.legs == () and call.handlers == ("anna", "boris")


async def test_each_handler_keeps_their_own_note(store: Store) -> None:
    await store.write_call_records([final()])
    call_id = (await stored(store)).id
    async with store.transaction() as tx:
        await tx.calls.set_operator_note(call_id, "anna", "router reboots hourly", ago(minutes=9))
        await tx.calls.set_operator_note(call_id, "carl", "replaced the PSU", ago(minutes=8))
        await tx.calls.set_operator_note(call_id, "anna", "router reboots hourly (ISP?)",
                                         ago(minutes=7))
        call = await tx.calls.set_operator_note(call_id, "carl", None, ago(minutes=6))
    assert [(n.operator_id, n.note, n.resolved, n.updated_at) for n in call.notes] == [
        ("anna", "router reboots hourly (ISP?)", None, ago(minutes=7)),
        ("carl", None, None, ago(minutes=6))]
    assert call.note is None  # the call's own note is another thing
    async with store.transaction() as tx:
        call = await tx.calls.set_note(call_id, "supervisor: call the customer back")
    assert call.note == "supervisor: call the customer back" and len(call.notes) == 2


async def test_the_verdict_of_whoever_had_the_caller_last_counts(store: Store) -> None:
    await store.write_call_records([final()])
    call_id = (await stored(store)).id

    async def verdict(operator: str, resolved: bool | None) -> bool | None:
        async with store.transaction() as tx:
            call = await tx.calls.set_operator_verdict(call_id, operator, resolved, NOW)
        return call.resolved

    assert await verdict("anna", False) is False  # the only verdict so far
    assert await verdict("carl", True) is True  # carl had the caller after anna
    assert await verdict("anna", False) is True  # anna cannot undo carl's verdict
    assert await verdict("boris", False) is True
    assert await verdict("carl", None) is False  # carl withdraws: boris is the latest
    assert await verdict("boris", None) is False  # then anna's
    assert await verdict("anna", None) is None
    call = await stored(store)
    assert {n.operator_id: n.resolved for n in call.notes} == {
        "anna": None, "boris": None, "carl": None}


async def test_a_supervisors_verdict_stands_until_a_handler_changes_theirs(
        store: Store) -> None:
    await store.write_call_records([final()])
    call_id = (await stored(store)).id
    async with store.transaction() as tx:
        await tx.calls.set_operator_verdict(call_id, "carl", False, NOW)
        assert (await tx.calls.mark_resolved(call_id, True)).resolved is True
    assert (await stored(store)).resolved is True
    async with store.transaction() as tx:
        call = await tx.calls.set_operator_verdict(call_id, "anna", False, NOW)
    assert call.resolved is False


async def test_the_verdict_feeds_the_routing_snapshot(store: Store) -> None:
    """Escalation counts unresolved calls: the hot path reads ``calls.resolved``."""
    await store.write_call_records([final()])
    call_id = (await stored(store)).id
    async with store.transaction() as tx:
        await tx.calls.set_operator_verdict(call_id, "boris", False, NOW)
    snapshot = await store.snapshot(CALLER, NOW, 3600)
    [past] = snapshot.recent_calls
    assert (past.operator_id, past.resolved) == ("carl", False)


async def test_a_leg_the_table_would_refuse_is_refused_before_writing(store: Store) -> None:
    bad = replace(final("u3"), legs=(replace(A, via="teleport"),))
    with pytest.raises(RecordRejected, match="via"):
        await store.write_call_records([bad])
    async with store.transaction() as tx:
        assert await tx.calls.get_by_uniqueid("u3") is None  # nothing of the batch written


# --- the last handler's own talk time (min_talk_seconds after a transfer) ---------------


async def past(store: Store, uid: str = "u1") -> PastCall:
    """The call as the routing snapshot reads it (SQLite: ``load_snapshot``; PostgreSQL:
    the hot path's ``pg_snapshot``)."""
    call_id = (await stored(store, uid)).id
    snapshot = await store.snapshot(CALLER, NOW, 3600)
    [found] = [c for c in snapshot.recent_calls if c.id == call_id]
    return found


async def test_the_last_handlers_own_talk_reaches_the_snapshot(store: Store) -> None:
    """A 60 s, B 40 s, C 90 s: the call's talk is 190 s, Carl's own 90 s, and a live
    record replayed after the final one, or the decision arriving late, keeps it."""
    await store.write_call_records([live("u1", "anna", OPEN_A),
                                    live("u1", "boris", A, OPEN_B, first="anna")])
    assert (await past(store)).operator_talk_seconds is None  # not known while live
    await store.write_call_records([final()])
    call = await past(store)
    assert (call.operator_id, call.talk_seconds, call.operator_talk_seconds) == ("carl", 190, 90)
    assert call.handler_talk_seconds == 90
    await store.write_call_records([live("u1", "anna", A, OPEN_B, first="anna")])
    await store.record(decision_record(at=T0 - timedelta(seconds=6), uniqueid="u1"))
    assert (await past(store)).operator_talk_seconds == 90


async def test_own_talk_adds_up_the_last_handlers_legs(store: Store) -> None:
    """A -> B -> A: Anna's two parts; a call transferred out to a number no operator owns
    stays Anna's, with her part only."""
    back = leg(2, "anna", T0 + timedelta(seconds=110), 25, LegEnd.HUNG_UP)
    a_to_b_to_a = replace(final("u1"), operator_id="anna", transferred_from=None,
                          legs=(A, replace(B, transferred_to="anna"), back))
    outside = CallLeg(seq=1, operator_id=None, interface="PJSIP/trunk", via="dial",
                      answered_at=T0 + timedelta(seconds=65), talk_seconds=5,
                      ended_at=T0 + timedelta(seconds=70), end=LegEnd.HUNG_UP,
                      hangup_by="caller")
    to_outside = replace(final("u2"), operator_id="anna", transferred_from=None,
                         talk_seconds=65, legs=(replace(A, transferred_to=None), outside))
    await store.write_call_records([a_to_b_to_a, to_outside])
    assert (await past(store, "u1")).operator_talk_seconds == 60 + 25
    assert (await past(store, "u2")).operator_talk_seconds == 60


async def test_a_call_with_one_leg_has_no_own_talk_and_counts_whole(store: Store) -> None:
    """Not transferred, or a blind transfer nobody took: the whole call is the operator's
    (as for calls recorded before legs)."""
    alone = replace(final("u1"), operator_id="anna", transferred_from=None, talk_seconds=60,
                    transferred=False,
                    legs=(replace(A, end=LegEnd.HUNG_UP, transferred_to=None,
                                  transfer_target=None, hangup_by="caller"),))
    untaken = replace(final("u2"), operator_id="anna", transferred_from=None,
                      talk_seconds=60, legs=(replace(A, transferred_to=None),))
    await store.write_call_records([alone, untaken])
    for uid in ("u1", "u2"):
        call = await past(store, uid)
        assert call.operator_talk_seconds is None and call.handler_talk_seconds == 60
