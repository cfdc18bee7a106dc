"""PgStateReplica: caller snapshots from memory, kept current by LISTEN/NOTIFY, give exactly
what ``pg_snapshot`` reads from the database, and every question it cannot answer goes to
the fallback.

Every test commits (notifications only fire at commit), so each has a database of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.pool import NullPool

from callrouter.service.caller_state import utc_day_start
from callrouter.service.ports import CallRecord
from callrouter.store import Store, make_engine, make_sessionmaker, upgrade
from callrouter.store.migrate import MIGRATIONS, downgrade
from callrouter.store.pg_hot import PgHotPath, asyncpg_dsn
from callrouter.store.pg_replica import CHANNEL, REQUIRED_TRIGGERS, PgStateReplica
from callrouter.store.pg_snapshot import pg_snapshot
from tests.pg import private_database

from .builders import decision, decision_record

pytestmark = pytest.mark.postgres

WINDOW = 6 * 3600  # the rules' longest lookback: the replica keeps 25 h (REOPEN_WINDOW + 1 h)
OPERATORS = [f"op{i}" for i in range(6)]
OUTCOMES = ["in_progress", "answered", "abandoned", "no_answer", "failed"]


@pytest.fixture
def db(pg_database_url: str) -> Iterator[str]:
    """A migrated database of this test's own (depends on ``pg_database_url`` so that an
    unreachable server skips or fails as the other PostgreSQL tests do)."""
    with private_database(pg_database_url, "rep") as url:
        yield url


@pytest.fixture
def bare_db(pg_database_url: str) -> Iterator[str]:
    with private_database(pg_database_url, "rep0", migrate=False) as url:
        yield url


async def connect(url: str, timezone: str | None = None) -> asyncpg.Connection:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    if timezone is not None:
        await conn.execute(f"SET TimeZone = '{timezone}'")
    return conn


@contextlib.asynccontextmanager
async def running_replica(url: str, *, window: Callable[[], int] = lambda: WINDOW,
                          live: bool = True, **kw: Any) -> AsyncIterator[PgStateReplica]:
    hot = PgHotPath(url, max_size=2)
    options: dict[str, Any] = {"heartbeat": 0.2, "retry_max": 0.5, "connect_timeout": 2.0}
    options.update(kw)
    replica = PgStateReplica(url, hot, window=window, **options)
    try:
        replica.start()
        if live:
            assert await replica.wait_live(10), replica.status
        yield replica
    finally:
        await replica.close()
        await hot.close()


async def eventually(check: Callable[[], bool], timeout: float = 8.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)


async def settle(replica: PgStateReplica) -> None:
    """Every committed change applied, and the callers to read again read."""
    await replica.caught_up()
    await eventually(lambda: not replica._dirty, what="dirty callers re-read")
    await replica.caught_up()


async def live_again(replica: PgStateReplica, loads: int) -> None:
    await eventually(lambda: replica.status.loads >= loads and replica.live,
                     what=f"load #{loads}")


async def compare(replica: PgStateReplica, conn: asyncpg.Connection, numbers: list[str],
                  questions: list[tuple[datetime, int]], *, from_memory: bool = True) -> int:
    """Replica answers == pg_snapshot for every caller and question; returns how many
    answers were not empty (so a test can tell it compared something)."""
    nonempty = 0
    for now, lookback in questions:
        if from_memory:
            assert replica._states is not None and replica._states.answerable(now, lookback)
        for number in numbers:
            served, asked = replica.status.served, replica.status.asked_database
            got = await replica.snapshot(number, now, lookback)
            want = await pg_snapshot(conn, number, now, lookback)
            assert got == want, (number, now, lookback)
            if from_memory:
                assert (replica.status.served, replica.status.asked_database) == (
                    served + 1, asked), "answered by the database, not from memory"
            nonempty += bool(want.recent_calls or want.open_ticket or want.escalations_today
                             or want.flags.vip_class or want.flags.opted_out_operators)
    return nonempty


# -- writers (plain SQL) ------------------------------------------------------------------


async def add_operators(conn: asyncpg.Connection, ids: list[str]) -> None:
    now = datetime.now(UTC)
    await conn.executemany(
        "INSERT INTO operators (id, name, tier, queues, active, created_at, updated_at) "
        "VALUES ($1, $1, 'first_line', '[]', true, $2, $2)", [(i, now) for i in ids])


CALL_INSERT = (
    "INSERT INTO calls (id, caller_raw, caller_number, queue, server_id, started_at, ended_at, "
    "operator_id, hold_seconds, talk_seconds, outcome, transferred, escalated, resolved, "
    "operator_talk_seconds) VALUES ($1, '', $2, $3, 'default', $4, $5, $6, 0, $7, $8, false, "
    "$9, $10, $11)"
)


async def add_call(conn: asyncpg.Connection, number: str | None, started: datetime, *,
                   id_: str | None = None, queue: str | None = "support",
                   ended: datetime | None = None, operator: str | None = None, talk: int = 0,
                   outcome: str = "answered", escalated: bool = False,
                   resolved: bool | None = None, own_talk: int | None = None) -> str:
    id_ = id_ or uuid.uuid4().hex
    await conn.execute(CALL_INSERT, id_, number, queue, started, ended, operator, talk, outcome,
                       escalated, resolved, own_talk)
    return id_


DECISION_INSERT = (
    "INSERT INTO decisions (id, decided_at, caller_raw, caller_number, queue, action, "
    "target_queue, priority, wait_seconds, escalated, reason_code, reason_codes, reasons, "
    "inputs, latency_ms, server_id) VALUES ($1, $2, '', $3, 'support', 'queue', 'support', 0, "
    "0, $4, 'new_caller', '[]', '[]', '{}', 1.0, 'default')"
)


async def add_decision(conn: asyncpg.Connection, number: str | None, at: datetime,
                       escalated: bool, id_: str | None = None) -> str:
    id_ = id_ or uuid.uuid4().hex
    await conn.execute(DECISION_INSERT, id_, at, number, escalated)
    return id_


async def set_flags(conn: asyncpg.Connection, number: str, *, vip: str | None = None,
                    abusive: bool = False, by: str | None = None,
                    at: datetime | None = None, notes: str = "", name: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO caller_flags (caller_number, name, vip_class, abusive, abusive_flagged_by,"
        " abusive_flagged_at, notes, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now()) "
        "ON CONFLICT (caller_number) DO UPDATE SET name = excluded.name, "
        "vip_class = excluded.vip_class, abusive = excluded.abusive, "
        "abusive_flagged_by = excluded.abusive_flagged_by, "
        "abusive_flagged_at = excluded.abusive_flagged_at, notes = excluded.notes",
        number, name, vip, abusive, by, at, notes)


async def add_opt_out(conn: asyncpg.Connection, number: str, operator: str) -> None:
    await conn.execute(
        "INSERT INTO caller_opt_outs (caller_number, operator_id, created_at) "
        "VALUES ($1, $2, now()) ON CONFLICT DO NOTHING", number, operator)


async def add_ticket(conn: asyncpg.Connection, number: str, status: str, created: datetime,
                     updated: datetime, *, id_: str | None = None) -> str:
    id_ = id_ or uuid.uuid4().hex
    await conn.execute(
        "INSERT INTO tickets (id, caller_number, subject, status, tier, assignee_id, "
        "external_ref, created_at, updated_at) VALUES ($1, $2, $3, $4, 'first_line', $5, $6, "
        "$7, $8)", id_, number, f"subject {id_[:6]}", status,
        None if status == "open" else "op1", None, created, updated)
    return id_


# -- random histories -------------------------------------------------------------------


class History:
    """A few hundred random rows over ~40 callers, around ``t0``."""

    def __init__(self, seed: int, t0: datetime, n_callers: int = 40) -> None:
        self.rnd = random.Random(seed)
        self.t0 = t0
        self.numbers = [f"+7916{seed % 1000:03d}{i:04d}" for i in range(n_callers)]
        # shared instants: ties on started_at, created_at and decided_at
        self.ties = [t0 - timedelta(seconds=self.rnd.randrange(0, 26 * 3600)) for _ in range(8)]
        self.calls: list[str] = []
        self.decisions: list[str] = []
        self.tickets: list[str] = []

    def number(self) -> str:
        return self.rnd.choice(self.numbers)

    def when(self, back_hours: float = 30, ahead_hours: float = 1) -> datetime:
        r = self.rnd.random()
        if r < 0.15:
            return self.rnd.choice(self.ties)
        span = int((back_hours + ahead_hours) * 3600 * 1000)
        return self.t0 + timedelta(hours=ahead_hours) - timedelta(
            milliseconds=self.rnd.randrange(span), microseconds=self.rnd.randrange(1000))

    async def add_calls(self, conn: asyncpg.Connection, n: int) -> None:
        rnd = self.rnd
        for _ in range(n):
            started = self.when()
            outcome = rnd.choice(OUTCOMES)
            ended = None if outcome == "in_progress" else started + timedelta(
                seconds=rnd.randrange(1, 900))
            id_ = await add_call(
                conn, None if rnd.random() < 0.05 else self.number(), started,
                queue=rnd.choice([None, "support", "sales"]), ended=ended,
                operator=rnd.choice([None, *OPERATORS]), talk=rnd.randrange(0, 600),
                outcome=outcome, escalated=rnd.random() < 0.2,
                resolved=rnd.choice([None, True, False]),
                own_talk=rnd.choice([None, rnd.randrange(0, 300)]))
            self.calls.append(id_)

    async def add_decisions(self, conn: asyncpg.Connection, n: int) -> None:
        rnd = self.rnd
        day = utc_day_start(self.t0)
        for _ in range(n):
            r = rnd.random()
            if r < 0.1:
                at = day
            elif r < 0.2:
                at = day - timedelta(microseconds=1)
            else:
                at = self.when(back_hours=30, ahead_hours=2)
            self.decisions.append(await add_decision(
                conn, None if rnd.random() < 0.05 else self.number(), at, rnd.random() < 0.6))

    async def add_callers(self, conn: asyncpg.Connection) -> None:
        rnd = self.rnd
        for number in rnd.sample(self.numbers, 15):
            await set_flags(conn, number, vip=rnd.choice([None, "gold", "silver"]),
                            abusive=rnd.random() < 0.3, by=rnd.choice([None, "op1"]),
                            at=rnd.choice([None, self.when()]),
                            notes=rnd.choice(["", "long " * 50, "n"]),
                            name=rnd.choice([None, "Ann"]))
        for _ in range(25):
            await add_opt_out(conn, self.number(), rnd.choice(OPERATORS))
        for _ in range(70):
            await self.add_ticket(conn)

    async def add_ticket(self, conn: asyncpg.Connection, number: str | None = None) -> None:
        rnd = self.rnd
        status = rnd.choice(["open", "pending", "closed", "closed"])
        created = (rnd.choice(self.ties) if rnd.random() < 0.2
                   else self.t0 - timedelta(seconds=rnd.randrange(0, 10 * 86400)))
        updated = max(created, self.t0 - timedelta(seconds=rnd.randrange(0, 50 * 3600)))
        self.tickets.append(await add_ticket(conn, number or self.number(), status, created,
                                             updated))

    async def change(self, conn: asyncpg.Connection, n: int) -> None:
        """Random updates, deletes and inserts of every kind, in small transactions."""
        rnd = self.rnd
        now = datetime.now(UTC)
        for _ in range(n):
            async with conn.transaction():
                for _ in range(rnd.randrange(1, 4)):
                    await self._one_change(conn, now)

    async def _one_change(self, conn: asyncpg.Connection, now: datetime) -> None:
        rnd = self.rnd
        r = rnd.random()
        call = rnd.choice(self.calls) if self.calls else None
        dec = rnd.choice(self.decisions) if self.decisions else None
        if r < 0.08:
            await self.add_calls(conn, 1)
        elif r < 0.18 and call:  # the call ends
            await conn.execute(
                "UPDATE calls SET outcome = 'answered', ended_at = started_at + interval '2 min',"
                " operator_id = $2, talk_seconds = talk_seconds + 7 WHERE id = $1",
                call, rnd.choice(OPERATORS))
        elif r < 0.24 and call:  # moved to another caller (or to no caller)
            await conn.execute("UPDATE calls SET caller_number = $2 WHERE id = $1", call,
                               None if rnd.random() < 0.2 else self.number())
        elif r < 0.30 and call:  # moved in time: out of or into the kept window
            await conn.execute("UPDATE calls SET started_at = $2 WHERE id = $1", call,
                               rnd.choice([now - timedelta(hours=40), self.when()]))
        elif r < 0.34 and call:
            await conn.execute("DELETE FROM calls WHERE id = $1", call)
        elif r < 0.37 and call:  # not read by routing: announces nothing
            await conn.execute("UPDATE calls SET note = 'x', sticky_hit = true WHERE id = $1",
                               call)
        elif r < 0.45:
            await self.add_decisions(conn, 1)
        elif r < 0.52 and dec:
            await conn.execute("UPDATE decisions SET escalated = NOT escalated WHERE id = $1", dec)
        elif r < 0.56 and dec:
            await conn.execute("UPDATE decisions SET decided_at = $2 WHERE id = $1", dec,
                               self.when(ahead_hours=2))
        elif r < 0.59 and dec:
            await conn.execute("UPDATE decisions SET caller_number = $2 WHERE id = $1", dec,
                               self.number())
        elif r < 0.62 and dec:
            await conn.execute("DELETE FROM decisions WHERE id = $1", dec)
        elif r < 0.68:
            await set_flags(conn, self.number(), vip=rnd.choice([None, "gold"]),
                            abusive=rnd.random() < 0.5, notes=rnd.choice(["", "changed"]),
                            name=rnd.choice([None, "Bob"]))
        elif r < 0.71:
            await conn.execute("DELETE FROM caller_flags WHERE caller_number = $1", self.number())
        elif r < 0.76:
            await add_opt_out(conn, self.number(), rnd.choice(OPERATORS))
        elif r < 0.79:
            await conn.execute("DELETE FROM caller_opt_outs WHERE caller_number = $1",
                               self.number())
        elif r < 0.84 and self.tickets:  # closed now / reopened
            await conn.execute(
                "UPDATE tickets SET status = $2, updated_at = now() WHERE id = $1",
                rnd.choice(self.tickets), rnd.choice(["open", "pending", "closed"]))
        elif r < 0.87 and self.tickets:
            await conn.execute("UPDATE tickets SET caller_number = $2 WHERE id = $1",
                               rnd.choice(self.tickets), self.number())
        elif r < 0.90 and self.tickets:
            await conn.execute("DELETE FROM tickets WHERE id = $1", rnd.choice(self.tickets))
        else:
            await self.add_ticket(conn)

    async def fill(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await self.add_calls(conn, 300)
            await self.add_decisions(conn, 150)
            await self.add_callers(conn)

    def questions(self) -> list[tuple[datetime, int]]:
        t0 = self.t0
        return [(t0, 600), (t0, 3600), (t0, WINDOW), (t0, 24 * 3600),
                (t0 - timedelta(minutes=30), 3600), (t0 + timedelta(hours=2), 24 * 3600)]


def now_utc() -> datetime:
    return datetime.now(UTC)


# -- a. equivalence on random histories -------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
async def test_equals_pg_snapshot_on_random_histories(db: str, seed: int) -> None:
    conn = await connect(db)
    # a writer whose session is not in UTC: the payloads' timestamps carry its offset
    writer = await connect(db, timezone="America/St_Johns")
    try:
        await add_operators(conn, OPERATORS)
        h = History(seed, now_utc())
        await h.fill(conn)
        async with running_replica(db) as replica:
            assert replica.status.state == "live"
            assert replica.status.loads == 1
            assert replica.status.calls > 100
            assert await compare(replica, conn, h.numbers, h.questions()) > 100

            await h.change(writer, 60)
            # the hot path's decisions open call rows too
            hot = PgHotPath(db, max_size=1)
            try:
                await hot.record_many([
                    decision_record(at=h.when(back_hours=2, ahead_hours=0), number=h.number(),
                                    uniqueid=f"u{i}", dec=decision(escalated=i % 2 == 0))
                    for i in range(6)])
            finally:
                await hot.close()
            await replica.caught_up()
            # right after the barrier: correct, from memory or (callers being re-read)
            # from the database
            await compare(replica, conn, h.numbers, h.questions(), from_memory=False)
            await settle(replica)
            assert await compare(replica, conn, h.numbers, h.questions()) > 100
            assert replica.status.loads == 1  # all of it from notifications
            assert replica.status.notifications > 60
    finally:
        await writer.close()
        await conn.close()


async def test_store_writes_reach_the_replica(db: str) -> None:
    """The Store's own writers (AMI call records, flags, opt-outs, tickets) notify too."""
    from callrouter.domain.model import Operator, TicketStatus, Tier

    engine = make_engine(db, poolclass=NullPool)
    store = Store(make_sessionmaker(engine))
    conn = await connect(db)
    number = "+79161234567"
    try:
        async with running_replica(db) as replica:
            t0 = now_utc()
            await store.write_call_records([CallRecord(
                uniqueid="u1", caller_raw=number, caller_number=number, queue="support",
                started_at=t0 - timedelta(minutes=3), answered_at=t0 - timedelta(minutes=2),
                ended_at=t0 - timedelta(minutes=1), operator_id="alice", talk_seconds=60,
                outcome="answered")])
            async with store.transaction() as tx:
                await tx.operators.add(Operator(id="alice", name="Alice",
                                                interfaces=("PJSIP/alice",),
                                                tier=Tier.FIRST_LINE))
            async with store.transaction() as tx:
                await tx.flags.set_vip_class(number, "gold")
                await tx.flags.add_opt_out(number, "alice")
                ticket = await tx.tickets.create(number, "broken", now=t0 - timedelta(days=2))
            async with store.transaction() as tx:
                await tx.tickets.update(ticket.id, status=TicketStatus.CLOSED,
                                        now=t0 - timedelta(hours=1))
            await settle(replica)
            snap = await replica.snapshot(number, t0, 3600)
            assert snap == await pg_snapshot(conn, number, t0, 3600)
            assert [c.operator_id for c in snap.recent_calls] == ["alice"]
            assert snap.flags.vip_class == "gold"
            assert snap.flags.opted_out_operators == frozenset({"alice"})
            assert snap.open_ticket is not None and snap.open_ticket.id == ticket.id
            assert replica.status.served == 1
    finally:
        await conn.close()
        await engine.dispose()


