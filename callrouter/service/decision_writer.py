"""Writes decisions to the audit log off the call's path, in order, with a bounded backlog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from itertools import islice
from typing import Any

from callrouter.service.ports import DecisionLog, DecisionRecord, RecordRejected
from callrouter.service.rejects import RejectedSearch

log = logging.getLogger(__name__)


class DecisionWriter:
    """A caller must not wait for the audit log: the route returns, the writer catches up.

    Records wait in a bounded deque; when the database is down the writer retries with
    backoff and keeps the newest ``max_backlog`` records (the oldest are dropped and
    counted, because a decision log is an audit aid, not the call record — the AMI
    listener's call records have their own journal and are not dropped for an outage).

    When the sink has ``record_many``, the writer takes up to ``batch`` waiting records per
    transaction: under load one commit carries many decisions instead of one each (a
    batch that fails is retried whole, so order and at-least-once are kept). When it also
    has ``encode`` and ``record_encoded``, each record is encoded as it is submitted and the
    backlog holds the encoded form: a batch of 150 decisions encoded at once held the event
    loop (and every call on it) for several milliseconds.

    A batch the store rejects for its data (``RecordRejected``) is retried in halves until
    the record at fault is alone; that one is dropped and logged, so one bad record cannot
    stop the log. Any other failure (the database is down) is retried whole, with backoff.
    """

    def __init__(
        self, sink: DecisionLog, max_backlog: int = 50_000, batch: int = 200,
        linger: float = 0.0,
    ) -> None:
        self._sink = sink
        self._batch = max(1, batch)
        # Seconds to let a batch gather before writing it (0: write at once). Measured on
        # PostgreSQL: 5 decisions a transaction cost the database 300 us and the daemon
        # 150 us of CPU per decision; 50 a transaction, 160 us and 40 us.
        self._linger = max(0.0, linger)
        self._hurry = asyncio.Event()  # flush() or a full batch: stop lingering
        self._many: Callable[[Sequence[Any]], Awaitable[None]] | None = getattr(
            sink, "record_many", None
        )
        self._encode: Callable[[DecisionRecord], Any] | None = None
        encode, write_encoded = getattr(sink, "encode", None), getattr(
            sink, "record_encoded", None)
        if encode is not None and write_encoded is not None:
            self._encode, self._many = encode, write_encoded
        self._backlog: deque[Any] = deque()  # records, or their encoded form
        self._search = RejectedSearch(self._batch)  # halved while a rejected batch is searched
        self._max = max_backlog
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.rejected = 0

    def submit(self, record: DecisionRecord) -> None:
        item: Any = record
        if self._encode is not None:
            try:
                item = self._encode(record)
            except Exception:  # never the caller's problem
                log.exception("decision %s could not be encoded for the log; dropped",
                              record.id)
                self.rejected += 1
                return
        if len(self._backlog) >= self._max:
            self._backlog.popleft()
            self.dropped += 1
        self._backlog.append(item)
        self._idle.clear()
        self._wake.set()
        if len(self._backlog) >= self._batch:
            self._hurry.set()

    @property
    def pending(self) -> int:
        return len(self._backlog)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="decision-writer")

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything submitted so far is written (tests, shutdown)."""
        if self._task is None:
            while self._backlog:
                with contextlib.suppress(RecordRejected):  # the next try is a smaller batch
                    await self._write_some()
            return
        self._hurry.set()
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def close(self) -> None:
        try:
            await self.flush()
        except TimeoutError:
            log.warning("decision writer closed with %d unwritten decisions", self.pending)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _write_some(self) -> None:
        if self._many is None:
            try:
                await self._sink.record(self._backlog[0])
            except RecordRejected as exc:
                log.error("the decision log refused a decision (%s); dropped it", exc)
                self.rejected += 1
            else:
                self.written += 1
            self._backlog.popleft()
            return
        batch = list(islice(self._backlog, self._search.size))
        try:
            await self._many(batch)
        except RecordRejected as exc:
            if not self._search.refused(len(batch)):  # the next try is the first half
                raise
            log.error("the decision log refused a decision (%s); dropped it", exc)
            if self._backlog and self._backlog[0] is batch[0]:
                self._backlog.popleft()
            self.rejected += 1
            return
        self._search.written(len(batch))
        # submit() may have dropped the oldest records meanwhile: remove exactly ours.
        for record in batch:
            if self._backlog and self._backlog[0] is record:
                self._backlog.popleft()
        self.written += len(batch)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            if not self._backlog:
                self._idle.set()
                self._hurry.clear()
                self._wake.clear()
                await self._wake.wait()
            if self._linger and not self._hurry.is_set():
                # one transaction for many calls costs far less per call than one each
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), self._linger)
            try:
                await self._write_some()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except RecordRejected:
                self.failures += 1
                self._hurry.set()  # at once: the next, smaller batch is not the same write
            except Exception as exc:
                self.failures += 1
                log.warning("decision log write failed (%s); %d waiting, retry in %.1f s",
                            exc, self.pending, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
