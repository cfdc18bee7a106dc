"""Call records reach the sink exactly once and in order, across outages and restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta

from callrouter.ami.journal import CallRecordWriter, record_from_json, record_to_json
from callrouter.legs import CallLeg, LegEnd, LeggedCallRecord
from callrouter.service.ports import CallRecord, RecordRejected
from tests.ami.conftest import until


class FlakySink:
    """An in-memory store that is 'down' while ``down`` is set."""

    def __init__(self) -> None:
        self.rows: list[CallRecord] = []
        self.batches = 0
        self.down = False

    async def write_call_records(self, records: Sequence[CallRecord]) -> None:
        if self.down:
            raise ConnectionError("database is down")
        self.batches += 1
        self.rows.extend(records)


def rec(i: int) -> CallRecord:
    return CallRecord(uniqueid=f"1.{i}", server_id="ast1", outcome="answered",
                      operator_id="op1", ended_at=datetime(2026, 1, 1, tzinfo=UTC), talk_seconds=i)


def test_json_round_trip() -> None:
    r = rec(7)
    assert record_from_json(record_to_json(r)) == r


def test_json_round_trip_keeps_the_legs() -> None:
    at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    legs = (CallLeg(0, "op1", "PJSIP/1001", "queue", at, at + timedelta(seconds=30), 4, 30,
                    LegEnd.BLIND_TRANSFER, None, "op2", "op2@transfer"),
            CallLeg(1, "op2", "PJSIP/1002", "dial", at + timedelta(seconds=32)))
    r = LeggedCallRecord(**{f.name: getattr(rec(7), f.name) for f in fields(CallRecord)},
                         legs=legs)
    back = record_from_json(record_to_json(r))
    assert back == r and isinstance(back, LeggedCallRecord)
    assert back.legs[0].end is LegEnd.BLIND_TRANSFER
    # A line written before legs existed reads back as a plain record.
    assert type(record_from_json(record_to_json(rec(7)))) is CallRecord


async def test_outage_memory_then_journal_exactly_once_in_order(tmp_path) -> None:
    sink = FlakySink()
    writer = CallRecordWriter(sink, tmp_path / "calls.journal", memory_limit=5,
                              batch_delay=0.01, retry_min=0.02, retry_max=0.05)
    await writer.start()
    writer.submit(rec(0))
    await until(lambda: len(sink.rows) == 1)
    sink.down = True
    for i in range(1, 21):
        writer.submit(rec(i))
    await asyncio.sleep(0.1)
    assert writer.status.queued_memory == 5 and writer.status.queued_journal == 15
    assert not writer.status.sink_up
    sink.down = False
    await until(lambda: len(sink.rows) == 21)
    assert [r.uniqueid for r in sink.rows] == [f"1.{i}" for i in range(21)]
    assert (tmp_path / "calls.journal").read_bytes() == b""
    await writer.stop()


async def test_restart_with_non_empty_journal_writes_it_first(tmp_path) -> None:
    path = tmp_path / "calls.journal"
    sink = FlakySink()
    sink.down = True
    writer = CallRecordWriter(sink, path, memory_limit=3, batch_delay=0.01, retry_min=0.02)
    await writer.start()
    for i in range(8):
        writer.submit(rec(i))
    await writer.stop(timeout=0.1)  # database still down: everything lands in the journal
    assert len(path.read_text().splitlines()) == 8

    sink2 = FlakySink()
    writer2 = CallRecordWriter(sink2, path, batch_delay=0.01, retry_min=0.02)
    await writer2.start()
    writer2.submit(rec(8))
    await until(lambda: len(sink2.rows) == 9)
    assert [r.uniqueid for r in sink2.rows] == [f"1.{i}" for i in range(9)]
    await writer2.stop()


async def test_crash_after_partial_journal_write_resumes_at_offset(tmp_path) -> None:
    path = tmp_path / "calls.journal"
    sink = FlakySink()
    sink.down = True
    writer = CallRecordWriter(sink, path, memory_limit=0, batch_size=2, batch_delay=0.01,
                              retry_min=0.02)
    await writer.start()
    for i in range(5):
        writer.submit(rec(i))
    sink.down = False
    await until(lambda: len(sink.rows) >= 2)
    # "crash": drop the writer without stop(); the offset file says what was written
    assert writer._task is not None
    writer._task.cancel()
    written = len(sink.rows)
    sink2 = FlakySink()
    writer2 = CallRecordWriter(sink2, path, batch_delay=0.01)
    await writer2.start()
    await until(lambda: len(sink.rows) + len(sink2.rows) == 5)
    assert [r.uniqueid for r in sink.rows[:written] + sink2.rows] == [f"1.{i}" for i in range(5)]
    await writer2.stop()


async def test_torn_last_line_is_not_a_record(tmp_path) -> None:
    path = tmp_path / "calls.journal"
    path.write_text(record_to_json(rec(1)) + "\n" + record_to_json(rec(2))[:20])
    sink = FlakySink()
    writer = CallRecordWriter(sink, path, batch_delay=0.01)
    await writer.start()
    await until(lambda: len(sink.rows) == 1)
    await writer.stop()


class PickySink(FlakySink):
    """Refuses (for its data) any batch holding a record whose uniqueid is in ``bad``."""

    def __init__(self, bad: set[str]) -> None:
        super().__init__()
        self.bad = bad
        self.attempts = 0

    async def write_call_records(self, records: Sequence[CallRecord]) -> None:
        if self.down:
            raise ConnectionError("database is down")
        self.attempts += 1
        if any(r.uniqueid in self.bad for r in records):
            raise RecordRejected("value too long for type character varying(64)")
        await super().write_call_records(records)


async def test_a_record_the_store_refuses_is_dropped_and_the_rest_written_in_order(
        tmp_path, caplog) -> None:
    sink = PickySink({"1.5"})
    writer = CallRecordWriter(sink, tmp_path / "calls.journal", batch_size=8,
                              batch_delay=0.01, retry_min=0.02)
    for i in range(12):
        writer.submit(rec(i))
    await writer.start()
    try:
        await until(lambda: writer.status.queued_memory == 0)
    finally:
        await writer.stop()
    assert [r.uniqueid for r in sink.rows] == [f"1.{i}" for i in range(12) if i != 5]
    assert writer.status.rejected == 1 and writer.status.written == 11
    assert writer.status.sink_up  # the database answered: it is not down
    assert sink.attempts < 12  # halving, not one write per record
    [line] = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "uniqueid 1.5" in line and "value too long" in line and '"talk_seconds":5' in line


async def test_a_refused_record_in_the_journal_is_dropped_past_its_offset(tmp_path) -> None:
    """Records held in the journal through an outage, one of them bad: after the outage
    the good ones are written in order, the bad one is dropped, the journal drains, and a
    restart does not bring it back."""
    path = tmp_path / "calls.journal"
    sink = PickySink({"1.3"})
    sink.down = True
    writer = CallRecordWriter(sink, path, memory_limit=0, batch_size=4, batch_delay=0.01,
                              retry_min=0.02, retry_max=0.05)
    await writer.start()
    for i in range(10):
        writer.submit(rec(i))
    await asyncio.sleep(0.15)  # a few failed retries: the database is down, nothing dropped
    assert writer.status.queued_journal == 10 and writer.status.rejected == 0
    assert not writer.status.sink_up
    sink.down = False
    await until(lambda: writer.status.queued_journal == 0)
    await writer.stop()
    assert [r.uniqueid for r in sink.rows] == [f"1.{i}" for i in range(10) if i != 3]
    assert writer.status.rejected == 1 and path.read_bytes() == b""

    sink2 = FlakySink()
    writer2 = CallRecordWriter(sink2, path, batch_delay=0.01)
    await writer2.start()
    writer2.submit(rec(10))
    await until(lambda: len(sink2.rows) == 1)
    assert [r.uniqueid for r in sink2.rows] == ["1.10"]
    await writer2.stop()


async def test_a_database_that_is_down_is_never_a_rejection(tmp_path) -> None:
    sink = FlakySink()
    sink.down = True
    writer = CallRecordWriter(sink, tmp_path / "calls.journal", memory_limit=3,
                              batch_size=2, batch_delay=0.01, retry_min=0.02, retry_max=0.05)
    await writer.start()
    for i in range(6):
        writer.submit(rec(i))
    await asyncio.sleep(0.2)
    assert writer.status.failures >= 2 and writer.status.rejected == 0
    assert writer.status.queued_memory + writer.status.queued_journal == 6
    sink.down = False
    await until(lambda: len(sink.rows) == 6)
    assert [r.uniqueid for r in sink.rows] == [f"1.{i}" for i in range(6)]
    await writer.stop()
