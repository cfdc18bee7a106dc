"""The routing-state replica on PostgreSQL: caller snapshots from memory, kept current by
``LISTEN callrouter_state``.

``PgStateReplica`` is a ``CallerSnapshotSource``. While it is **live** it answers from its
``CallerStates`` (no statement, no wait for a connection); otherwise, and for any question
it cannot answer from memory, it asks the database through ``fallback`` (the hot path's
batched snapshot read), exactly as a daemon without a replica does.

How it stays exact:

* the triggers of migration 0005 announce every change that a snapshot reads, at commit
  and in commit order, to every listening session, whichever daemon, API or tool wrote it;
* on (re)connecting it LISTENs first, then loads the rows of the kept window in one
  REPEATABLE READ transaction, holding back the notifications that arrive meanwhile;
  after the load it applies those whose transaction its snapshot did not see (each
  payload carries its transaction id): nothing committed is lost or applied twice;
* flags, opt-outs and tickets change at human speed and their text can be long: their
  notification names the caller, whose rows are read again; until that read is done the
  caller's questions go to the database;
* it is live only while its connection is: a lost connection (the database stopped or
  restarted, the network cut), a failed heartbeat or a truncate sends every question to
  the database until a fresh load is done. So a stopped database still gives the normal
  queue within the budget, as before, never a decision from state that may be stale.

What it does not change: the database stays the source of truth and the only thing
several daemons share. A decision made by one daemon reaches the others when its batch
commits (the decision log lingers up to ``fastagi.decision_linger_ms``), as it reached
their snapshot reads before.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from callrouter.domain.model import CallerFlags, Ticket
from callrouter.ids import new_id
from callrouter.service.caller_state import CallerStates, call_row, flags_of, ticket_of
from callrouter.service.ports import (
    ACTIVE_STATUSES,
    REOPEN_WINDOW,
    CallerSnapshot,
    CallerSnapshotSource,
)
from callrouter.store.pg_hot import asyncpg_dsn

log = logging.getLogger(__name__)

CHANNEL = "callrouter_state"

# Migration 0005's triggers: without them the notifications never come, and the replica
# stays off (every question goes to the database).
REQUIRED_TRIGGERS = (
    "callrouter_state_calls", "callrouter_state_calls_update",
    "callrouter_state_escalations", "callrouter_state_escalations_delete",
    "callrouter_state_escalations_update", "callrouter_state_caller_flags",
    "callrouter_state_caller_opt_outs", "callrouter_state_tickets",
    "callrouter_state_calls_truncate", "callrouter_state_decisions_truncate",
    "callrouter_state_caller_flags_truncate", "callrouter_state_caller_opt_outs_truncate",
    "callrouter_state_tickets_truncate",
)

# Rows kept beyond the longest lookback, so that pruning once a minute never takes what
# a question may still reach.
_MARGIN = timedelta(hours=1)
_LOAD_CHUNK = 5_000  # rows built between two yields to the event loop
_DRAIN_SLICE = 32  # notifications applied between two yields (~6 us each)
_COLLECT_EVERY = 128  # changes applied between two young-generation collections

_CALL_SQL = (
    "SELECT id, caller_number, queue, started_at, ended_at, operator_id, outcome, "
    "talk_seconds, resolved, escalated, operator_talk_seconds FROM calls "
    "WHERE caller_number IS NOT NULL AND started_at >= $1"
)
_ESCALATION_SQL = (
    "SELECT caller_number, id, decided_at FROM decisions "
    "WHERE escalated AND caller_number IS NOT NULL AND decided_at >= $1"
)
_STATUSES = ", ".join(f"'{s}'" for s in ACTIVE_STATUSES)
# A caller's flags, opt-outs and tickets: for every caller ($2 NULL) or for those in $2.
_FLAGS_SQL = (
    "SELECT caller_number, vip_class, abusive, abusive_flagged_by, abusive_flagged_at, "
    "notes, name FROM caller_flags WHERE ($1::text[] IS NULL OR caller_number = ANY($1))"
)
_OPT_OUTS_SQL = (
    "SELECT caller_number, operator_id FROM caller_opt_outs "
    "WHERE ($1::text[] IS NULL OR caller_number = ANY($1))"
)
_TICKETS_SQL = (
    "SELECT id, caller_number, subject, status, tier, assignee_id, external_ref, "
    "created_at, updated_at FROM tickets "
    f"WHERE (status IN ({_STATUSES}) OR (status = 'closed' AND updated_at >= $2)) "
    "AND ($1::text[] IS NULL OR caller_number = ANY($1))"
)


class ReplicaUnavailable(Exception):
    """The replica cannot go live (the triggers are missing, a truncate, a lost link)."""


@dataclass
class ReplicaStatus:
    """What the health endpoint and the metrics show."""

    state: str = "starting"  # starting | loading | live | down | off
    last_error: str | None = None
    loads: int = 0
    load_seconds: float = 0.0
    loaded_at: datetime | None = None
    notifications: int = 0
    served: int = 0  # questions answered from memory
    asked_database: int = 0  # questions passed to the database (not live, or not answerable)
    callers: int = 0
    calls: int = 0
    window_seconds: int = 0


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _visible(xid: int, snapshot: tuple[int, int, frozenset[int]]) -> bool:
    """Whether a transaction's effects are in a snapshot (``pg_visible_in_snapshot``)."""
    xmin, xmax, running = snapshot
    return xid < xmin or (xid < xmax and xid not in running)


