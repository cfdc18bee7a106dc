"""CallRecordSink: upsert by (server_id, uniqueid), merging only what a record knows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callrouter.domain.model import Outcome
from callrouter.legs import CallLeg, LeggedCallRecord
from callrouter.service.ports import CallRecord, RecordRejected
from callrouter.store import Store, StoredCall

from .builders import CALLER, ago, answered, decision_record


async def _call(store: Store, uniqueid: str, server_id: str = "default") -> StoredCall:
    async with store.transaction() as tx:
        call = await tx.calls.get_by_uniqueid(uniqueid, server_id)
    assert call is not None
    return call


async def test_same_record_twice_gives_the_same_row(store: Store) -> None:
    record = answered("u1", started=ago(minutes=5))
    await store.write_call_records([record])
    first = await _call(store, "u1")
    await store.write_call_records([record])
    await store.write_call_records([record, record])
    assert await _call(store, "u1") == first
    async with store.transaction() as tx:
        assert len(await tx.calls.recent_by_caller(CALLER)) == 1


async def test_records_fill_in_the_call_the_decision_opened(store: Store) -> None:
    rec = decision_record(at=ago(minutes=5), uniqueid="u1")
    await store.record(rec)
    ringing = CallRecord(uniqueid="u1", started_at=ago(minutes=5, seconds=1))
    connected = CallRecord(
        uniqueid="u1",
        answered_at=ago(minutes=4),
        operator_id="alice",
        answered_interface="PJSIP/alice",
        sticky_hit=True,
        hold_seconds=60,
    )
    hung_up = CallRecord(
        uniqueid="u1",
        ended_at=ago(minutes=1),
        talk_seconds=180,
        outcome="answered",
        hangup_by="operator",
    )
    await store.write_call_records([ringing, connected, hung_up])
    call = await _call(store, "u1")

    assert call.decision_id == rec.id
    assert call.caller_number == CALLER  # kept from the decision
    assert call.started_at == ago(minutes=5, seconds=1)
    assert (call.answered_at, call.ended_at) == (ago(minutes=4), ago(minutes=1))
    assert (call.operator_id, call.answered_interface) == ("alice", "PJSIP/alice")
    assert (call.hold_seconds, call.talk_seconds) == (60, 180)
    assert call.outcome is Outcome.ANSWERED
    assert call.hangup_by == "operator"
    assert call.sticky_hit is True
    assert call.transferred is False


async def test_defaults_never_overwrite_known_values(store: Store) -> None:
    await store.write_call_records([answered("u1", started=ago(minutes=5))])
    before = await _call(store, "u1")
    late = CallRecord(uniqueid="u1", transferred=True, fallback_cause="NOANSWER")
    await store.write_call_records([late])
    after = await _call(store, "u1")

    assert after.outcome is Outcome.ANSWERED  # "in_progress" default did not undo it
    assert after.talk_seconds == before.talk_seconds
    assert after.operator_id == before.operator_id
    assert after.transferred is True
    assert after.fallback_cause == "NOANSWER"


async def test_a_later_final_outcome_replaces_an_earlier_one(store: Store) -> None:
    base = CallRecord(uniqueid="u1", caller_number=CALLER, started_at=ago(minutes=2))
    await store.write_call_records([replace(base, outcome="no_answer")])
    await store.write_call_records([replace(base, outcome="abandoned", hangup_by="caller")])
    call = await _call(store, "u1")
    assert call.outcome is Outcome.ABANDONED
    assert call.hangup_by == "caller"


async def test_a_bad_record_rolls_back_the_whole_batch(store: Store) -> None:
    """Refused for its data (``RecordRejected``: the AMI writer isolates and drops it)."""
    good = answered("u1", started=ago(minutes=5))
    bad = CallRecord(uniqueid="u2", outcome="exploded")
    with pytest.raises(RecordRejected, match="exploded"):
        await store.write_call_records([good, bad])
    async with store.transaction() as tx:
        assert await tx.calls.get_by_uniqueid("u1") is None

    with pytest.raises(RecordRejected):
        await store.write_call_records([CallRecord(uniqueid="u3", hangup_by="nobody")])


def _leg(seq: int) -> CallLeg:
    return CallLeg(seq=seq, operator_id="op1", interface="PJSIP/op1", via="queue",
                   answered_at=ago(minutes=4))


async def test_a_record_the_database_refuses_is_record_rejected(store: Store) -> None:
    """Two legs with one number: the legs' primary key refuses it on both databases."""
    good = answered("u1", started=ago(minutes=5))
    bad = LeggedCallRecord(uniqueid="u2", caller_raw=CALLER, caller_number=CALLER,
                           operator_id="op1", legs=(_leg(0), _leg(0)))
    with pytest.raises(RecordRejected):
        await store.write_call_records([good, bad])
    async with store.transaction() as tx:
        assert await tx.calls.get_by_uniqueid("u1") is None  # nothing of the batch


@pytest.mark.parametrize("bad", [
    CallRecord(uniqueid="u2", operator_id="x" * 65),  # value too long (22001)
    CallRecord(uniqueid="u2", caller_raw="+7912\x00"),  # NUL byte in a text (22021)
], ids=["too_long", "nul_byte"])
async def test_data_errors_are_rejected_on_postgresql_and_kept_on_sqlite(
        store: Store, database_url: str, bad: CallRecord) -> None:
    """SQLAlchemy's asyncpg dialect raises a value too long as a plain DBAPIError, not a
    DataError: the SQLSTATE class decides. SQLite keeps any length, and NUL bytes: there
    the batch is written as it came."""
    batch = [answered("u1", started=ago(minutes=5)), bad]
    if database_url.startswith("sqlite"):
        await store.write_call_records(batch)
        async with store.transaction() as tx:
            assert await tx.calls.get_by_uniqueid("u1") is not None
            assert await tx.calls.get_by_uniqueid("u2") is not None
        return
    with pytest.raises(RecordRejected):
        await store.write_call_records(batch)
    async with store.transaction() as tx:
        assert await tx.calls.get_by_uniqueid("u1") is None


async def test_record_without_start_gets_one(store: Store) -> None:
    await store.write_call_records([CallRecord(uniqueid="u1", ended_at=ago(minutes=1))])
    call = await _call(store, "u1")
    assert call.started_at == ago(minutes=1)
    assert call.caller_raw == ""


async def test_mark_resolved_and_note(store: Store) -> None:
    await store.write_call_records([answered("u1", started=ago(minutes=5))])
    call = await _call(store, "u1")
    async with store.transaction() as tx:
        assert (await tx.calls.mark_resolved(call.id, True)).resolved is True
        noted = await tx.calls.set_note(call.id, "router reset fixed it")
    assert noted.note == "router reset fixed it"
    async with store.transaction() as tx:
        again = await tx.calls.get(call.id)
    assert again is not None and again.resolved is True and again.note == noted.note
    assert again.started_at.tzinfo is not None


async def test_recent_calls_by_operator(store: Store) -> None:
    await store.write_call_records(
        [
            answered("u1", started=ago(minutes=9), operator="alice"),
            answered("u2", started=ago(minutes=5), operator="bob"),
            answered("u3", started=ago(minutes=1), operator="alice"),
        ]
    )
    async with store.transaction() as tx:
        mine = await tx.calls.recent(operator_id="alice")
        everyone = await tx.calls.recent(limit=2)
    assert [c.uniqueid for c in mine] == ["u3", "u1"]
    assert [c.uniqueid for c in everyone] == ["u3", "u2"]
