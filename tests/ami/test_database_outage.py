"""The database stops while calls complete, starts again, and every call record arrives
exactly once: AMI events from the fake Asterisk -> AmiListener -> CallRecordWriter (memory,
then the journal) -> the real Store -> a real database, checked row by row. Every call here
is answered, so it gives two records: the live one when the operator answers (in
progress) and the final one at hangup; the final row must be the final record's.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from callrouter.ami import journal as journal_module
from callrouter.ami.journal import CallRecordWriter
from callrouter.ami.listener import AmiListener, AmiSettings
from callrouter.legs import CallLeg, LeggedCallRecord
from callrouter.service.ports import CallRecord
from callrouter.simulator.ami import FakeAmiServer
from callrouter.store import Store, make_engine, make_sessionmaker, upgrade
from tests.ami.conftest import OPERATORS
from tests.pg import private_database

OP1, OP2 = "Local/op1@operators/n", "Local/op2@operators/n"


# --- a database that can be stopped ---------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``stop()`` is a dead database server.

    ``lose_next_commit_reply()``: the next ``COMMIT`` goes through, its answer never comes
    back and the client's connection is reset (the batch is in, the writer cannot know).
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.commit_replies_lost = 0
        self._lose_commit_reply = False
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
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

    def lose_next_commit_reply(self) -> None:
        self._lose_commit_reply = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._transports.add(writer.transport)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._transports.add(up_writer.transport)
        mute = asyncio.Event()  # set: answers from the server are dropped
        pipes = [asyncio.create_task(self._pipe(reader, up_writer, mute, writer)),
                 asyncio.create_task(self._pipe(up_reader, writer, mute, None))]
        self._tasks.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._tasks.difference_update(pipes)
            self._transports.difference_update({writer.transport, up_writer.transport})
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    mute: asyncio.Event, client: asyncio.StreamWriter | None) -> None:
        try:
            while data := await src.read(65536):
                if client is None and mute.is_set():
                    continue  # the answer is lost on the way
                dst.write(data)
                await dst.drain()
                if client is not None and self._lose_commit_reply and b"COMMIT" in data:
                    self._lose_commit_reply = False
                    self.commit_replies_lost += 1
                    mute.set()
                    await asyncio.sleep(0.3)  # the server has long committed by now
                    client.transport.abort()
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
    proxy: TcpProxy | None = None


@pytest.fixture
def own_pg_url(pg_database_url: str) -> Iterator[str]:
    """A migrated database of this test's own next to the session's (read-only) one;
    requesting ``pg_database_url`` gives the skip, or the failure under
    CALLROUTER_REQUIRE_POSTGRES=1, when PostgreSQL is absent."""
    with private_database(pg_database_url, "outage") as url:
        yield url


@pytest.fixture
async def pg(own_pg_url: str) -> AsyncIterator[Database]:
    direct = make_url(own_pg_url)
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
    await proxy.start()
    url = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    yield Database(url, own_pg_url, proxy.stop, proxy.start, {}, proxy)
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

    async def drained(self, db: Database, n: int, submitted: int | None = None) -> None:
        """This daemon's listener gave the writer ``submitted`` records (default ``2 n``: a
        live and a final record per answered call), the writer holds none, and the database
        has ``n`` calls."""
        async def done() -> bool:
            return (len(self.submitted) >= (2 * n if submitted is None else submitted)
                    and self.queued() == 0 and await _count_is(db, n))
        await eventually(done, f"{n} calls written and the writer drained")


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
        await daemon.drained(database, 3)

        await database.stop()
        expected_down = await calls(ami, 3, 9)
        expected.update(expected_down)
        # 9 calls, 18 records: 3 wait in memory, the 15 beyond the bound in the journal
        await eventually(_sync(lambda: daemon.queued() == 18), "18 records held")
        await eventually(_sync(lambda: not daemon.writer.status.sink_up), "the outage seen")
        assert daemon.writer.status.queued_memory == 3
        assert daemon.writer.status.queued_journal == 15
        assert len(journal.read_text().splitlines()) == 15
        await asyncio.sleep(0.3)  # a few failed retries, nothing written or lost meanwhile
        assert daemon.queued() == 18

        await database.start()
        await daemon.drained(database, 12)
        assert daemon.writer.status.sink_up
        await assert_exactly_once(database, expected)
        assert_journal_drained(journal)
        assert sorted(set(daemon.submitted)) == sorted(expected)

        # and it goes on as normal afterwards
        expected.update(await calls(ami, 12, 2))
        await daemon.drained(database, 14)
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
        await first.drained(database, 2)
        await database.stop()
        expected.update(await calls(ami, 2, 6))
        await eventually(_sync(lambda: first.queued() == 12), "12 records held")
        assert first.writer.status.queued_memory == 2
    finally:
        await first.stop()  # the final write fails: memory goes to the journal too
    held = journal.read_text().splitlines()
    assert len(held) == 12 and all(f'"uniqueid":"{uid}"' in "".join(held)
                                  for uid in list(expected)[2:])
    await database.start()
    assert len(await rows(database)) == 2  # nothing of the outage reached the database
    second = Daemon(database, ami, journal, memory_limit=2)
    await second.start()  # writes the journal first
    try:
        await eventually(lambda: _count_is(database, 8), "the journal written on start")
        expected.update(await calls(ami, 8, 3))
        await second.drained(database, 11, submitted=6)
        await assert_exactly_once(database, expected)
        assert_journal_drained(journal)
    finally:
        await second.stop()


class _Crash(Exception):
    pass


class _OsThatDiesOnReplace:
    """``os`` for the journal module, where the process "dies" at the atomic switch."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def replace(*_args: object) -> None:
        raise _Crash


