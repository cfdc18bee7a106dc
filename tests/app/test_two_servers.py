"""Two daemons, one per Asterisk server, on one PostgreSQL: a caller who talked to an
operator through server A goes back to the same operator when calling through server B,
while each daemon keeps its own server's operator states."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from callrouter.app import Runtime, prepare_database
from callrouter.simulator.agi import run_call
from callrouter.simulator.ami import FakeAmiServer
from callrouter.store.migrate import upgrade
from tests.app.conftest import (
    answered_call,
    fake_asterisk,
    make_settings,
    rules_holder,
    running,
    seed_operators,
    until,
)
from tests.pg import private_database

pytestmark = pytest.mark.postgres


async def _tables(url: str) -> set[str]:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await conn.fetch("select tablename from pg_tables where schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


@pytest.fixture
def shared_pg_url(pg_database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own, next to the session's ``pg_database_url``.

    (The session database is read-only by convention: committed operators and calls would
    show through every rolled-back store test.) Requesting ``pg_database_url`` gives the
    same skip, or failure under CALLROUTER_REQUIRE_POSTGRES=1, when PostgreSQL is absent.
    """
    with private_database(pg_database_url, "two", migrate=False) as url:
        yield url


@pytest.fixture
async def two_daemons(
    shared_pg_url: str, tmp_path: Path,
) -> AsyncIterator[tuple[tuple[Runtime, FakeAmiServer], tuple[Runtime, FakeAmiServer]]]:
    # A daemon never migrates PostgreSQL on start (several share it): check, then do what
    # an operator's `callrouter db upgrade` does.
    await prepare_database(make_settings(shared_pg_url, 5038, tmp_path))
    assert "alembic_version" not in await _tables(shared_pg_url)
    await upgrade(shared_pg_url)
    await seed_operators(shared_pg_url)

    rules = rules_holder(tmp_path)
    async with contextlib.AsyncExitStack() as stack:
        ami_a = await stack.enter_async_context(fake_asterisk())
        ami_b = await stack.enter_async_context(fake_asterisk())
        a = await stack.enter_async_context(running(
            make_settings(shared_pg_url, ami_a.port, tmp_path, server_id="a"), rules,
            with_api=False))
        b = await stack.enter_async_context(running(
            make_settings(shared_pg_url, ami_b.port, tmp_path, server_id="b"), rules,
            with_api=False))
        assert a.fastagi.port != b.fastagi.port
        yield (a, ami_a), (b, ami_b)


async def agi(runtime: Runtime, caller: str, uniqueid: str) -> dict[str, str]:
    result = await run_call("127.0.0.1", runtime.fastagi.port, caller=caller, queue="support",
                            uniqueid=uniqueid, session_timeout=5)
    assert result.agistatus == "SUCCESS", result
    return result.variables


async def test_caller_goes_back_to_operator_across_servers(
    two_daemons: tuple[tuple[Runtime, FakeAmiServer], tuple[Runtime, FakeAmiServer]],
) -> None:
    (a, ami_a), (b, ami_b) = two_daemons

    first = await agi(a, "89161112233", "1795426001.1")
    assert first["CALLROUTER_REASON"] == "new_caller"
    await ami_a.emit_queue_call("89161112233", "support", "PJSIP/1002", talk_seconds=120,
                                member_name="Boris", uniqueid="1795426001.1")
    call = await answered_call(a, "1795426001.1", timeout=10)
    assert (call.server_id, call.operator_id, call.caller_number) == ("a", "boris",
                                                                      "+79161112233")

    # B answers from its state replica, which hears of A's record by a notification at
    # A's commit: a caller redials seconds later, this test a few milliseconds later, so
    # it waits for B to have heard of every commit so far (a barrier, not a sleep).
    assert b.replica is not None and await b.replica.wait_live(10)
    await b.replica.caught_up()
    served = b.replica.status.served
    second = await agi(b, "+7 916 111-22-33", "1795499999.7")
    assert b.replica.status.served == served + 1  # from memory, not a database read
    assert second["CALLROUTER_ACTION"] == "operator"
    assert second["CALLROUTER_REASON"] == "sticky_available"
    assert second["CALLROUTER_OPERATOR"] == "boris"
    assert second["CALLROUTER_TARGET"] == "PJSIP/1002"
    assert second["CALLROUTER_ANNOUNCE"] == "callrouter/your-operator"

    # B's Asterisk answers it the same way: the history now holds one call per server.
    await ami_b.emit_queue_call("+79161112233", "support", "PJSIP/1002", talk_seconds=30,
                                member_name="Boris", uniqueid="1795499999.7")
    on_b = await answered_call(b, "1795499999.7", timeout=10)
    assert (on_b.server_id, on_b.operator_id) == ("b", "boris")
    assert on_b.decision_id == second["CALLROUTER_DECISION"]


async def test_operator_state_is_per_server(
    two_daemons: tuple[tuple[Runtime, FakeAmiServer], tuple[Runtime, FakeAmiServer]],
) -> None:
    (a, ami_a), (b, ami_b) = two_daemons
    await agi(a, "89162223344", "1795427001.1")
    await ami_a.emit_queue_call("89162223344", "support", "PJSIP/1001", talk_seconds=60,
                                member_name="Anna", uniqueid="1795427001.1")
    await answered_call(a, "1795427001.1", timeout=10)

    # Anna's phone on server B is paused; on server A she is free.
    await ami_b.emit_member_status("PJSIP/1001", paused=True, paused_reason="lunch")

    async def paused_on_b() -> bool:
        return str(b.presence.states().get("anna")) == "paused"

    await until(paused_on_b, what="anna paused on B")
    assert str(a.presence.states().get("anna")) == "available"

    via_b = await agi(b, "89162223344", "1795427002.1")
    assert via_b["CALLROUTER_ACTION"] == "queue"
    assert via_b["CALLROUTER_REASON"] == "sticky_unavailable"
    assert via_b["CALLROUTER_TARGET"] == ""
    via_a = await agi(a, "89162223344", "1795427003.1")
    assert via_a["CALLROUTER_REASON"] == "sticky_available"
    assert via_a["CALLROUTER_TARGET"] == "PJSIP/1001"


async def test_same_uniqueid_on_two_servers_is_two_calls(
    two_daemons: tuple[tuple[Runtime, FakeAmiServer], tuple[Runtime, FakeAmiServer]],
) -> None:
    """Each Asterisk numbers its own channels: equal uniqueids from A and B never merge."""
    (a, ami_a), (b, ami_b) = two_daemons
    uid = "1795428000.5"
    await agi(a, "89163334455", uid)
    await ami_a.emit_queue_call("89163334455", "support", "PJSIP/1001", talk_seconds=50,
                                member_name="Anna", uniqueid=uid)
    await agi(b, "89164445566", uid)
    await ami_b.emit_queue_call("89164445566", "support", "PJSIP/1002", talk_seconds=70,
                                member_name="Boris", uniqueid=uid)
    on_a = await answered_call(a, uid, timeout=10)
    on_b = await answered_call(b, uid, timeout=10)
    assert (on_a.operator_id, on_a.caller_number, on_a.talk_seconds) == ("anna",
                                                                         "+79163334455", 50)
    assert (on_b.operator_id, on_b.caller_number, on_b.talk_seconds) == ("boris",
                                                                         "+79164445566", 70)
