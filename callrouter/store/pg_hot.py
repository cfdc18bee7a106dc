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

* the pool is lazy (``min_size=0``): the daemon starts, and routes to the normal queue,
  with the database down;
* connecting and acquiring have their own timeouts, so nothing waits for the OS's;
* a read the caller stopped waiting for (time budget) is finished, not cancelled — a
  query cancelled mid-flight costs asyncpg its connection and, under load, a reconnect
  storm — and its answer is discarded;
* at most ``max_inflight`` reads are in flight; past that a read fails at once
  (``StoreBusy``) instead of queueing behind a database that stopped answering.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from callrouter.domain.model import Action, Outcome
from callrouter.service.ports import CallerSnapshot, DecisionRecord
from callrouter.store.calls import new_call_id
from callrouter.store.errors import StoreError
from callrouter.store.pg_snapshot import pg_snapshot

# Query parameters SQLAlchemy's asyncpg dialect understands but asyncpg's DSN parser would
# pass to the server as settings.
_SQLALCHEMY_ONLY = (
    "prepared_statement_cache_size", "prepared_statement_name_func", "async_fallback",
)

INSERT_DECISION = """
INSERT INTO decisions (id, decided_at, caller_raw, caller_number, queue, action,
    target_operator_id, target_interface, target_queue, priority, wait_seconds,
    announcement, escalated, reason_code, reason_codes, reasons, inputs, latency_ms,
    server_id, uniqueid, linkedid, channel)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::json, $16::json,
    $17::json, $18, $19, $20, $21, $22)
"""

# The call row a decision opens; merged into a row the AMI listener wrote first exactly as
# DecisionRepository.open_calls merges it.
UPSERT_CALL = """
INSERT INTO calls (id, caller_raw, caller_number, queue, server_id, uniqueid, linkedid,
    channel, decision_id, action, target_operator_id, started_at, outcome, escalated,
    hold_seconds, talk_seconds, transferred)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, 0, false)
ON CONFLICT (server_id, uniqueid) DO UPDATE SET
    decision_id = excluded.decision_id, action = excluded.action,
    target_operator_id = excluded.target_operator_id, escalated = excluded.escalated,
    caller_raw = excluded.caller_raw, caller_number = excluded.caller_number,
    queue = excluded.queue,
    linkedid = coalesce(calls.linkedid, excluded.linkedid),
    channel = coalesce(calls.channel, excluded.channel)
"""


class StoreBusy(StoreError):
    """Too many snapshot reads already wait on the database: fail this one at once."""


def asyncpg_dsn(url: str) -> str:
    """``postgresql+asyncpg://u:p@h/db?x=y`` -> the plain DSN asyncpg takes."""
    parsed = make_url(url)
    query = {k: v for k, v in parsed.query.items() if k not in _SQLALCHEMY_ONLY}
    return parsed.set(drivername="postgresql", query=query).render_as_string(
        hide_password=False
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def decision_row(r: DecisionRecord) -> tuple[Any, ...]:
    d = r.decision
    codes = [str(x.code) for x in d.reasons]
    return (
        r.id, r.decided_at, r.caller_raw, r.caller_number, r.queue, Action(d.action).value,
        d.target_operator_id, d.target_interface, d.queue, d.priority, d.wait_seconds,
        d.announcement, d.escalated, codes[0] if codes else "", _dumps(codes),
        _dumps([{"code": str(x.code), "text": x.text} for x in d.reasons]),
        _dumps(dict(r.inputs)), r.latency_ms, r.server_id, r.uniqueid, r.linkedid, r.channel,
    )


def call_row(r: DecisionRecord) -> tuple[Any, ...]:
    d = r.decision
    return (
        new_call_id(), r.caller_raw, r.caller_number, r.queue, r.server_id, r.uniqueid,
        r.linkedid, r.channel, r.id, Action(d.action).value, d.target_operator_id,
        r.decided_at, Outcome.IN_PROGRESS.value, d.escalated,
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing. asyncpg's default sends ``RESET ALL; UNLISTEN
    *; ...`` — a round trip per call — to undo session state this module never sets (no
    SET, LISTEN, cursors or advisory locks). A transaction left open is still rolled back
    by the pool before this runs."""


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
        self._dsn = asyncpg_dsn(url)
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._acquire_timeout = acquire_timeout
        self._max_inflight = max_inflight
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Task[asyncpg.Pool] | None = None
        self.inflight = 0

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            # min_size=0: creating the pool opens no connection, so it cannot fail on a
            # database that is down; connections open (and reopen) as calls need them.
            self._opening = asyncio.ensure_future(asyncpg.create_pool(
                self._dsn, min_size=0, max_size=self._max_size,
                timeout=self._connect_timeout, max_inactive_connection_lifetime=300.0,
                reset=_keep_session,
            ))
        pool = await asyncio.shield(self._opening)
        self._pool = pool
        return pool

    async def close(self) -> None:
        if self._opening is not None and self._pool is None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 5.0)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None
        self._opening = None

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
        pool = await self._get_pool()
        async with pool.acquire(timeout=self._acquire_timeout) as conn:
            return await pg_snapshot(conn, number, now, lookback_seconds)

    # DecisionLog ---------------------------------------------------------------------

    async def record(self, record: DecisionRecord) -> None:
        await self.record_many([record])

    async def record_many(self, records: Sequence[DecisionRecord]) -> None:
        """The decisions and the call rows they open, in one transaction."""
        if not records:
            return
        pool = await self._get_pool()
        async with pool.acquire(timeout=self._acquire_timeout) as conn:
            async with conn.transaction():
                await conn.executemany(INSERT_DECISION, [decision_row(r) for r in records])
                await conn.executemany(UPSERT_CALL, [call_row(r) for r in records])