async def test_crash_while_stopping_loses_nothing_the_journal_held(
        database: Database, ami: FakeAmiServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """stop() during an outage puts memory in front of the journal's records by rewriting
    the journal; dying in the middle of that must leave the old journal whole (it once
    truncated it first, then appended: a crash in between lost every journaled record).
    What only memory held is lost in a crash: that is the memory bound's deal."""
    journal = tmp_path / "ast1.journal"
    first = Daemon(database, ami, journal, memory_limit=2)
    await first.start()
    expected = await calls(ami, 0, 2)
    await first.drained(database, 2)
    await database.stop()
    in_memory = await calls(ami, 2, 1)  # its live and final record fill the memory bound
    journaled = await calls(ami, 3, 3)
    await eventually(_sync(lambda: first.queued() == 8), "8 records held")
    assert first.writer.status.queued_journal == 6
    await first.listener.stop()
    monkeypatch.setattr(journal_module, "os", _OsThatDiesOnReplace())
    with pytest.raises(_Crash):
        await first.writer.stop(timeout=0.5)
    monkeypatch.undo()
    await first.engine.dispose()

    await database.start()
    second = Daemon(database, ami, journal, memory_limit=2)
    await second.start()
    try:
        expected.update(journaled)
        await second.drained(database, 5, submitted=0)
        await assert_exactly_once(database, expected)
        assert not set(in_memory) & set(await rows(database))
        assert_journal_drained(journal)
    finally:
        await second.stop()


@pytest.mark.postgres
async def test_commit_went_through_but_its_answer_was_lost(pg: Database, ami: FakeAmiServer,
                                                           tmp_path: Path) -> None:
    """The worst cut: the batch's COMMIT reached PostgreSQL, the answer did not reach the
    writer. It must retry the batch (it cannot know), and the upsert by (server_id,
    uniqueid) must keep the repeat from doubling any row."""
    assert pg.proxy is not None
    daemon = Daemon(pg, ami, tmp_path / "ast1.journal", memory_limit=5)
    await daemon.start()
    try:
        expected = await calls(ami, 0, 2)
        await daemon.drained(pg, 2)
        pg.proxy.lose_next_commit_reply()
        expected.update(await calls(ami, 2, 4))
        await daemon.drained(pg, 6)
        assert pg.proxy.commit_replies_lost == 1
        assert daemon.writer.status.failures >= 1  # the writer saw the batch fail...
        await assert_exactly_once(pg, expected)  # ...which was in, and is in once
    finally:
        await daemon.stop()


@pytest.mark.postgres
async def test_flapping_database_while_calls_keep_coming(pg: Database, ami: FakeAmiServer,
                                                         tmp_path: Path) -> None:
    """Calls complete all the time while the database goes down and up six times: cuts land
    at arbitrary points (idle pooled connections, mid-transaction, during retries)."""
    journal = tmp_path / "ast1.journal"
    daemon = Daemon(pg, ami, journal, memory_limit=5)
    await daemon.start()
    expected: dict[str, tuple[str, str]] = {}

    async def feed() -> None:
        for i in range(40):
            expected.update(await calls(ami, i, 1))
            await asyncio.sleep(0.01)

    try:
        feeder = asyncio.create_task(feed())
        for round_ in range(6):
            await asyncio.sleep(0.03 + 0.02 * round_)
            await pg.stop()
            await asyncio.sleep(0.08)
            await pg.start()
        await feeder
        await daemon.drained(pg, 40)
        await assert_exactly_once(pg, expected)
        assert daemon.writer.status.failures >= 1
        if journal.exists():
            assert_journal_drained(journal)
    finally:
        await daemon.stop()


class _Spy:
    """The real Store, noting the uniqueids of every batch it took, in order."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.written: list[str] = []

    async def write_call_records(self, records: Any) -> None:
        await self.store.write_call_records(records)
        self.written.extend(r.uniqueid for r in records)


def _refused(uid: str) -> LeggedCallRecord:
    """Two legs with one number: the legs' primary key refuses it on both databases."""
    leg = CallLeg(seq=0, operator_id="op1", interface=OP1, via="queue",
                  answered_at=datetime(2026, 1, 1, 12, tzinfo=UTC))
    return LeggedCallRecord(uniqueid=uid, server_id="ast1", caller_raw="5550999",
                            operator_id="op1", legs=(leg, leg))


async def test_a_refused_record_is_dropped_and_the_rest_land_in_order(
        database: Database, tmp_path: Path) -> None:
    """Bad records among good ones, while the database is down (everything held, nothing
    dropped) and once it is back: each bad one is dropped and counted, the good ones are
    written in order (each call's live record before its final one) and the journal
    drains. Before, the writer retried the first refused batch for ever and no call was
    recorded again."""
    engine = make_engine(database.url, **database.engine_options)
    sink = _Spy(Store(make_sessionmaker(engine)))
    journal = tmp_path / "ast1.journal"
    writer = CallRecordWriter(sink, journal, memory_limit=3, batch_size=4,
                              batch_delay=0.01, retry_min=0.05, retry_max=0.2)
    records: list[CallRecord] = []
    at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    for i in range(6):
        uid = f"1790000100.{i}"
        # op1 answers, transfers to op2: the final row says op2 only if written in order
        records.append(CallRecord(uniqueid=uid, server_id="ast1", caller_raw=f"5550{i}",
                                  started_at=at, answered_at=at, operator_id="op1"))
        records.append(CallRecord(uniqueid=uid, server_id="ast1", caller_raw=f"5550{i}",
                                  ended_at=at, operator_id="op2", transferred=True,
                                  transferred_from="op1", outcome="answered",
                                  hangup_by="caller", talk_seconds=30))
    records.insert(1, _refused("bad-in-memory"))
    records.insert(8, _refused("bad-in-the-journal"))
    await writer.start()
    try:
        await database.stop()
        for record in records:
            writer.submit(record)
        await eventually(_sync(lambda: writer.status.failures >= 2), "failed retries")
        assert writer.status.rejected == 0 and not writer.status.sink_up
        assert writer.status.queued_memory == 3 and writer.status.queued_journal == 11

        await database.start()
        await eventually(_sync(lambda: writer.status.queued_memory
                               + writer.status.queued_journal == 0), "the writer drained")
        good = [r.uniqueid for r in records if not r.uniqueid.startswith("bad")]
        assert sink.written == good
        assert writer.status.rejected == 2 and writer.status.sink_up
        found = await rows(database)
        assert found == {uid: (1, "op2", "answered", "caller") for uid in good}
        assert_journal_drained(journal)
    finally:
        await writer.stop(timeout=1.0)
        await engine.dispose()


async def _count_is(db: Database, n: int) -> bool:
    return len(await rows(db)) == n


def _sync(cond: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return cond()
    return check
