"""PgHotPath (the FastAGI path's asyncpg pool) writes and reads what the Store does, and a
database that is down or stalled costs a call nothing but a fast error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from sqlalchemy import JSON
from sqlalchemy.pool import NullPool

from callrouter.domain.model import Action, Operator
from callrouter.domain.reasons import ReasonCode
from callrouter.service.decision_writer import DecisionWriter
from callrouter.service.ports import CallRecord, RecordRejected
from callrouter.store import Store, make_engine, make_sessionmaker
from callrouter.store.models import DecisionRow
from callrouter.store.pg_hot import PgHotPath, StoreBusy, asyncpg_dsn
from callrouter.store.snapshot import load_snapshot
from tests.pg import private_database
from tests.silent import silent_server

from .builders import (
    CALLER,
    NOW,
    ago,
    check_decision_merges_into_ami_row,
    decision,
    decision_record,
    transferred,
)

pytestmark = pytest.mark.postgres

JSON_COLUMNS = tuple(c.name for c in DecisionRow.__table__.columns if isinstance(c.type, JSON))

@contextlib.asynccontextmanager
async def stalled_database() -> AsyncIterator[tuple[str, list[asyncio.StreamWriter]]]:
    """A "database" that accepts connections and never answers: its URL, and the server
    ends of the connections it holds (close them to drop the connections)."""
    async with silent_server() as (port, held):
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x", held


@pytest.fixture
def fresh_pg(pg_database_url: str) -> Iterator[str]:
    """A database of this test's own: the hot path commits (it cannot join the rolled-back
    transaction the ``store`` fixture uses), so nothing it writes may leak to other tests.
    Depends on ``pg_database_url`` so an unreachable server skips (or fails) the same way."""
    with private_database(pg_database_url, "hot") as url:
        yield url


@pytest.fixture
async def both(fresh_pg: str) -> AsyncIterator[tuple[Store, PgHotPath]]:
    engine = make_engine(fresh_pg, poolclass=NullPool)
    hot = PgHotPath(fresh_pg, max_size=2)
    try:
        yield Store(make_sessionmaker(engine)), hot
    finally:
        await hot.close()
        await engine.dispose()


def test_dsn_drops_the_driver_and_sqlalchemy_only_options() -> None:
    dsn = asyncpg_dsn("postgresql+asyncpg://u:p%40ss@db:5433/cr?prepared_statement_cache_size=0"
                      "&sslmode=require")
    assert dsn == "postgresql://u:p%40ss@db:5433/cr?sslmode=require"


async def _rows(url: str, table: str, key: str, value: str) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await conn.fetchrow(f"SELECT * FROM {table} WHERE {key} = $1", value)
    finally:
        await conn.close()
    assert row is not None, f"no {table} row with {key}={value}"
    return dict(row)


async def test_decision_and_call_rows_match_the_store_s(
    both: tuple[Store, PgHotPath], fresh_pg: str
) -> None:
    store, hot = both
    dec = decision(ReasonCode.STICKY_AVAILABLE, ReasonCode.VIP, action=Action.OPERATOR,
                   target="op7", escalated=True)
    by_store = decision_record(at=ago(minutes=2), uniqueid="s-1", dec=dec)
    by_hot = replace(by_store, id=uuid.uuid4().hex, uniqueid="h-1", linkedid="h-1")
    await store.record_many([by_store])
    await hot.record_many([by_hot])

    d_store = await _rows(fresh_pg, "decisions", "id", by_store.id)
    d_hot = await _rows(fresh_pg, "decisions", "id", by_hot.id)
    for column in ("id", "uniqueid", "linkedid"):
        d_store.pop(column), d_hot.pop(column)
    # every other column equal; JSON ones as JSON (the hot path writes them compact)
    for column in JSON_COLUMNS:
        d_store[column], d_hot[column] = json.loads(d_store[column]), json.loads(d_hot[column])
    assert d_hot == d_store
    assert d_hot["reason_codes"] == ["sticky_available", "vip"]
    async with store.transaction() as tx:  # the reason filter finds the hot path's rows
        found = await tx.decisions.list(reason_code=ReasonCode.VIP)
    assert {r.id for r in found} == {by_store.id, by_hot.id}
    assert next(r for r in found if r.id == by_hot.id) == replace(by_store, id=by_hot.id,
                                                                 uniqueid="h-1",
                                                                 linkedid="h-1")

    c_store = await _rows(fresh_pg, "calls", "decision_id", by_store.id)
    c_hot = await _rows(fresh_pg, "calls", "decision_id", by_hot.id)
    for column in ("id", "uniqueid", "linkedid", "decision_id"):
        c_store.pop(column), c_hot.pop(column)
    assert c_hot == c_store

    # ...and the Store reads the hot path's decision back as the record it was
    async with store.transaction() as tx:
        assert await tx.decisions.get(by_hot.id) == by_hot


async def test_merges_into_a_call_the_ami_listener_wrote_first(
    both: tuple[Store, PgHotPath],
) -> None:
    store, hot = both
    await check_decision_merges_into_ami_row(store, hot.record_many)


async def _call_rows(url: str, server_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch("SELECT * FROM calls WHERE server_id = $1 "
                                "ORDER BY started_at, uniqueid NULLS LAST", server_id)
    finally:
        await conn.close()
    out = []
    for row in rows:
        values = dict(row)
        for column in ("id", "server_id", "decision_id"):
            values.pop(column)
        out.append(values)
    return out


async def test_a_batch_with_a_call_routed_twice_writes_what_the_store_writes(
    both: tuple[Store, PgHotPath], fresh_pg: str
) -> None:
    """One statement cannot upsert a row twice: a channel that ran the AGI twice in one
    batch (and calls without a uniqueid) must still give the Store's rows."""
    store, hot = both
    sticky = decision(ReasonCode.STICKY_AVAILABLE, action=Action.OPERATOR, target="op2")

    def batch(server_id: str) -> list[Any]:
        return [
            decision_record(at=ago(minutes=3), uniqueid="a", server_id=server_id),
            decision_record(at=ago(minutes=2), uniqueid="b", server_id=server_id),
            decision_record(at=ago(minutes=1), uniqueid="a", server_id=server_id, dec=sticky),
            decision_record(at=ago(seconds=30), uniqueid=None, server_id=server_id),
            decision_record(at=ago(seconds=20), uniqueid=None, server_id=server_id),
        ]

    by_store, by_hot = batch("store"), batch("hot")
    await store.record_many(by_store)
    await hot.record_many(by_hot)
    store_rows = await _call_rows(fresh_pg, "store")
    assert len(store_rows) == 4  # "a" once (merged), "b", and the two without uniqueid
    assert await _call_rows(fresh_pg, "hot") == store_rows
    merged = store_rows[0]
    assert merged["uniqueid"] == "a" and merged["target_operator_id"] == "op2"
    assert merged["started_at"] == ago(minutes=3)  # the first decision opened the row
    async with store.transaction() as tx:
        for rec in by_hot:
            assert await tx.decisions.get(rec.id) == rec  # every decision row is there