# -- b. changes during the load ---------------------------------------------------------


async def test_changes_during_the_load_are_neither_lost_nor_doubled(
        db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = await connect(db)
    writer = await connect(db)
    try:
        await add_operators(conn, OPERATORS)
        h = History(3, now_utc())
        await h.fill(conn)
        xids: dict[str, int] = {}

        async def commit(tag: str) -> None:
            async with writer.transaction():
                xids[tag] = int(await writer.fetchval("SELECT pg_current_xact_id()::text"))
                for _ in range(12):
                    await h._one_change(writer, now_utc())

        applied: list[list[Any]] = []
        received: list[list[Any]] = []

        def spy(replica: PgStateReplica) -> None:
            load, read_callers, apply = replica._load, replica._read_callers, replica._apply

            async def slow_load(c: asyncpg.Connection) -> None:
                if replica.status.loads == 0:
                    # after LISTEN, before the load's snapshot: seen by the load, and its
                    # notifications come too: they must not be applied again
                    await commit("before")
                    await replica_wait_notifications(replica, 1)
                await load(c)

            async def slow_read_callers(c: Any, states: Any, numbers: Any, horizon: Any) -> None:
                if numbers is None and "during" not in xids:
                    # the load's snapshot is taken (calls and escalations read): not seen
                    await commit("during")
                    await asyncio.sleep(0.2)  # their notifications arrive meanwhile
                await read_callers(c, states, numbers, horizon)

            def spy_apply(msg: list[Any]) -> None:
                applied.append(msg)
                apply(msg)

            on_notify = replica._on_notify

            def spy_notify(c: Any, pid: int, channel: str, payload: str) -> None:
                received.append(json.loads(payload))
                on_notify(c, pid, channel, payload)

            monkeypatch.setattr(replica, "_load", slow_load)
            monkeypatch.setattr(replica, "_read_callers", slow_read_callers)
            monkeypatch.setattr(replica, "_apply", spy_apply)
            monkeypatch.setattr(replica, "_on_notify", spy_notify)

        hot = PgHotPath(db, max_size=2)
        replica = PgStateReplica(db, hot, window=lambda: WINDOW, heartbeat=0.2, retry_max=0.5)
        spy(replica)
        try:
            replica.start()
            assert await replica.wait_live(10), replica.status
            assert replica.status.loads == 1
            assert "before" in xids and "during" in xids
            kinds = ("c", "c-", "e", "e-")
            before = [m for m in applied if m[0] in kinds and int(m[1]) == xids["before"]]
            during = [m for m in applied if m[0] in kinds and int(m[1]) == xids["during"]]
            assert [m for m in received if m[0] in kinds and int(m[1]) == xids["before"]]
            assert before == []  # seen by the load: not applied again
            assert during  # not seen by the load: applied from the held notifications
            await settle(replica)
            assert await compare(replica, conn, h.numbers, h.questions()) > 50
        finally:
            await replica.close()
            await hot.close()
    finally:
        await writer.close()
        await conn.close()


async def replica_wait_notifications(replica: PgStateReplica, n: int) -> None:
    await eventually(lambda: replica.status.notifications >= n, what="notifications")


# -- c. the link lost -----------------------------------------------------------------


async def test_lost_link_falls_back_and_comes_back_live_with_the_changes(db: str) -> None:
    conn = await connect(db)
    number = "+79160000001"
    try:
        t0 = now_utc()
        await add_call(conn, number, t0 - timedelta(minutes=10), id_="first")
        async with running_replica(db) as replica:
            assert replica._conn is not None
            pid = replica._conn.get_server_pid()
            assert await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid) == 1
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            started = time.monotonic()
            await eventually(lambda: not replica.live, timeout=2, what="not live")
            assert time.monotonic() - started < 1.5
            # committed while it is down
            await add_call(conn, number, t0 - timedelta(minutes=5), id_="second")
            asked = replica.status.asked_database
            snap = await replica.snapshot(number, t0, 3600)
            if not replica.live:  # (it may already be back after 0.5 s)
                assert replica.status.asked_database == asked + 1
                assert replica.status.state in ("down", "loading")
            assert [c.id for c in snap.recent_calls] == ["second", "first"]
            await live_again(replica, 2)
            assert replica.status.state == "live"
            assert replica._conn is not None and replica._conn.get_server_pid() != pid
            served = replica.status.served
            snap = await replica.snapshot(number, t0, 3600)
            assert replica.status.served == served + 1
            assert [c.id for c in snap.recent_calls] == ["second", "first"]
            assert snap == await pg_snapshot(conn, number, t0, 3600)
            # and notifications flow again
            await add_call(conn, number, t0 - timedelta(minutes=1), id_="third")
            await replica.caught_up()
            snap = await replica.snapshot(number, t0, 3600)
            assert [c.id for c in snap.recent_calls] == ["third", "second", "first"]
    finally:
        await conn.close()


