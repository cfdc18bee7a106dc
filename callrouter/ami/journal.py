"""Durable hand-off of call records to the store: batched, ordered, never lost.

Records wait in memory up to a bound; beyond it (the database is down) they go to an
append-only JSON-lines journal, fsync'd. Once the journal holds anything, every newer
record goes there too, so the order is memory first, then the journal. The journal is
truncated only after its records were written; a committed-offset file next to it
keeps a crash between the two from writing a batch twice (and the store's upsert by
server_id + uniqueid makes a repeat harmless anyway). On start, a journal left by a
previous run is written first.

A record the store refuses for its data (``RecordRejected``: a value too long, a NUL byte,
a check it fails) would be refused again on every retry and hold every later record
behind it: the batch is halved until that record is alone, which is then dropped, logged
with its whole journal line, and counted (``WriterStatus.rejected``); the records before
and after it are written in order. A database that is down is never a rejection: those
records are kept and retried as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from callrouter.legs import CallLeg, LegEnd, LeggedCallRecord
from callrouter.service.ports import CallRecord, CallRecordSink, RecordRejected
from callrouter.service.rejects import RejectedSearch

log = logging.getLogger(__name__)

_DATETIME_FIELDS = frozenset(
    f.name for f in fields(CallRecord) if f.name in ("started_at", "answered_at", "ended_at"))
_FIELD_NAMES = frozenset(f.name for f in fields(CallRecord))
_LEG_TIMES = ("answered_at", "ended_at")
_LEG_FIELDS = frozenset(f.name for f in fields(CallLeg))
# A dropped record is logged whole up to this many characters (a value too long for its
# column can be very long).
_LOGGED_RECORD = 8000


def record_to_json(record: CallRecord) -> str:
    """One journal line. A record with legs (``LeggedCallRecord``) keeps them under
    ``legs``; a plain ``CallRecord`` has no such key (and reads back as one)."""
    d: dict[str, Any] = asdict(record)
    for name in _DATETIME_FIELDS:
        if d[name] is not None:
            d[name] = d[name].isoformat()
    for leg in d.get("legs") or ():
        for name in _LEG_TIMES:
            if leg[name] is not None:
                leg[name] = leg[name].isoformat()
    return json.dumps(d, separators=(",", ":"), sort_keys=True)


def record_from_json(line: str) -> CallRecord:
    d = json.loads(line)
    for name in _DATETIME_FIELDS:
        if d.get(name):
            d[name] = datetime.fromisoformat(d[name])
    values = {k: v for k, v in d.items() if k in _FIELD_NAMES}
    if "legs" not in d:  # written before legs existed, or a plain CallRecord
        return CallRecord(**values)
    return LeggedCallRecord(**values, legs=tuple(_leg(x) for x in d["legs"]))


def _leg(d: dict[str, Any]) -> CallLeg:
    for name in _LEG_TIMES:
        if d.get(name):
            d[name] = datetime.fromisoformat(d[name])
    if d.get("end") is not None:
        d["end"] = LegEnd(d["end"])
    return CallLeg(**{k: v for k, v in d.items() if k in _LEG_FIELDS})


class Journal:
    """Append-only JSON-lines file plus the offset up to which it has been written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset_path = path.with_name(path.name + ".offset")
        self.pending = 0

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.pending = len(self.read(limit=None))

    def committed(self) -> int:
        try:
            return int(self.offset_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def append(self, records: Sequence[CallRecord]) -> None:
        data = "".join(record_to_json(r) + "\n" for r in records).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.pending += len(records)

    def read(self, limit: int | None) -> list[tuple[CallRecord, int]]:
        """Unwritten records with the file offset just past each one."""
        out: list[tuple[CallRecord, int]] = []
        try:
            with self.path.open("rb") as f:
                f.seek(self.committed())
                pos = f.tell()
                for raw in f:
                    if not raw.endswith(b"\n"):  # torn last line of a crash: not yet a record
                        break
                    pos += len(raw)
                    try:
                        out.append((record_from_json(raw.decode()), pos))
                    except (ValueError, TypeError):
                        log.error("journal %s: unreadable line skipped at %d", self.path, pos)
                        continue
                    if limit is not None and len(out) >= limit:
                        break
        except FileNotFoundError:
            pass
        return out

    def rewrite(self, records: Sequence[CallRecord]) -> None:
        """Make ``records`` the unwritten part, atomically: a crash leaves the old journal
        or the new one, never a truncated one. The written part is kept as it is, so the
        committed offset stays right for both."""
        head = b""
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as f:
            head = f.read(self.committed())
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(head + "".join(record_to_json(r) + "\n" for r in records).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.pending = len(records)

    def commit(self, offset: int, count: int) -> None:
        self.pending = max(0, self.pending - count)
        if self.pending == 0:
            # Everything written: start over. Offset first, so a crash leaves no replay.
            with self.path.open("wb") as f:
                os.fsync(f.fileno())
            _write_sync(self.offset_path, "0")
        else:
            _write_sync(self.offset_path, str(offset))


def _write_sync(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(slots=True)
class WriterStatus:
    queued_memory: int = 0
    queued_journal: int = 0
    written: int = 0
    failures: int = 0  # failed writes, retried (a refused batch: retried in halves)
    rejected: int = 0  # records the store refused for their data: logged and dropped
    sink_up: bool = True
    last_error: str | None = None
    last_write_at: float | None = None


class CallRecordWriter:
    """Feeds a :class:`CallRecordSink` in order, in batches, surviving its outages."""

    def __init__(self, sink: CallRecordSink, journal_path: Path | str, *,
                 memory_limit: int = 10_000, batch_size: int = 500,
                 batch_delay: float = 0.2, retry_min: float = 0.5,
                 retry_max: float = 10.0) -> None:
        self.sink = sink
        self.journal = Journal(Path(journal_path))
        self.memory: deque[CallRecord] = deque()
        self.memory_limit = memory_limit
        self.batch_size = batch_size
        self.batch_delay = batch_delay
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.status = WriterStatus()
        self._search = RejectedSearch(batch_size)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.journal.open()
        if self.journal.pending:
            log.warning("call-record journal %s holds %d records from an earlier run; "
                        "writing them first", self.journal.path, self.journal.pending)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="call-record-writer")
        if self.journal.pending or self.memory:  # records submitted before start too
            self._wake.set()

    def submit(self, record: CallRecord) -> None:
        """Queue one record (never blocks, never raises for a database outage)."""
        if self.journal.pending or len(self.memory) >= self.memory_limit:
            self.journal.append([record])
        else:
            self.memory.append(record)
        self._update()
        if self._wake is not None:
            self._wake.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Try a last write; whatever is still in memory goes to the journal."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.memory:
            try:
                await asyncio.wait_for(self._write_memory_batch(len(self.memory)), timeout)
            except Exception as exc:  # any sink failure: keep the records
                log.warning("call-record writer: final write failed (%s); journaling %d",
                            exc, len(self.memory))
        if self.memory:
            # The journal must keep the order: memory records are older than its tail,
            # so they go in front by rewriting the unwritten part.
            rest = [r for r, _ in self.journal.read(limit=None)]
            older = list(self.memory)
            self.journal.rewrite(older + rest)
            self.memory.clear()
        self._update()

    def _update(self) -> None:
        self.status.queued_memory = len(self.memory)
        self.status.queued_journal = self.journal.pending

    async def _run(self) -> None:
        assert self._wake is not None
        delay = self.retry_min
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.batch_delay)  # gather a batch: written within ~1 s
            while self.memory or self.journal.pending:
                try:
                    if self.memory:
                        await self._write_memory_batch(self._search.size)
                    else:
                        await self._write_journal_batch()
                except asyncio.CancelledError:
                    raise
                except RecordRejected:
                    # the database answered: the next, smaller batch goes at once
                    self.status.failures += 1
                except Exception as exc:  # the sink is down: retry later
                    self.status.failures += 1
                    if self.status.sink_up:
                        log.error("call-record sink failed (%s); holding records", exc)
                    self.status.sink_up = False
                    self.status.last_error = str(exc)
                    await asyncio.sleep(delay)
                    delay = min(self.retry_max, delay * 2)
                    continue
                if not self.status.sink_up:
                    log.warning("call-record sink is back")
                self.status.sink_up = True
                delay = self.retry_min
            self._update()

    async def _write_memory_batch(self, n: int) -> None:
        batch = [self.memory[i] for i in range(min(n, len(self.memory)))]
        try:
            await self.sink.write_call_records(batch)
        except RecordRejected as exc:
            if not self._search.refused(len(batch)):
                raise  # the next try is the first half
            self.memory.popleft()
            self._rejected(batch[0], exc)
            return
        for _ in batch:
            self.memory.popleft()
        self._search.written(len(batch))
        self._written(len(batch))

    async def _write_journal_batch(self) -> None:
        entries = self.journal.read(limit=self._search.size)
        if not entries:
            self.journal.commit(0, self.journal.pending)
            return
        try:
            await self.sink.write_call_records([r for r, _ in entries])
        except RecordRejected as exc:
            if not self._search.refused(len(entries)):
                raise
            self.journal.commit(entries[0][1], 1)  # past the refused record
            self._rejected(entries[0][0], exc)
            return
        self.journal.commit(entries[-1][1], len(entries))
        self._search.written(len(entries))
        self._written(len(entries))

    def _rejected(self, record: CallRecord, exc: RecordRejected) -> None:
        """Count and log a dropped record with all of it, so it can be found and mended."""
        self.status.rejected += 1
        self._update()
        try:
            line = record_to_json(record)
        except (TypeError, ValueError):
            line = repr(record)
        log.error("call record refused by the store for its data, dropped: server %s "
                  "uniqueid %s (%s); the record: %s",
                  record.server_id, record.uniqueid, exc, line[:_LOGGED_RECORD])

    def _written(self, n: int) -> None:
        self.status.written += n
        self.status.last_write_at = time.time()
        self._update()
