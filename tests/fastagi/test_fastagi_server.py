"""The FastAGI server over real TCP (port 0), driven by the Asterisk simulator."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from callrouter import channel_vars as cv
from callrouter.fastagi import FastAgiServer, build_server
from callrouter.simulator.agi import R_510, R_520_SET_VARIABLE, bad_client, run_call

from .fastagi_fakes import FakeRouter


@pytest.fixture
async def server_for() -> AsyncIterator[object]:
    servers: list[FastAgiServer] = []

    async def start(router: FakeRouter, **kw: object) -> FastAgiServer:
        srv = await build_server(router, port=0, **kw).start()  # type: ignore[arg-type]
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        await srv.close()


async def call(srv: FastAgiServer, caller: str | None = "5551234", **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("queue", "support")
    return await run_call("127.0.0.1", srv.port, caller=caller, **kw)  # type: ignore[arg-type]


async def test_new_caller_gets_queue_in_one_round_trip(server_for) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter())
    res = await call(srv, "5551234", uniqueid="1795425059.7", channel="PJSIP/trunk-0000000a")
    assert res.agistatus == "SUCCESS"
    assert res.variables[cv.ACTION] == "queue"
    assert res.variables[cv.TARGET] == ""
    assert res.variables[cv.QUEUE] == "support"
    assert res.variables[cv.WAIT] == "0"
    assert res.variables[cv.REASON] == "new_caller"
    assert res.variables[cv.DECISION]
    assert set(res.variables) == set(cv.ALL)
    assert len(res.commands) == 1 and res.commands[0].startswith("EXEC MSet ")


async def test_operator_and_specialist_decisions(server_for) -> None:  # type: ignore[no-untyped-def]
    router = FakeRouter()
    srv = await server_for(router)
    op = await call(srv, "1234567", queue="sales")
    assert op.variables[cv.ACTION] == "operator"
    assert op.variables[cv.TARGET] == "PJSIP/op7"
    assert op.variables[cv.OPERATOR] == "op7"
    assert op.variables[cv.QUEUE] == "sales"
    assert op.variables[cv.PRIORITY] == "10"
    assert op.variables[cv.WAIT] == "20"
    assert op.variables[cv.ANNOUNCE] == "callrouter/your-operator"
    sp = await call(srv, "2345678")
    assert sp.variables[cv.ACTION] == "specialist"
    assert sp.variables[cv.TARGET] == "PJSIP/sp1"
    assert sp.variables[cv.QUEUE] == "specialists"
    assert int(sp.variables[cv.WAIT]) > 0
    # the InboundCall the router saw
    seen = router.calls[0]
    assert seen.queue == "sales" and seen.caller_raw == "1234567"
    assert seen.uniqueid == "1795425059.1" and seen.channel == "PJSIP/trunk-00000001"
    assert seen.linkedid is None


async def test_wait_is_positive_whenever_target_is_set(server_for) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter(mode="zero_wait"))
    res = await call(srv, "1234567")
    assert res.variables[cv.TARGET] == "PJSIP/op7"
    assert int(res.variables[cv.WAIT]) > 0


async def test_values_msets_cannot_carry_go_by_set_variable(server_for) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter(mode="odd"))
    res = await call(srv, "1234567")
    assert res.variables[cv.OPERATOR] == 'op, "quoted" (x)'
    assert res.variables[cv.TARGET] == "PJSIP/op7&PJSIP/op8"
    assert res.variables[cv.WAIT] == "15"
    assert any(c.startswith("SET VARIABLE CALLROUTER_OPERATOR ") for c in res.commands)


async def test_empty_queue_argument_gets_default_queue(server_for) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter(), default_queue="general")
    res = await call(srv, "5551234", queue="")
    assert res.variables[cv.QUEUE] == "general"


async def test_slow_router_falls_back_within_budget(server_for) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter(mode="sleep", delay=10), budget=0.2)
    started = time.perf_counter()
    res = await call(srv, "1234567", queue="sales")
    assert time.perf_counter() - started < 2.0  # generous: the budget is 0.2 s
    assert res.variables[cv.ACTION] == "queue"
    assert res.variables[cv.QUEUE] == "sales"
    assert res.variables[cv.REASON] == "fallback_timeout"
    assert res.variables[cv.TARGET] == ""


async def test_router_ignoring_cancellation_cannot_hold_the_call(server_for) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter(mode="ignore_cancel", delay=5), budget=0.2)
    started = time.perf_counter()
    res = await call(srv, "1234567")
    assert time.perf_counter() - started < 2.0
    assert res.variables[cv.REASON] == "fallback_timeout"


async def test_router_that_raises_gives_fallback_queue(server_for) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter(mode="raise"))
    res = await call(srv, "1234567", queue="sales")
    assert res.variables[cv.ACTION] == "queue"
    assert res.variables[cv.QUEUE] == "sales"
    assert res.variables[cv.REASON] == "fallback_error"


@pytest.mark.parametrize(
    ("caller", "pres", "name"),
    [("anonymous", 35, "Anonymous"), (None, 67, None), (None, 0, None)],
)
async def test_withheld_env_passes_through(server_for, caller, pres, name) -> None:  # type: ignore[no-untyped-def]
    router = FakeRouter()
    srv = await server_for(router)
    res = await call(srv, caller, callingpres=pres, caller_name=name)
    assert res.agistatus == "SUCCESS"
    seen = router.calls[0]
    assert seen.caller_raw == (caller or "unknown")  # Asterisk says "unknown", never ""
    assert seen.callingpres == pres
    assert seen.caller_name == name


async def test_unknown_route_still_gets_normal_queue(server_for, caplog) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter())
    with caplog.at_level(logging.WARNING, logger="callrouter.fastagi"):
        res = await call(srv, "1234567", route="nope?x=1", queue="sales")
    assert res.variables[cv.ACTION] == "queue"
    assert res.variables[cv.QUEUE] == "sales"
    assert res.variables[cv.REASON] == "fallback_bad_input"
    assert "unknown AGI route" in caplog.text


async def test_route_query_is_ignored(server_for) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter())
    res = await call(srv, "1234567", route="route?site=a")
    assert res.variables[cv.ACTION] == "operator"


async def test_hangup_before_first_command_ends_quietly(server_for, caplog) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter(mode="sleep", delay=0.3), budget=1.0)
    with caplog.at_level(logging.INFO, logger="callrouter.fastagi"):
        res = await call(srv, "1234567", hangup_after=0.05)
    assert res.agistatus == "HANGUP"
    # Asterisk answers in dead mode; the server sent its one MSet and left
    assert len(res.commands) <= 1


async def test_exit_on_hangup_closes_socket_under_server(server_for, caplog) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter(mode="sleep", delay=0.3), budget=1.0)
    with caplog.at_level(logging.INFO, logger="callrouter.fastagi"):
        res = await call(srv, "1234567", hangup_after=0.05, exit_on_hangup=True)
        await asyncio.sleep(0.5)
    assert res.agistatus == "HANGUP"
    assert res.commands == []
    assert "Traceback" not in caplog.text
    assert srv.active == 0


async def test_unsafe_value_after_hangup_is_not_sent(server_for) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter(mode="odd"))
    res = await call(srv, "1234567", hangup_after=0.0)
    assert res.agistatus == "HANGUP"
    assert len(res.commands) == 1  # the MSet; the SET VARIABLEs were dropped


@pytest.mark.parametrize(
    "reply", [R_510, R_520_SET_VARIABLE, b"200 result=-2\n"], ids=["510", "520", "noapp"]
)
async def test_mset_refused_falls_back_to_set_variable(server_for, reply) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter())
    res = await call(srv, "1234567", exec_replies={"mset": reply})
    assert res.variables[cv.ACTION] == "operator"
    assert res.variables[cv.TARGET] == "PJSIP/op7"
    assert set(res.variables) == set(cv.ALL)
    assert sum(c.startswith("SET VARIABLE") for c in res.commands) == len(cv.ALL)


async def test_bad_clients_cost_only_their_own_connection(server_for) -> None:  # type: ignore[no-untyped-def]
    from callrouter.fastagi.server import FastAgiServer as _S  # noqa: F401

    srv = await server_for(FakeRouter(), max_sessions=1000)
    srv.env_timeout = 1.0
    kinds = ["silent", "half_header", "garbage", "oversized"]
    bad = [bad_client("127.0.0.1", srv.port, kinds[i % 4], hold=5.0) for i in range(300)]  # type: ignore[arg-type]
    good = [call(srv, f"1{i:06d}", uniqueid=f"1795425059.{i}") for i in range(60)]
    results = await asyncio.gather(*bad, *good)
    bad_outcomes, good_results = results[:300], results[300:]
    for res in good_results:
        assert res.agistatus == "SUCCESS"  # type: ignore[union-attr]
        assert res.variables[cv.ACTION] == "operator"  # type: ignore[union-attr]
    # every bad client was shown the door by the server, none held it open
    assert all(o == "closed" for o in bad_outcomes), bad_outcomes
    await asyncio.sleep(0.1)
    assert srv.active == 0


async def test_trickling_client_is_cut_at_the_env_timeout(server_for) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter())
    srv.env_timeout = 0.3
    started = time.perf_counter()
    assert await bad_client("127.0.0.1", srv.port, "trickle", hold=5.0) == "closed"
    assert time.perf_counter() - started < 3.0


async def test_sessions_over_the_cap_are_closed_at_once(server_for) -> None:  # type: ignore[no-untyped-def]
    srv = await server_for(FakeRouter(mode="sleep", delay=0.5), budget=1.0, max_sessions=2)
    results = await asyncio.gather(*(call(srv, "1234567") for _ in range(5)))
    routed = [r for r in results if r.variables]
    closed = [r for r in results if not r.variables]
    assert len(routed) >= 2
    # closed at once without a command: Asterisk says SUCCESS, ACTION stays empty, and the
    # dialplan sends the call to the normal queue
    assert all(r.agistatus == "SUCCESS" and r.commands == [] for r in closed)
