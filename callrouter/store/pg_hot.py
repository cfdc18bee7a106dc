"""The FastAGI hot path on PostgreSQL: caller snapshots and decision batches on asyncpg.

Everything a routed call touches in the database goes through here when the store is
PostgreSQL: one prepared statement reads the snapshots of the callers asked together
(``pg_snapshots``; reads are batched like a group commit, see ``PgHotPath.snapshot``),
and the decision writer's batches go in as one statement each (``WRITE_DECISIONS``). The
rest of the service (CLI, API, AMI records) keeps the SQLAlchemy ``Store``; the rows this
module writes are the rows ``DecisionRepository.insert_many`` / ``open_calls`` write (a
store test compares them column by column).

Why a pool of its own: a SQLAlchemy session checkout with pre-ping costs three round trips
and about half a millisecond of Python per call, which at 1,500 calls/s is most of a core.

What keeps a sick database from hurting calls:

* connections open lazily: the daemon starts, and routes to the normal queue, with the
  database down; a broken connection is dropped and the next call opens a new one;
* connecting and waiting for a free connection have their own timeouts;
* a read the caller stopped waiting for (time budget) is finished, not cancelled: the
  FastAGI handler abandons a late routing instead of cancelling it (a query cancelled
  mid-flight costs asyncpg a cancel request on a connection of its own and, under load,
  a storm of them), so a statement runs in the task of the read that started it, with no
  task or shield of its own; a statement cancelled anyway (shutdown, an HTTP client gone)
  drops its connection, and the reads waiting on it get the error at once;
* at most ``max_inflight`` reads are in flight; past that a read fails at once
  (``StoreBusy``) instead of queueing behind a database that stopped answering.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import JSON
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from callrouter.aio import retrieve_exception
from callrouter.service.ports import CallerSnapshot, DecisionRecord, RecordRejected
from callrouter.store.calls import (
    CALL_COPIED_FROM_DECISION,
    CALL_KEPT_FROM_AMI,
    CALL_KEY,
    CALL_OPENED_AS,
    CALL_TAKEN_FROM_DECISION,
    new_call_id,
)
from callrouter.store.decisions import decision_values
from callrouter.store.errors import StoreError, refused_for_data
from callrouter.store.models import CallRow, DecisionRow
from callrouter.store.pg_snapshot import pg_snapshots

# Query parameters SQLAlchemy's asyncpg dialect understands but asyncpg's DSN parser would
# pass to the server as settings.
_SQLALCHEMY_ONLY = (
    "prepared_statement_cache_size", "prepared_statement_name_func", "async_fallback",
)

_DECISIONS = DecisionRow.__table__
_DECISION_COLUMNS = tuple(_DECISIONS.columns.keys())
_JSON_COLUMNS = frozenset(c.name for c in _DECISIONS.columns if isinstance(c.type, JSON))
_CALL_COLUMNS = CallRow.__table__.columns


def _sql_type(column: Any) -> str:
    return str(column.type.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]


def _write_sql() -> str:
    """A batch of decisions and the call rows they open, in one statement.

    The batch travels as one JSON array of decision rows (``encode``), read back with
    ``json_to_recordset`` and the decisions table's own column types: the decisions are
    inserted from it and each call row is built from the same row as ``call_from_decision``
    builds it (``CALL_COPIED_FROM_DECISION``, ``CALL_OPENED_AS``), merged into a row the
    AMI listener wrote first as ``merge_into_ami_row`` merges it.

    Why this shape: two ``executemany`` ran one insert per row each, so the database
    planned and started its executor twice per call (170-183 us of its CPU per decision;
    one statement, 50-67 us). And one text parameter costs the daemon nothing to send,
    where asyncpg encodes array or row parameters on the event loop when the batch goes
    out (150 decisions: ~3 ms during which no call is answered).
    """
    n = len(_DECISION_COLUMNS)
    definitions = ", ".join(f"{c} {_sql_type(_DECISIONS.c[c])}" for c in _DECISION_COLUMNS)
    names = ", ".join(_DECISION_COLUMNS)
    opened = list(CALL_OPENED_AS)
    call_columns = ["id", *CALL_COPIED_FROM_DECISION, *opened]
    select_call = ", ".join(
        ["u.call_id"]
        + [f"u.{src}" for src in CALL_COPIED_FROM_DECISION.values()]
        + [f"${2 + i}::{_sql_type(_CALL_COLUMNS[c])}" for i, c in enumerate(opened)]
    )
    merge = [f"{c} = excluded.{c}" for c in CALL_TAKEN_FROM_DECISION]
    merge += [f"{c} = coalesce(calls.{c}, excluded.{c})" for c in CALL_KEPT_FROM_AMI]
    assert n == len(_DECISIONS.columns)
    return (
        f"WITH u AS MATERIALIZED (SELECT * FROM json_to_recordset($1::json) "
        f"AS u({definitions}, call_id text)), "
        f"d AS (INSERT INTO decisions ({names}) SELECT {names} FROM u) "
        f"INSERT INTO calls ({', '.join(call_columns)}) SELECT {select_call} FROM u "
        f"ON CONFLICT ({', '.join(CALL_KEY)}) DO UPDATE SET {', '.join(merge)}"
    )


WRITE_DECISIONS = _write_sql()
_OPENED_VALUES = tuple(CALL_OPENED_AS.values())

# A snapshot request (number, now, lookback seconds), and one waiting for a statement slot.
_Request = tuple[str, datetime, int]
_Waiting = tuple[str, datetime, int, "asyncio.Future[CallerSnapshot]"]

# A decision as the hot path's batches carry it: its call's key (server_id, uniqueid; the
# uniqueid may be None) and its row as a JSON object. One flat tuple of strings: the
# garbage collector stops tracking it at its first collection.
Encoded = tuple[str, str | None, str]


def _without_repeated_calls(items: Sequence[Encoded]) -> list[list[Encoded]]:
    """The batch in order, cut where a call (server_id, uniqueid) comes back: one statement
    cannot upsert the same row twice (the AGI ran twice on one channel), so the second
    decision goes in the next statement and merges into the row the first one opened."""
    chunks: list[list[Encoded]] = [[]]
    seen: set[tuple[str, str]] = set()
    for item in items:
        if item[1] is not None:
            key = (item[0], item[1])
            if key in seen:
                chunks.append([])
                seen.clear()
            seen.add(key)
        chunks[-1].append(item)
    return chunks


# SQLSTATE classes of errors about a statement, after which the connection is still good
# (data, integrity, syntax/undefined object, transaction rollback, feature not supported).
# Anything else — the server shutting the session down (57P01), a protocol or I/O error —
# drops the connection, so the next call opens a fresh one.
_STATEMENT_CLASSES = ("22", "23", "42", "40", "0A")


def _statement_error(exc: asyncpg.PostgresError) -> bool:
    return str(getattr(exc, "sqlstate", "") or "")[:2] in _STATEMENT_CLASSES


class StoreBusy(StoreError):
    """Too many snapshot reads already wait on the database: fail this one at once."""


def asyncpg_dsn(url: str) -> str:
    """``postgresql+asyncpg://u:p@h/db?x=y`` -> the plain DSN asyncpg takes."""
    parsed = make_url(url)
    query = {k: v for k, v in parsed.query.items() if k not in _SQLALCHEMY_ONLY}
    return parsed.set(drivername="postgresql", query=query).render_as_string(
        hide_password=False
    )