async def test_a_decision_the_database_refuses_costs_only_itself(
    both: tuple[Store, PgHotPath], fresh_pg: str
) -> None:
    """A NUL in a caller id (a text column cannot hold it) is refused for its data: the
    writer isolates that one decision and writes the others of its batch."""
    _, hot = both
    bad = replace(decision_record(uniqueid="bad"), caller_raw="12\x0034")
    with pytest.raises(RecordRejected):
        await hot.record_many([bad])
    good = [decision_record(at=ago(minutes=m), uniqueid=f"g{m}") for m in range(1, 6)]
    writer = DecisionWriter(hot, batch=10)
    for r in (*good[:2], bad, *good[2:]):
        writer.submit(r)
    writer.start()
    try:
        await writer.flush(timeout=5.0)
    finally:
        await writer.close()
    assert writer.rejected == 1 and writer.written == 5
    conn = await asyncpg.connect(asyncpg_dsn(fresh_pg))
    try:
        ids = {r["id"] for r in await conn.fetch("SELECT id FROM decisions")}
    finally:
        await conn.close()
    assert ids == {r.id for r in good}


async def test_snapshot_equals_the_sqlalchemy_reference(both: tuple[Store, PgHotPath]) -> None:
    store, hot = both
    await store.record_many([
        decision_record(at=ago(minutes=m), uniqueid=f"u{m}",
                        dec=decision(escalated=m == 1)) for m in (1, 30, 90)
    ])
    await store.write_call_records([
        CallRecord(uniqueid="u30", operator_id="op3", answered_at=ago(minutes=29),
                   ended_at=ago(minutes=20), talk_seconds=540),
        transferred("u1", started=ago(minutes=1)),  # the last handler's own talk: 5 s
    ])
    async with store.transaction() as tx:
        await tx.operators.add(Operator("op5", "Olga", ("PJSIP/1005",)))
        await tx.tickets.create(CALLER, "router reboots", now=ago(hours=2))
        await tx.flags.set_vip_class(CALLER, "gold", now=ago(hours=3))
        await tx.flags.add_opt_out(CALLER, "op5", now=ago(hours=3))
    got = await hot.snapshot(CALLER, NOW, 3600)
    async with store._sessions() as session, session.begin():
        want = await load_snapshot(session, CALLER, NOW, 3600)
    assert got == want
    assert len(got.recent_calls) == 2 and got.open_ticket is not None
    assert [c.operator_talk_seconds for c in got.recent_calls] == [5, None]
    assert got.flags.vip_class == "gold" and got.flags.opted_out_operators == {"op5"}
    assert hot.inflight == 0


