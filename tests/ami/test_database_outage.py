"""The database stops while calls complete, starts again, and every call record arrives
exactly once: AMI events from the fake Asterisk -> AmiListener -> CallRecordWriter (memory,
then the journal) -> the real Store -> a real database, checked row by row.

PostgreSQL is shared with other test runs, so it is never stopped for real: the Store talks
to it through a small TCP proxy, and "the database stops" means the proxy stops listening
and aborts every live connection (new connects are refused, pooled ones are dead); "it
starts again" means the proxy listens on the same port again. The store's engine is the
production one (``make_engine``, ``pool_pre_ping`` on).

SQLite is stopped by renaming its directory away (the file cannot be opened), which only
works with a pool that opens a connection per use, so that engine gets ``NullPool``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from callrouter.ami.journal import CallRecordWriter
from callrouter.ami.listener import AmiListener, AmiSettings
from callrouter.simulator.ami import FakeAmiServer
from callrouter.store import Store, make_engine, make_sessionmaker, upgrade
from tests.ami.conftest import OPERATORS

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
OP1, OP2 = "Local/op1@operators/n", "Local/op2@operators/n"


# --- a database that can be stopped ---------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``stop()`` is a dead database server."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        for transport in list(self._transports):
            transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._transports.add(writer.transport)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._transports.add(up_writer.transport)
        pipes = [asyncio.create_task(self._pipe(reader, up_writer)),
                 asyncio.create_task(self._pipe(up_reader, writer))]
        self._tasks.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._tasks.difference_update(pipes)
            self._transports.difference_update({writer.transport, up_writer.transport})
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        finally:
            dst.transport.abort()  # one side gone: the whole connection is gone


@dataclass
class Database:
    """``url`` is what the daemon uses (stoppable); ``direct_url`` is for checking rows."""

    url: str
    direct_url: str
    stop: Callable[[], Awaitable[None]]
    start: Callable[[], Awaitable[None]]
    engine_options: dict[str, Any]


def _in_thread(coro: Any) -> Any:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(os.environ.get("CALLROUTER_TEST_PG_DSN", DEFAULT_PG_DSN),
                                 timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def own_pg_url(pg_database_url: str) -> Iterator[str]:
    """A migrated database of this test's own next to the session's (read-only) one;
    requesting ``pg_database_url`` gives the skip, or the failure under
    CALLROUTER_REQUIRE_POSTGRES=1, when PostgreSQL is absent."""
    name = f"{make_url(pg_database_url).database}_outage_{uuid.uuid4().hex[:6]}"
    url = make_url(pg_database_url).set(database=name).render_as_string(hide_password=False)
    _in_thread(_admin(f'CREATE DATABASE "{name}"'))
    try:
        _in_thread(upgrade(url))
        yield url
    finally:
        _in_thread(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def pg(own_pg_url: str) -> AsyncIterator[Database]:
    direct = make_url(own_pg_url)
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
    await proxy.start()
    url = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    yield Database(url, own_pg_url, proxy.stop, proxy.start, {})
    with contextlib.suppress(AssertionError):
        await proxy.stop()


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Database]:
    live, down = tmp_path / "db", tmp_path / "db.down"
    live.mkdir()
    url = f"sqlite+aiosqlite:///{live / 'calls.db'}"
    await upgrade(url)

    async def stop() -> None:
        live.rename(down)

    async def start() -> None:
        down.rename(live)

    yield Database(url, url, stop, start, {"poolclass": NullPool})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> Database:
    db: Database = request.getfixturevalue("pg" if request.param == "postgres" else "sqlite")
    return db


async def rows(db: Database) -> dict[str, tuple[int, str | None, str, str | None]]:
    """uniqueid -> (how many rows, operator, outcome, who hung up), read past any proxy."""
    engine = make_engine(db.direct_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(
                "SELECT uniqueid, COUNT(*), MIN(operator_id), MIN(outcome), MIN(hangup_by) "
                "FROM calls WHERE server_id = 'ast1' GROUP BY uniqueid"))
            return {r[0]: (r[1], r[2], r[3], r[4]) for r in result}
    finally:
        await engine.dispose()


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what}")
        await asyncio.sleep(0.05)


# --- the daemon's pieces ----------------------------------------------------------------


class Daemon:
    """What ``callrouter serve`` wires for call records: engine, Store, writer, listener."""

    def __init__(self, db: Database, ami: FakeAmiServer, journal: Path,
                 memory_limit: int) -> None:
        self.engine = make_engine(db.url, **db.engine_options)
        self.writer = CallRecordWriter(Store(make_sessionmaker(self.engine)), journal,
                                       memory_limit=memory_limit, batch_size=4,
                                       batch_delay=0.01, retry_min=0.05, retry_max=0.2)
        self.submitted: list[str] = []

        def on_record(record: Any) -> None:
            self.submitted.append(record.uniqueid)
            self.writer.submit(record)

        self.listener = AmiListener(
            AmiSettings(port=ami.port, username="callrouter", secret="secret",
                        server_id="ast1", tick_interval=0.05),
            OPERATORS, on_record=on_record)

    async def start(self) -> None:
        await self.writer.start()
        await self.listener.start()
        await self.listener.wait_connected(5)

    async def stop(self) -> None:
        await self.listener.stop()
        await self.writer.stop(timeout=1.0)
        await self.engine.dispose()

    def queued(self) -> int:
        return self.writer.status.queued_memory + self.writer.status.queued_journal


@pytest.fixture
async def ami() -> AsyncIterator[FakeAmiServer]:
    server = FakeAmiServer()
    await server.start()
    yield server
    await server.stop()


async def calls(ami: FakeAmiServer, first: int, count: int) -> dict[str, tuple[str, str]]:
    """``count`` answered calls, alternating operator and who hangs up;
    uniqueid -> (operator id, hangup_by) expected in the database."""
    expected = {}
    for i in range(first, first + count):
        uid = f"1790000000.{i}"
        iface, op = (OP1, "op1") if i % 2 else (OP2, "op2")
        reason, by = ("caller", "caller") if i % 3 else ("agent", "operator")
        await ami.emit_queue_call(f"5550{i:03d}", "support-q", iface, talk_seconds=10 + i,
                                  reason=reason, uniqueid=uid)
        expected[uid] = (op, by)
    return expected


async def assert_exactly_once(db: Database, expected: dict[str, tuple[str, str]]) -> None:
    found = await rows(db)
    assert set(found) == set(expected), (sorted(set(expected) - set(found)),
                                         sorted(set(found) - set(expected)))
    for uid, (op, by) in expected.items():
        assert found[uid] == (1, op, "answered", by), uid


def assert_journal_drained(journal: Path) -> None:
    assert journal.read_bytes() == b""
    offset = journal.with_name(journal.name + ".offset")
    assert not offset.exists() or offset.read_text() == "0"


# --- the tests --------------------------------------------------------------------------


async def test_outage_while_calls_complete_every_record_lands_once(
        database: Database, ami: FakeAmiServer, tmp_path: Path) -> None:
    journal = tmp_path / "ast1.journal"
    daemon = Daemon(database, ami, journal, memory_limit=3)
    await daemon.start()
    try:
        expected = await calls(ami, 0, 3)
        await eventually(lambda: _count_is(database, 3), "the first 3 calls written")

        await database.stop()
        expected_down = await calls(ami, 3, 9)
        expected.update(expected_down)
        # 3 wait in memory, the 6 beyond the bound in the journal, on disk
        await eventually(_sync(lambda: daemon.queued() == 9), "9 records held")
        await eventually(_sync(lambda: not daemon.writer.status.sink_up), "the outage seen")
        assert daemon.writer.status.queued_memory == 3
        assert daemon.writer.status.queued_journal == 6
        assert len(journal.read_text().splitlines()) == 6
        await asyncio.sleep(0.3)  # a few failed retries, nothing written or lost meanwhile
        assert daemon.queued() == 9

        await database.start()
        await eventually(_sync(lambda: daemon.queued() == 0), "the writer drained")
        assert daemon.writer.status.sink_up
        await assert_exactly_once(database, expected)
        assert_journal_drained(journal)
        assert sorted(set(daemon.submitted)) == sorted(expected)

        # and it goes on as normal afterwards
        expected.update(await calls(ami, 12, 2))
        await eventually(lambda: _count_is(database, 14), "calls after the outage written")
        await assert_exactly_once(database, expected)
    finally:
        await daemon.stop()


async def test_daemon_restarts_during_outage_journal_is_written_on_start(
        database: Database, ami: FakeAmiServer, tmp_path: Path) -> None:
    journal = tmp_path / "ast1.journal"
    first = Daemon(database, ami, journal, memory_limit=2)
    await first.start()
    try:
        expected = await calls(ami, 0, 2)
        await eventually(lambda: _count_is(database, 2), "the first 2 calls written")
        await database.stop()
        expected.update(await calls(ami, 2, 6))
        await eventually(_sync(lambda: first.queued() == 6), "6 records held")
        assert first.writer.status.queued_memory == 2
    finally:
        await first.stop()  # the final write fails: memory goes to the journal too
    held = journal.read_text().splitlines()
    assert len(held) == 6 and all(f'"uniqueid":"{uid}"' in "".join(held)
                                  for uid in list(expected)[2:])
    await database.start()
    assert len(await rows(database)) == 2  # nothing of the outage reached the database
    second = Daemon(database, ami, journal, memory_limit=2)
    await second.start()  # writes the journal first
    try:
        await eventually(lambda: _count_is(database, 8), "the journal written on start")
        expected.update(await calls(ami, 8, 3))
        await eventually(_sync(lambda: second.queued() == 0), "the writer drained")
        await eventually(lambda: _count_is(database, 11), "new calls written")
        await assert_exactly_once(database, expected)
        assert_journal_drained(journal)
    finally:
        await second.stop()


@pytest.mark.postgres
async def test_flapping_database_cut_mid_write(pg: Database, ami: FakeAmiServer,
                                               tmp_path: Path) -> None:
    """The connection is cut at arbitrary points, in the middle of a batch's transaction or
    between its COMMIT and the answer: a batch is retried whole, and the upsert by
    (server_id, uniqueid) keeps a retried batch that did commit from doubling any row."""
    journal = tmp_path / "ast1.journal"
    daemon = Daemon(pg, ami, journal, memory_limit=5)
    await daemon.start()
    expected: dict[str, tuple[str, str]] = {}
    try:
        for round_ in range(6):
            expected.update(await calls(ami, round_ * 5, 5))
            await asyncio.sleep(0.02 * round_)  # cut at a different moment each round
            await pg.stop()
            await asyncio.sleep(0.1)
            await pg.start()
        await eventually(_sync(lambda: daemon.queued() == 0), "the writer drained")
        await eventually(lambda: _count_is(pg, 30), "all 30 calls written")
        await assert_exactly_once(pg, expected)
        if journal.exists():
            assert_journal_drained(journal)
    finally:
        await daemon.stop()


async def _count_is(db: Database, n: int) -> bool:
    return len(await rows(db)) == n


def _sync(cond: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return cond()
    return check