async def test_every_question_goes_to_the_database_while_down(db: str,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """Kept down (reconnects refused) for a while: all questions go to the fallback."""
    conn = await connect(db)
    number = "+79160000002"
    try:
        t0 = now_utc()
        await add_call(conn, number, t0 - timedelta(minutes=10), id_="a")
        async with running_replica(db) as replica:
            refuse = asyncio.Event()
            check = replica._check_triggers

            async def reconnect_refused(c: asyncpg.Connection) -> None:
                if not refuse.is_set():
                    raise OSError("reconnect refused by the test")
                await check(c)

            monkeypatch.setattr(replica, "_check_triggers", reconnect_refused)
            assert replica._conn is not None
            await conn.fetchval("SELECT pg_terminate_backend($1)", replica._conn.get_server_pid())
            await eventually(lambda: replica.status.state == "down", timeout=2, what="down")
            await add_call(conn, number, t0 - timedelta(minutes=2), id_="b")
            served, asked = replica.status.served, replica.status.asked_database
            for _ in range(3):
                snap = await replica.snapshot(number, t0, 3600)
                assert [c.id for c in snap.recent_calls] == ["b", "a"]
            assert replica.status.served == served
            assert replica.status.asked_database == asked + 3
            assert not await replica.wait_live(0.3)
            refuse.set()
            await live_again(replica, 2)
            snap = await replica.snapshot(number, t0, 3600)
            assert [c.id for c in snap.recent_calls] == ["b", "a"]
            assert replica.status.served == served + 1
    finally:
        await conn.close()


# -- d. truncate --------------------------------------------------------------------------


async def test_truncate_reloads(db: str) -> None:
    conn = await connect(db)
    try:
        await add_operators(conn, OPERATORS)
        h = History(4, now_utc())
        await h.fill(conn)
        async with running_replica(db) as replica:
            assert replica.status.calls > 0
            await conn.execute("TRUNCATE calls CASCADE")
            await add_call(conn, h.numbers[0], h.t0 - timedelta(minutes=1), id_="after")
            await live_again(replica, 2)
            await settle(replica)
            assert replica.status.calls == 1
            snap = await replica.snapshot(h.numbers[0], h.t0, 3600)
            assert [c.id for c in snap.recent_calls] == ["after"]
            assert await compare(replica, conn, h.numbers, h.questions()) > 0
            loads = replica.status.loads
            await conn.execute("TRUNCATE decisions")
            await live_again(replica, loads + 1)
            await settle(replica)
            counts = [(await replica.snapshot(n, h.t0, 3600)).escalations_today
                      for n in h.numbers]
            assert counts == [0] * len(h.numbers)
            await compare(replica, conn, h.numbers, h.questions())
    finally:
        await conn.close()


# -- e. missing triggers, migration down and up --------------------------------------------


async def _triggers(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal")
    return {r[0] for r in rows}


async def test_without_the_triggers_the_replica_is_off(bare_db: str) -> None:
    await upgrade(bare_db, "0004")
    conn = await connect(bare_db)
    number = "+79160000003"
    try:
        t0 = now_utc()
        await add_call(conn, number, t0 - timedelta(minutes=3), id_="x")
        assert await _triggers(conn) & set(REQUIRED_TRIGGERS) == set()
        async with running_replica(bare_db, live=False) as replica:
            await eventually(lambda: replica.status.state == "off", timeout=5, what="off")
            assert not replica.live
            assert "triggers missing" in (replica.status.last_error or "")
            assert not await replica.wait_live(0.2)
            snap = await replica.snapshot(number, t0, 3600)
            assert [c.id for c in snap.recent_calls] == ["x"]
            assert replica.status.asked_database == 1 and replica.status.served == 0
            # `callrouter db upgrade`: it goes live by itself
            await upgrade(bare_db)
            await live_again(replica, 1)
            snap = await replica.snapshot(number, t0, 3600)
            assert [c.id for c in snap.recent_calls] == ["x"]
            assert replica.status.served == 1
    finally:
        await conn.close()


async def test_0005_goes_down_and_up_again(db: str) -> None:
    conn = await connect(db)
    try:
        assert set(REQUIRED_TRIGGERS) <= await _triggers(conn)
        await downgrade(db, "0004")
        assert await _triggers(conn) & set(REQUIRED_TRIGGERS) == set()
        functions = await conn.fetch(
            "SELECT proname::text FROM pg_proc WHERE proname LIKE 'callrouter_state%'")
        assert functions == []
        await upgrade(db)
        assert set(REQUIRED_TRIGGERS) <= await _triggers(conn)
        # and they notify
        await conn.add_listener(CHANNEL, lambda *a: got.append(a[3]))
        got: list[str] = []
        await add_call(conn, "+79160000004", now_utc(), id_="n1")
        await eventually(lambda: bool(got), timeout=3, what="a notification")
        msg = json.loads(got[0])
        assert msg[0] == "c" and msg[2] == "n1" and msg[3] == "+79160000004"
    finally:
        await conn.close()


# -- f. questions it cannot answer ------------------------------------------------------


async def test_questions_beyond_the_window_go_to_the_database(db: str) -> None:
    conn = await connect(db)
    number = "+79160000005"
    try:
        t0 = now_utc()
        await add_call(conn, number, t0 - timedelta(hours=27), id_="old27")
        await add_call(conn, number, t0 - timedelta(hours=1), id_="recent")
        await add_call(conn, number, t0 - timedelta(days=3, minutes=10), id_="days3")
        await add_decision(conn, number, t0 - timedelta(days=3), True)
        async with running_replica(db) as replica:
            assert replica.status.calls == 1  # 27 h and 3 days are beyond what it keeps
            served, asked = replica.status.served, replica.status.asked_database
            # a lookback longer than its window
            snap = await replica.snapshot(number, t0, 28 * 3600)
            assert [c.id for c in snap.recent_calls] == ["recent", "old27"]
            # now far in the past
            past = t0 - timedelta(days=3)
            snap = await replica.snapshot(number, past, 3600)
            assert [c.id for c in snap.recent_calls] == ["days3"]
            assert snap.escalations_today == 1
            assert snap == await pg_snapshot(conn, number, past, 3600)
            assert replica.status.served == served
            assert replica.status.asked_database == asked + 2
            # and an answerable one is served from memory
            snap = await replica.snapshot(number, t0, 3600)
            assert [c.id for c in snap.recent_calls] == ["recent"]
            assert replica.status.served == served + 1
    finally:
        await conn.close()


async def test_a_longer_window_reloads_at_the_next_prune(db: str) -> None:
    conn = await connect(db)
    number = "+79160000006"
    window = [WINDOW]
    try:
        t0 = now_utc()
        await add_call(conn, number, t0 - timedelta(hours=27), id_="old27")
        async with running_replica(db, window=lambda: window[0], prune_interval=0.2) as replica:
            assert replica.status.window_seconds == 25 * 3600
            asked = replica.status.asked_database
            await replica.snapshot(number, t0, 28 * 3600)
            assert replica.status.asked_database == asked + 1
            window[0] = 30 * 3600
            await live_again(replica, 2)
            assert replica.status.window_seconds == 31 * 3600
            served = replica.status.served
            snap = await replica.snapshot(number, t0, 28 * 3600)
            assert replica.status.served == served + 1
            assert [c.id for c in snap.recent_calls] == ["old27"]
    finally:
        await conn.close()


# -- g. a garbage notification ------------------------------------------------------------


@pytest.mark.parametrize("payload", ["not json", '{"a": 1}', '["c", "1"]', "5", '["x", "1"]'])
async def test_a_garbage_notification_reloads(db: str, payload: str) -> None:
    conn = await connect(db)
    try:
        await add_operators(conn, OPERATORS)
        h = History(5, now_utc(), n_callers=15)
        await h.fill(conn)
        async with running_replica(db) as replica:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            await live_again(replica, 2)
            await h.change(conn, 20)
            await settle(replica)
            assert replica.status.state == "live"
            assert await compare(replica, conn, h.numbers, h.questions()) > 10
    finally:
        await conn.close()


# -- h. the migration and the replica agree on the triggers -------------------------------


def test_migration_trigger_names_equal_required_triggers() -> None:
    path = Path(MIGRATIONS) / "versions" / "0005_state_change_notifications.py"
    spec = importlib.util.spec_from_file_location("migration_0005", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(module.TRIGGER_NAMES) == set(REQUIRED_TRIGGERS)
    assert len(module.TRIGGER_NAMES) == len(set(module.TRIGGER_NAMES)) == len(REQUIRED_TRIGGERS)
    assert module.CHANNEL == CHANNEL


# -- notifications PostgreSQL collapses -------------------------------------------------


# PostgreSQL delivers identical payloads sent in one transaction once (the first): each
# row payload carries clock_timestamp(), so a row that comes back to an earlier state
# within one transaction still ends in that state.


async def test_a_decision_escalated_again_in_one_transaction(db: str) -> None:
    conn = await connect(db)
    number = "+79160000007"
    try:
        t0 = now_utc()
        async with running_replica(db) as replica:
            async with conn.transaction():
                d = await add_decision(conn, number, t0 - timedelta(minutes=1), True)
                await conn.execute("UPDATE decisions SET escalated = false WHERE id = $1", d)
                await conn.execute("UPDATE decisions SET escalated = true WHERE id = $1", d)
            await settle(replica)
            want = await pg_snapshot(conn, number, t0, 3600)
            assert want.escalations_today == 1
            assert await replica.snapshot(number, t0, 3600) == want
    finally:
        await conn.close()


async def test_a_call_moved_away_and_back_in_one_transaction(db: str) -> None:
    conn = await connect(db)
    a, b = "+79160000008", "+79160000009"
    try:
        t0 = now_utc()
        await add_call(conn, a, t0 - timedelta(minutes=5), id_="mv", outcome="in_progress")
        async with running_replica(db) as replica:
            async with conn.transaction():
                await conn.execute("UPDATE calls SET outcome = 'answered' WHERE id = 'mv'")
                await conn.execute("UPDATE calls SET caller_number = $1 WHERE id = 'mv'", b)
                await conn.execute("UPDATE calls SET caller_number = $1 WHERE id = 'mv'", a)
            await replica.caught_up()
            for number in (a, b):
                assert await replica.snapshot(number, t0, 3600) == await pg_snapshot(
                    conn, number, t0, 3600)
    finally:
        await conn.close()


async def test_a_call_given_a_new_id_is_kept_once(db: str) -> None:
    conn = await connect(db)
    number = "+79160000010"
    try:
        t0 = now_utc()
        await add_call(conn, number, t0 - timedelta(minutes=5), id_="old-id")
        async with running_replica(db) as replica:
            await conn.execute("UPDATE calls SET id = 'new-id' WHERE id = 'old-id'")
            await replica.caught_up()
            got = await replica.snapshot(number, t0, 3600)
            assert [c.id for c in got.recent_calls] == ["new-id"]
            assert got == await pg_snapshot(conn, number, t0, 3600)
    finally:
        await conn.close()