async def test_database_down_fails_fast_and_leaves_nothing_in_flight() -> None:
    # Nothing listens on port 1: connecting is refused at once.
    hot = PgHotPath("postgresql+asyncpg://postgres@127.0.0.1:1/none", connect_timeout=1.0)
    t0 = time.perf_counter()
    with pytest.raises(OSError):
        await hot.snapshot(CALLER, NOW, 3600)
    with pytest.raises(OSError):
        await hot.record_many([decision_record()])
    assert time.perf_counter() - t0 < 3.0
    assert hot.inflight == 0
    await hot.close()


async def test_a_stalled_database_caps_reads_in_flight() -> None:
    """A server that accepts and never answers: reads pile up only to ``max_inflight``,
    then fail at once with StoreBusy (the caller gets the queue, memory stays bounded)."""
    async with stalled_database() as (url, _):
        hot = PgHotPath(url, max_size=2, connect_timeout=30.0, max_inflight=3)
        try:
            waiting = [asyncio.ensure_future(hot.snapshot(CALLER, NOW, 3600)) for _ in range(3)]
            await asyncio.sleep(0.05)
            assert hot.inflight == 3 and not any(w.done() for w in waiting)
            t0 = time.perf_counter()
            with pytest.raises(StoreBusy):
                await hot.snapshot(CALLER, NOW, 3600)
            assert time.perf_counter() - t0 < 0.05
            # A read cancelled (shutdown; the FastAGI handler abandons late routings instead)
            # gives its slot back.
            waiting[0].cancel()
            await asyncio.sleep(0.01)
            assert hot.inflight == 2
        finally:
            for w in waiting:
                w.cancel()
            await hot.close()


async def test_more_calls_than_connections_wait_their_turn(fresh_pg: str) -> None:
    hot = PgHotPath(fresh_pg, max_size=1)
    try:
        snaps = await asyncio.gather(*(hot.snapshot(CALLER, NOW, 3600) for _ in range(5)),
                                     hot.record_many([decision_record(uniqueid="w1")]))
        assert [type(s).__name__ for s in snaps] == ["CallerSnapshot"] * 5 + ["NoneType"]
        assert hot._connections._open == 1
    finally:
        await hot.close()