def _dumps(values: dict[str, Any]) -> str:
    """A decision row as JSON text. orjson, not the json module: 2.4 against 20 us for a
    typical row, once per routed call. ``default=str`` is for values of the inputs summary
    only; ``decided_at`` is made text first."""
    return orjson.dumps(values, default=str).decode()


def encode_decision(r: DecisionRecord) -> Encoded:
    """A decision as ``WRITE_DECISIONS`` reads it: ``decision_values`` plus its call's id."""
    values = decision_values(r)
    # ISO 8601 text, which timestamptz reads back exactly: a datetime left to the encoder's
    # default= costs a call back into Python (20 us a row against 10)
    values["decided_at"] = r.decided_at.isoformat()
    values["call_id"] = new_call_id()
    return r.server_id, r.uniqueid, _dumps(values)


class Connections:
    """A few asyncpg connections handed out one call at a time.

    Not ``asyncpg.Pool``: its acquire/release (timeouts, holder bookkeeping, a reset query
    or hook per release) cost about 100 us of CPU per call, as much as the snapshot query
    itself. Here acquiring is a list pop when a connection is idle; connections open lazily
    (a daemon starts with the database down) and a broken one is dropped on release, so
    the next call opens a new one. Nothing here sets session state, so nothing is reset.
    """

    def __init__(self, dsn: str, *, max_size: int, connect_timeout: float,
                 acquire_timeout: float) -> None:
        self._dsn = dsn
        self._max = max(1, max_size)
        self._connect_timeout = connect_timeout
        self._acquire_timeout = acquire_timeout
        self._idle: list[asyncpg.Connection] = []
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._open = 0  # connections open or opening
        self._closed = False

    async def acquire(self) -> asyncpg.Connection:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._acquire_timeout
        while True:
            if self._closed:
                raise StoreError("the hot path is closed")
            while self._idle:
                conn = self._idle.pop()
                if not conn.is_closed():
                    return conn
                self._open -= 1
            if self._open < self._max:
                self._open += 1
                try:
                    return await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
                except BaseException:
                    self._open -= 1
                    raise
            # every connection is busy: wait for one to be released (or dropped: None,
            # then this call may open the replacement itself)
            waiter: asyncio.Future[asyncpg.Connection | None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                conn = await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise StoreBusy(
                    f"no database connection free within {self._acquire_timeout:.1f} s"
                ) from None
            if conn is not None:
                return conn

    def release(self, conn: asyncpg.Connection, *, broken: bool = False) -> None:
        if broken or conn.is_closed() or conn.is_in_transaction() or self._closed:
            conn.terminate()
            self._open -= 1
            # a waiter may now open a connection of its own: wake one to try
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    break
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._open -= 1
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except Exception:
                conn.terminate()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(StoreError("the hot path is closed"))


class PgHotPath:
    """``CallerSnapshotSource`` and ``DecisionLog`` (with ``record_many``) on asyncpg."""

    def __init__(
        self,
        url: str,
        *,
        max_size: int = 10,
        connect_timeout: float = 2.0,
        acquire_timeout: float = 2.0,
        max_inflight: int = 200,
        max_batch: int = 32,
        max_batches: int = 2,
    ) -> None:
        self._connections = Connections(
            asyncpg_dsn(url), max_size=max_size, connect_timeout=connect_timeout,
            acquire_timeout=acquire_timeout,
        )
        self._max_inflight = max_inflight
        self._max_batch = max(1, max_batch)
        self._max_batches = max(1, max_batches)
        self._waiting: deque[_Waiting] = deque()
        self._batches = 0  # snapshot statements in flight
        self.inflight = 0
        self.statements = 0  # snapshot statements run (reads / statements: the batching)

    async def close(self) -> None:
        await self._connections.close()

    # CallerSnapshotSource ------------------------------------------------------------

    async def snapshot(self, number: str, now: datetime, lookback_seconds: int) -> (
        CallerSnapshot
    ):
        """One caller's snapshot, read together with the others asked meanwhile.

        Group commit, for reads: at most ``max_batches`` statements run at once. A read
        that finds one free runs its own at once, in its own task, taking along whoever
        waits; a read that finds none waits, and the waiters go in one statement as soon
        as one ends. Under light load nothing waits; under heavy load a statement carries
        several callers, which costs the database and the daemon far less than a
        statement each (``SNAPSHOTS_SQL``).
        """
        if self.inflight >= self._max_inflight:
            raise StoreBusy(f"{self.inflight} snapshot reads already waiting on the database")
        self.inflight += 1
        try:
            if self._batches < self._max_batches:
                return await self._lead((number, now, lookback_seconds))
            waiter: asyncio.Future[CallerSnapshot] = (
                asyncio.get_running_loop().create_future()
            )
            self._waiting.append((number, now, lookback_seconds, waiter))
            return await waiter
        finally:
            self.inflight -= 1

    async def _lead(self, own: _Request) -> CallerSnapshot:
        """Read ``own`` with up to ``max_batch - 1`` waiting requests in one statement."""
        batch = self._take(self._max_batch - 1)
        snapshots = await self._batch([own, *(w[:3] for w in batch)], batch)
        return snapshots[0]

    async def _serve_waiting(self) -> None:
        """One statement for requests that waited while every slot was taken (``_batch``
        starts the next one when more wait)."""
        if self._batches >= self._max_batches:
            return
        batch = self._take(self._max_batch)
        if batch:  # not all of them cancelled meanwhile
            with contextlib.suppress(Exception):  # handed to the waiters
                await self._batch([w[:3] for w in batch], batch)

    def _take(self, n: int) -> list[_Waiting]:
        waiting = self._waiting
        taken: list[_Waiting] = []
        while waiting and len(taken) < n:
            item = waiting.popleft()
            if not item[3].done():  # not cancelled meanwhile
                taken.append(item)
        return taken

    async def _batch(self, requests: list[_Request], waiters: list[_Waiting]) -> (
        list[CallerSnapshot]
    ):
        """Run one statement for ``requests``; the last ``len(waiters)`` of them are
        waiters', whose futures get their snapshot (or the error)."""
        self._batches += 1
        self.statements += 1
        try:
            snapshots = await self._read(requests)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else StoreError("snapshot read cancelled")
            for waiter in waiters:
                if not waiter[3].done():
                    waiter[3].set_exception(error)
            raise
        finally:
            self._batches -= 1
            if self._waiting and self._batches < self._max_batches:
                task = asyncio.get_running_loop().create_task(self._serve_waiting())
                task.add_done_callback(retrieve_exception)
        for waiter, snapshot in zip(waiters, snapshots[len(requests) - len(waiters):],
                                    strict=True):
            if not waiter[3].done():
                waiter[3].set_result(snapshot)
        return snapshots

    async def _read(self, requests: list[_Request]) -> list[CallerSnapshot]:
        conn = await self._connections.acquire()
        broken = True
        try:
            snapshots = await pg_snapshots(conn, requests)
            broken = False
            return snapshots
        except asyncpg.PostgresError as exc:
            broken = not _statement_error(exc)
            raise
        finally:
            self._connections.release(conn, broken=broken)

    # DecisionLog ---------------------------------------------------------------------

    async def record(self, record: DecisionRecord) -> None:
        await self.record_many([record])

    def encode(self, record: DecisionRecord) -> Encoded:
        """The decision writer encodes each record when it is submitted (one JSON object,
        ~15 us) so that sending a batch costs the event loop nothing."""
        return encode_decision(record)

    async def record_many(self, records: Sequence[DecisionRecord]) -> None:
        """The decisions and the call rows they open, in one transaction."""
        await self.record_encoded([encode_decision(r) for r in records])

    async def record_encoded(self, items: Sequence[Encoded]) -> None:
        """Encoded decisions (``encode``) and their call rows, in one transaction."""
        if not items:
            return
        batches = ["[" + ",".join(item[2] for item in chunk) + "]"
                   for chunk in _without_repeated_calls(items)]
        conn = await self._connections.acquire()
        broken = True
        try:
            if len(batches) == 1:  # a statement is its own transaction
                await conn.execute(WRITE_DECISIONS, batches[0], *_OPENED_VALUES)
            else:
                async with conn.transaction():
                    for batch in batches:
                        await conn.execute(WRITE_DECISIONS, batch, *_OPENED_VALUES)
            broken = False
        except asyncpg.PostgresError as exc:
            broken = not _statement_error(exc)  # the transaction block rolled back
            # the data itself (a value too long, a NUL in a text, a duplicate id): the same
            # records would be refused again, so the writer isolates them
            if refused_for_data(exc):
                raise RecordRejected(f"{type(exc).__name__}: {exc}") from exc
            raise
        finally:
            self._connections.release(conn, broken=broken)