def _parse_snapshot(text: str) -> tuple[int, int, frozenset[int]]:
    xmin, xmax, running = text.split(":")
    return int(xmin), int(xmax), frozenset(int(x) for x in running.split(",") if x)


class PgStateReplica:
    """``CallerSnapshotSource`` from memory while live, from ``fallback`` otherwise."""

    def __init__(
        self,
        url: str,
        fallback: CallerSnapshotSource,
        *,
        window: Callable[[], int],
        heartbeat: float = 1.0,
        heartbeat_timeout: float = 10.0,
        connect_timeout: float = 2.0,
        retry_max: float = 10.0,
        prune_interval: float = 60.0,
        freeze_loaded: bool = False,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._fallback = fallback
        self._window = window  # the longest lookback the rules ask for, in seconds
        self._heartbeat = heartbeat
        # A closed connection (the database stopped or restarted) is seen at once; this
        # only catches a link that went silent. Short, and a database slow under load
        # would make every replica drop and reload at once, the worst moment for it.
        self._heartbeat_timeout = heartbeat_timeout
        self._connect_timeout = connect_timeout
        self._retry_max = retry_max
        self._prune_interval = prune_interval
        # gc.freeze() after a load: the state is ~3 tracked objects per call kept; left to
        # the collector, every full collection would walk them all (docs/routing-state.md)
        self._freeze_loaded = freeze_loaded
        self._states: CallerStates | None = None
        self._live = False
        self._held: list[list[Any]] | None = None  # notifications held back during a load
        self._dirty: dict[str, int] = {}  # callers whose flags/tickets are being re-read
        self._dirty_gen = 0
        self._wake = asyncio.Event()
        self._went_live = asyncio.Event()  # set at each load done (wait_live)
        self._reset = False
        self._barriers: dict[str, asyncio.Future[None]] = {}
        self._inbox: deque[str] = deque()  # notifications received, not yet applied
        self._draining = False
        self._since_collect = 0  # changes applied since the last young collection
        self._conn: asyncpg.Connection | None = None
        self._conn_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.status = ReplicaStatus()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self._closed = True
        self._live = False
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        for barrier in self._barriers.values():
            if not barrier.done():
                barrier.cancel()

    @property
    def live(self) -> bool:
        return self._live

    async def wait_live(self, timeout: float) -> bool:
        """True once the replica is live (a load done), False after ``timeout`` s."""
        try:
            await asyncio.wait_for(self._went_live.wait(), timeout)
        except TimeoutError:
            pass
        return self._live

    async def caught_up(self, timeout: float = 5.0) -> None:
        """Return once every transaction committed before this call has been applied.

        A barrier: a notification of our own goes through the channel, and notifications
        come in commit order. For tests and tools (``callrouter route`` right after a
        write); the routing path never waits for it."""
        if not self._live or self._conn is None:
            raise ReplicaUnavailable(f"the replica is {self.status.state}")
        token = new_id()
        barrier: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._barriers[token] = barrier
        try:
            async with self._conn_lock:
                await self._conn.execute(
                    "SELECT pg_notify($1, $2)", CHANNEL, orjson.dumps(["s", "0", token]).decode()
                )
            await asyncio.wait_for(barrier, timeout)
        finally:
            self._barriers.pop(token, None)

    # -- CallerSnapshotSource -----------------------------------------------------------

    async def snapshot(self, number: str, now: datetime, lookback_seconds: int) -> (
        CallerSnapshot
    ):
        snapshot = self.snapshot_now(number, now, lookback_seconds)
        if snapshot is not None:
            return snapshot
        self.status.asked_database += 1
        return await self._fallback.snapshot(number, now, lookback_seconds)

    def snapshot_now(self, number: str, now: datetime, lookback_seconds: int) -> (
        CallerSnapshot | None
    ):
        """The snapshot from memory, or None when only the database can answer (not
        live, beyond the window, the caller being re-read). Lets routing decide without
        a task or a timer (``RoutingService.route_now``)."""
        states = self._states
        if (self._live and states is not None and number not in self._dirty
                and states.answerable(now, lookback_seconds)):
            self.status.served += 1
            return states.snapshot(number, now, lookback_seconds)
        return None

    # -- the link -----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.5
        while not self._closed:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
                await self._check_triggers(conn)
                self._reset = False
                self._inbox.clear()  # the previous link's: the load reads their effects
                self._held = []
                await conn.add_listener(CHANNEL, self._on_notify)
                conn.add_termination_listener(self._on_lost)
                self._conn = conn
                await self._load(conn)
                delay = 0.5
                await self._keep(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._down(f"{type(exc).__name__}: {exc}")
            finally:
                self._live = False
                self._went_live.clear()
                self._held = None
                self._conn = None
                if conn is not None:
                    conn.terminate()
            if self._closed:
                return
            await asyncio.sleep(delay)
            delay = min(self._retry_max, delay * 2)

    async def _check_triggers(self, conn: asyncpg.Connection) -> None:
        found = await conn.fetchval(
            "SELECT coalesce(array_agg(tgname::text), '{}') FROM pg_trigger "
            "WHERE tgname = ANY($1::text[]) AND NOT tgisinternal AND tgenabled <> 'D'",
            list(REQUIRED_TRIGGERS),
        )
        missing = sorted(set(REQUIRED_TRIGGERS) - set(found))
        if missing:
            raise ReplicaUnavailable(
                f"change-notification triggers missing ({', '.join(missing)}): run "
                "`callrouter db upgrade`; until then every caller is read from the database"
            )

    def _window_span(self) -> timedelta:
        longest = max(int(self._window()), int(REOPEN_WINDOW.total_seconds()), 86_400)
        return timedelta(seconds=longest) + _MARGIN

    async def _load(self, conn: asyncpg.Connection) -> None:
        self.status.state = "loading"
        started = time.perf_counter()
        span = self._window_span()
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snap_text, db_now = await conn.fetchrow("SELECT pg_current_snapshot()::text, now()")
            horizon = db_now - span
            states = CallerStates(horizon)
            cursor = await conn.cursor(_CALL_SQL, horizon)
            while rows := await cursor.fetch(_LOAD_CHUNK):
                for row in rows:
                    states.put_call_row(*call_row(row))
                await asyncio.sleep(0)
            for number, decision_id, at in await conn.fetch(_ESCALATION_SQL, horizon):
                states.put_escalation(number, decision_id, at)
            await self._read_callers(conn, states, None, horizon)
        snapshot = _parse_snapshot(snap_text)
        held, self._held = self._held or [], None
        self._states = states
        for msg in held:
            if msg[0] in ("s", "r", "k") or not _visible(int(msg[1]), snapshot):
                self._apply(msg)
        if self._reset:
            raise ReplicaUnavailable("a table was truncated during the load")
        if self._freeze_loaded:
            gc.freeze()  # still freed by reference counting when replaced; it has no cycles
        self._live = True
        self._went_live.set()
        s = self.status
        s.state, s.last_error, s.loads = "live", None, s.loads + 1
        s.load_seconds = time.perf_counter() - started
        s.loaded_at = datetime.now(UTC)
        s.window_seconds = int(span.total_seconds())
        self._sizes()
        log.info("routing-state replica live: %d callers, %d calls since %s, loaded in %.2f s",
                 states.callers, states.calls, horizon.isoformat(timespec="seconds"),
                 s.load_seconds)

    async def _read_callers(self, conn: asyncpg.Connection, states: CallerStates,
                            numbers: list[str] | None, horizon: datetime) -> None:
        """Flags, opt-outs and tickets of ``numbers`` (None: every caller) into ``states``."""
        flags: dict[str, CallerFlags] = {}
        for r in await conn.fetch(_FLAGS_SQL, numbers):
            flags[r[0]] = flags_of(r[1:], frozenset())
        opted: dict[str, list[str]] = {}
        for number, operator in await conn.fetch(_OPT_OUTS_SQL, numbers):
            opted.setdefault(number, []).append(operator)
        tickets: dict[str, list[Ticket]] = {}
        for t in await conn.fetch(_TICKETS_SQL, numbers, horizon):
            tickets.setdefault(t[1], []).append(ticket_of(t))
        for number in set(numbers or ()) | flags.keys() | opted.keys() | tickets.keys():
            states.set_caller(number, flags=flags.get(number), opted_out=opted.get(number, ()),
                              tickets=tickets.get(number, ()))

    async def _keep(self, conn: asyncpg.Connection) -> None:
        """While live: re-read callers whose flags or tickets changed, prune, heartbeat."""
        next_prune = time.monotonic() + self._prune_interval
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), self._heartbeat)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closed:
                return
            if self._reset:
                raise ReplicaUnavailable("a table was truncated: loading again")
            if not self._live:
                raise ReplicaUnavailable("the link to the database was lost")
            states = self._states
            assert states is not None
            if self._dirty:
                seen = dict(self._dirty)
                async with self._conn_lock:
                    await self._read_callers(conn, states, list(seen), states.horizon)
                for number, gen in seen.items():
                    if self._dirty.get(number) == gen:
                        del self._dirty[number]
            async with self._conn_lock:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), self._heartbeat_timeout)
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + self._prune_interval
                span = self._window_span()
                if span.total_seconds() > self.status.window_seconds:
                    raise ReplicaUnavailable("the rules now look further back: loading again")
                async with self._conn_lock:  # a downgrade would silence the notifications
                    await self._check_triggers(conn)
                for _ in states.pruning(datetime.now(UTC) - span):
                    await asyncio.sleep(0)  # a slice at a time: calls go on meanwhile
            self._sizes()

    def _sizes(self) -> None:
        if self._states is not None:
            self.status.callers = self._states.callers
            self.status.calls = self._states.calls

    def _down(self, error: str) -> None:
        if self._closed:
            return
        was_live = self.status.state == "live"
        self.status.state = "off" if "triggers missing" in error else "down"
        self.status.last_error = error
        if was_live or self.status.loads == 0:
            log.warning("routing-state replica not live (%s): callers are read from the "
                        "database", error)

    def _on_lost(self, conn: asyncpg.Connection) -> None:
        self._live = False
        self._wake.set()

    # -- notifications ------------------------------------------------------------------

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        """asyncpg's listener: queue the payload. A decision batch's commit brings ~150
        notifications at once; applied in one go they would hold the event loop ~1 ms,
        so they are applied ``_DRAIN_SLICE`` at a time, in order, between other work."""
        self._inbox.append(payload)
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        inbox = self._inbox
        n = min(len(inbox), _DRAIN_SLICE)
        for _ in range(n):
            self._receive(inbox.popleft())
        self._since_collect += n
        if self._since_collect >= _COLLECT_EVERY:
            # Each change replaces its caller's flat tuple: one object allocated, one freed,
            # so CPython's young-generation count stays flat while the new tuples pile up
            # in it, until one collection walks them all (17,000 tuples, 11 ms, measured).
            # A young collection costs ~3 us per tuple it meets (each tuple's values are
            # read once, then it leaves the collector's lists for good), so it runs every
            # few changes to keep each pause short. Bench, 1,500 calls/s: every 640 changes,
            # pauses up to 2.4 ms; every 160, up to 1.0 ms; never, up to 11 ms.
            self._since_collect = 0
            gc.collect(0)
        if inbox:
            asyncio.get_running_loop().call_soon(self._drain)
        else:
            self._draining = False
            self._sizes()

    def _receive(self, payload: str) -> None:
        self.status.notifications += 1
        try:
            msg = orjson.loads(payload)
            if self._held is not None:
                self._held.append(msg)
            else:
                self._apply(msg)
        except Exception:
            # a payload we cannot read means the replica may miss a change: load again
            log.exception("unreadable state notification %r: loading again", payload[:200])
            self._reset = True
            self._live = False
            self._wake.set()

    def _apply(self, msg: list[Any]) -> None:
        kind = msg[0]
        states = self._states
        if kind == "s":
            barrier = self._barriers.get(msg[2])
            if barrier is not None and not barrier.done():
                barrier.set_result(None)
            return
        if kind == "r":
            self._reset = True
            self._live = False
            self._wake.set()
            return
        if states is None:
            return
        if kind == "c":
            started, ended = _when(msg[5]), _when(msg[6])
            states.put_call_row(*call_row((msg[2], msg[3], msg[4], started, ended,
                                           *msg[7:13])))
        elif kind == "c-":
            states.drop_call(msg[2])
        elif kind == "e":
            states.put_escalation(msg[3], msg[2], _when(msg[4]))  # type: ignore[arg-type]
        elif kind == "e-":
            states.drop_escalation(msg[3], msg[2])
        elif kind == "k":
            self._dirty_gen += 1
            self._dirty[msg[2]] = self._dirty_gen
            self._wake.set()
        else:
            raise ValueError(f"unknown state notification kind {kind!r}")
