"""DecisionWriter: batches gathered for ``linger`` seconds, flush() does not wait for them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.service.decision_writer import DecisionWriter
from callrouter.service.ports import DecisionRecord


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
