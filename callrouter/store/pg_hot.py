"""The FastAGI hot path on PostgreSQL: caller snapshots and decision batches on asyncpg.

Everything a routed call touches in the database goes through here when the store is
PostgreSQL: one prepared statement reads the caller's snapshot (``pg_snapshot``), and the
decision writer's batches go in with two prepared ``executemany`` in one transaction. The
rest of the service (CLI, API, AMI records) keeps the SQLAlchemy ``Store``; the rows this
module writes are the rows ``DecisionRepository.insert_many`` / ``open_calls`` write (a
store test compares them column by column).

Why a pool of its own: a SQLAlchemy session checkout with pre-ping costs three round trips
and about half a millisecond of Python per call, which at 1,500 calls/s is most of a core.

What keeps a sick database from hurting calls:

* connections open lazily: the daemon starts, and routes to the normal queue, with the
  database down; a broken connection is dropped and the next call opens a new one;
* connecting and waiting for a free connection have their own timeouts;
* a read the caller stopped waiting for (time budget) is finished, not cancelled — a
  query cancelled mid-flight costs asyncpg its connection and, under load, a reconnect
  storm — and its answer is discarded;
* at most ``max_inflight`` reads are in flight; past that a read fails at once
  (``StoreBusy``) instead of queueing behind a database that stopped answering.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import JSON
from sqlalchemy.engine import make_url

from callrouter.service.ports import CallerSnapshot, DecisionRecord
from callrouter.store.calls import (
    CALL_KEPT_FROM_AMI,
    CALL_KEY,
    CALL_TAKEN_FROM_DECISION,
    call_values,
)
from callrouter.store.decisions import decision_values
from callrouter.store.errors import StoreError
from callrouter.store.models import DecisionRow
from callrouter.store.pg_snapshot import pg_snapshot

# Query parameters SQLAlchemy's asyncpg dialect understands but asyncpg's DSN parser would
# pass to the server as settings.
_SQLALCHEMY_ONLY = (
    "prepared_statement_cache_size", "prepared_statement_name_func", "async_fallback",
)

_DECISIONS = DecisionRow.__table__
_DECISION_COLUMNS = tuple(_DECISIONS.columns.keys())
_JSON_COLUMNS = frozenset(c.name for c in _DECISIONS.columns if isinstance(c.type, JSON))

INSERT_DECISION = "INSERT INTO decisions ({}) VALUES ({})".format(
    ", ".join(_DECISION_COLUMNS),
    ", ".join(f"${i}::json" if c in _JSON_COLUMNS else f"${i}"
              for i, c in enumerate(_DECISION_COLUMNS, 1)),
)


@functools.cache
def upsert_call_sql(columns: tuple[str, ...]) -> str:
    """The call row a decision opens, merged into a row the AMI listener wrote first
    exactly as ``merge_into_ami_row`` merges it (the same column lists)."""
    merge = [f"{c} = excluded.{c}" for c in CALL_TAKEN_FROM_DECISION]
    merge += [f"{c} = coalesce(calls.{c}, excluded.{c})" for c in CALL_KEPT_FROM_AMI]
    return (
        f"INSERT INTO calls ({', '.join(columns)}) "
        f"VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))}) "
        f"ON CONFLICT ({', '.join(CALL_KEY)}) DO UPDATE SET {', '.join(merge)}"
    )


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


# One encoder for every row: json.dumps(default=...) builds a new JSONEncoder per call.
_dumps = json.JSONEncoder(default=str).encode


def decision_row(r: DecisionRecord) -> tuple[Any, ...]:
    """``decision_values`` in ``INSERT_DECISION``'s column order, JSON columns as text."""
    values = decision_values(r)
    return tuple(_dumps(values[c]) if c in _JSON_COLUMNS else values[c]
                 for c in _DECISION_COLUMNS)


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
    ) -> None:
        self._connections = Connections(
            asyncpg_dsn(url), max_size=max_size, connect_timeout=connect_timeout,
            acquire_timeout=acquire_timeout,
        )
        self._max_inflight = max_inflight
        self.inflight = 0

    async def close(self) -> None:
        await self._connections.close()

    # CallerSnapshotSource ------------------------------------------------------------

    async def snapshot(self, number: str, now: datetime, lookback_seconds: int) -> (
        CallerSnapshot
    ):
        if self.inflight >= self._max_inflight:
            raise StoreBusy(f"{self.inflight} snapshot reads already waiting on the database")
        self.inflight += 1
        read = asyncio.ensure_future(self._read(number, now, lookback_seconds))
        read.add_done_callback(self._read_done)
        return await asyncio.shield(read)

    def _read_done(self, task: asyncio.Future[CallerSnapshot]) -> None:
        self.inflight -= 1
        if not task.cancelled():
            task.exception()  # raised to the caller if it still waits; never "never retrieved"

    async def _read(self, number: str, now: datetime, lookback_seconds: int) -> CallerSnapshot:
        conn = await self._connections.acquire()
        broken = True
        try:
            snapshot = await pg_snapshot(conn, number, now, lookback_seconds)
            broken = False
            return snapshot
        except asyncpg.PostgresError as exc:
            broken = not _statement_error(exc)
            raise
        finally:
            self._connections.release(conn, broken=broken)

    # DecisionLog ---------------------------------------------------------------------

    async def record(self, record: DecisionRecord) -> None:
        await self.record_many([record])

    async def record_many(self, records: Sequence[DecisionRecord]) -> None:
        """The decisions and the call rows they open, in one transaction."""
        if not records:
            return
        decisions = [decision_row(r) for r in records]
        call_rows = [call_values(r) for r in records]
        upsert = upsert_call_sql(tuple(call_rows[0]))
        calls = [tuple(row.values()) for row in call_rows]
        conn = await self._connections.acquire()
        broken = True
        try:
            async with conn.transaction():
                await conn.executemany(INSERT_DECISION, decisions)
                await conn.executemany(upsert, calls)
            broken = False
        except asyncpg.PostgresError as exc:
            broken = not _statement_error(exc)  # the transaction block rolled back
            raise
        finally:
            self._connections.release(conn, broken=broken)
