"""DecisionWriter: batches gathered for ``linger`` seconds, flush() does not wait for them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.service.decision_writer import DecisionWriter
from callrouter.service.ports import DecisionRecord, RecordRejected


def record(i: int) -> DecisionRecord:
    return DecisionRecord(
        id=f"d{i}", decided_at=datetime.now(UTC), caller_raw="1", caller_number=None,
        queue="support",
        decision=Decision(action=Action.QUEUE, queue="support", priority=0,
                          reasons=(Reason(ReasonCode.NEW_CALLER, "x"),)),
        latency_ms=1.0,
    )


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def record(self, r: DecisionRecord) -> None:  # pragma: no cover - record_many used
        self.batches.append([r.id])

    async def record_many(self, records: Sequence[DecisionRecord]) -> None:
        self.batches.append([r.id for r in records])


async def test_decisions_arriving_within_the_linger_go_in_one_batch() -> None:
    sink = Sink()
    writer = DecisionWriter(sink, linger=0.2)
    writer.start()
    try:
        for i in range(5):
            writer.submit(record(i))
            await asyncio.sleep(0.01)  # calls arriving over 50 ms
        await asyncio.sleep(0.3)
        assert sink.batches == [["d0", "d1", "d2", "d3", "d4"]]
    finally:
        await writer.close()


async def test_without_linger_each_decision_is_written_at_once() -> None:
    sink = Sink()
    writer = DecisionWriter(sink)
    writer.start()
    try:
        for i in range(3):
            writer.submit(record(i))
            await asyncio.sleep(0.02)
        assert sink.batches == [["d0"], ["d1"], ["d2"]]
    finally:
        await writer.close()


async def test_flush_and_a_full_batch_do_not_wait_for_the_linger() -> None:
    sink = Sink()
    writer = DecisionWriter(sink, linger=5.0, batch=3)
    writer.start()
    try:
        writer.submit(record(0))
        await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        await writer.flush(timeout=1.0)
        assert time.perf_counter() - t0 < 0.5 and sink.batches == [["d0"]]
        for i in range(1, 4):
            writer.submit(record(i))
        await asyncio.sleep(0.05)
        assert sink.batches == [["d0"], ["d1", "d2", "d3"]]
        writer.submit(record(4))
        await asyncio.sleep(0.1)
        assert sink.batches[-1] == ["d1", "d2", "d3"]  # a lone decision lingers...
    finally:
        await writer.close()
    assert sink.batches[-1] == ["d4"]  # ...and close() writes it


class PickySink(Sink):
    """Refuses (for its data) any batch holding a record whose id is in ``bad``."""

    def __init__(self, bad: set[str]) -> None:
        super().__init__()
        self.bad = bad
        self.attempts = 0

    async def record_many(self, records: Sequence[DecisionRecord]) -> None:
        self.attempts += 1
        if any(r.id in self.bad for r in records):
            raise RecordRejected("value too long for type character varying(64)")
        await super().record_many(records)


async def test_a_record_the_store_refuses_is_found_and_dropped_and_the_rest_written() -> None:
    sink = PickySink({"d5"})
    writer = DecisionWriter(sink, batch=8)
    for i in range(12):
        writer.submit(record(i))
    writer.start()
    try:
        await writer.flush(timeout=2.0)
    finally:
        await writer.close()
    written = [i for batch in sink.batches for i in batch]
    assert written == [f"d{i}" for i in range(12) if i != 5]  # in order, nothing else lost
    assert writer.rejected == 1 and writer.written == 11 and writer.pending == 0
    assert sink.attempts < 12  # halving, not one write per record


async def test_a_database_that_is_down_is_retried_whole_and_drops_nothing() -> None:
    class Down(Sink):
        def __init__(self) -> None:
            super().__init__()
            self.down = True

        async def record_many(self, records: Sequence[DecisionRecord]) -> None:
            if self.down:
                raise ConnectionRefusedError("connection refused")
            await super().record_many(records)

    sink = Down()
    writer = DecisionWriter(sink, batch=10)
    writer.start()
    try:
        for i in range(4):
            writer.submit(record(i))
        await asyncio.sleep(0.35)  # a few retries with backoff
        assert writer.failures >= 2 and sink.batches == []
        sink.down = False
        await writer.flush(timeout=3.0)
        assert sink.batches == [["d0", "d1", "d2", "d3"]] and writer.rejected == 0
    finally:
        await writer.close()


class EncodingSink:
    """A sink with ``encode``: records are encoded when submitted, batches get the codes."""

    def __init__(self) -> None:
        self.encoded_at: list[str] = []
        self.batches: list[list[str]] = []

    async def record(self, r: DecisionRecord) -> None:  # pragma: no cover - encoded path used
        raise AssertionError("the encoded path must be used")

    def encode(self, r: DecisionRecord) -> str:
        if r.id == "d2":
            raise ValueError("cannot encode")
        self.encoded_at.append(r.id)
        return f"<{r.id}>"

    async def record_encoded(self, items: Sequence[str]) -> None:
        self.batches.append(list(items))


async def test_a_sink_that_encodes_gets_each_record_encoded_on_submit() -> None:
    sink = EncodingSink()
    writer = DecisionWriter(sink, linger=5.0)
    writer.submit(record(0))
    assert sink.encoded_at == ["d0"]  # at once, not when the batch is written
    writer.submit(record(1))
    writer.submit(record(2))  # a record that cannot be encoded is dropped, not raised
    writer.start()
    try:
        await writer.flush(timeout=1.0)
    finally:
        await writer.close()
    assert sink.batches == [["<d0>", "<d1>"]] and writer.rejected == 1
