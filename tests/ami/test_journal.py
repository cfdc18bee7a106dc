"""Call records reach the sink exactly once and in order, across outages and restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta

from callrouter.ami.journal import CallRecordWriter, record_from_json, record_to_json
from callrouter.legs import CallLeg, LegEnd, LeggedCallRecord
from callrouter.service.ports import CallRecord
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