async def test_a_connection_killed_by_the_server_is_replaced(fresh_pg: str) -> None:
    hot = PgHotPath(fresh_pg, max_size=1)
    try:
        await hot.snapshot(CALLER, NOW, 3600)
        admin = await asyncpg.connect(asyncpg_dsn(fresh_pg))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        finally:
            await admin.close()
        assert killed == 1
        # The call that finds the connection dead may fail (if asyncpg has not yet read the
        # server's goodbye) or reconnect at once; either way the one after works.
        with contextlib.suppress(Exception):
            await hot.snapshot(CALLER, NOW, 3600)
        await hot.record_many([decision_record(uniqueid="k1")])
        assert (await hot.snapshot(CALLER, NOW, 3600)).recent_calls[0].id
        assert hot._connections._open == 1
    finally:
        await hot.close()


async def test_reads_asked_together_share_statements_and_each_gets_its_own(
    both: tuple[Store, PgHotPath],
) -> None:
    """Group commit for reads: with one statement slot, reads asked while it is taken go
    together in the next statement, and each caller still gets exactly its own snapshot."""
    store, _ = both
    callers = [f"+7912000000{i}" for i in range(6)]
    await store.record_many([
        decision_record(number=c, at=ago(minutes=10 + i), uniqueid=f"b{i}",
                        dec=decision(escalated=i == 2))
        for i, c in enumerate(callers) if i != 5  # the last caller has no history
    ])
    async with store.transaction() as tx:
        await tx.tickets.create(callers[1], "no dial tone", now=ago(hours=1))
        await tx.flags.set_vip_class(callers[3], "gold", now=ago(hours=2))
        await tx.operators.add(Operator("op9", "Oleg", ("PJSIP/1009",)))
        await tx.flags.add_opt_out(callers[4], "op9", now=ago(hours=2))
    hot = PgHotPath(store_url(store), max_size=2, max_batches=1)
    try:
        asked = callers * 3  # 18 reads, each caller three times, interleaved
        got = await asyncio.gather(*(hot.snapshot(c, NOW, 3600) for c in asked))
        assert hot.statements < len(asked)  # they were batched
        for caller, snapshot in zip(asked, got, strict=True):
            async with store._sessions() as session, session.begin():
                assert snapshot == await load_snapshot(session, caller, NOW, 3600), caller
        assert got[1].open_ticket is not None and got[3].flags.vip_class == "gold"
        assert got[4].flags.opted_out_operators == {"op9"} and got[5].recent_calls == ()
        assert hot.inflight == 0 and not hot._waiting
    finally:
        await hot.close()


def store_url(store: Store) -> str:
    bind = store._sessions.kw["bind"]
    return bind.url.render_as_string(hide_password=False)  # type: ignore[no-any-return]


async def test_reads_waiting_on_a_stalled_database_fail_together_when_it_goes() -> None:
    """The statement's owner cancelled (shutdown) while others wait for a slot: the waiters
    go in the next statement (a cancelled one is skipped); and when the database drops
    the connection, every read of that statement fails at once (their calls go to the
    queue) instead of waiting for an answer that will not come."""
    async with stalled_database() as (url, held):
        hot = PgHotPath(url, max_size=2, connect_timeout=30.0, max_batches=1)
        owner = asyncio.ensure_future(hot.snapshot(CALLER, NOW, 3600))
        waiters: list[asyncio.Future[Any]] = []
        try:
            await asyncio.sleep(0.05)  # the owner holds the only statement slot
            waiters = [asyncio.ensure_future(hot.snapshot(f"+7912345678{i}", NOW, 3600))
                       for i in range(3)]
            await asyncio.sleep(0.05)
            assert len(hot._waiting) == 3 and not any(w.done() for w in waiters)
            waiters[0].cancel()  # one waiter's call ended meanwhile
            owner.cancel()
            await asyncio.sleep(0.05)
            assert owner.cancelled() and waiters[0].cancelled()
            # the other two went together in the next statement, which stalls too
            assert hot.statements == 2 and hot.inflight == 2 and not hot._waiting
            for writer in held:
                writer.close()  # the "database" goes away
            done, _ = await asyncio.wait(waiters[1:], timeout=2.0)
            assert len(done) == 2
            assert all(isinstance(w.exception(), Exception) for w in done)
            assert hot.inflight == 0
        finally:
            for w in (owner, *waiters):
                w.cancel()
            await hot.close()
