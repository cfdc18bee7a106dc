"""The FastAGI session's state machine and the sans-IO pieces it shares with ``AgiChannel``.

The wire facts come from the Asterisk 22 traces (``../shared/asterisk``): LF-only lines,
``HANGUP`` before a reply, ``520-`` usage blocks that contain ``200 result=1``, ``511`` on
a dead channel.
"""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from callrouter import channel_vars as cv
from callrouter.fastagi import FastAgiServer, build_server
from callrouter.fastagi.protocol import (
    AgiEndOfStream,
    AgiHangup,
    AgiProtocolError,
    ReplyReader,
    VariableSetter,
    environment_from_block,
    parse_reply_line,
    unfinished_block,
)
from callrouter.simulator.agi import R_520_SET_VARIABLE, environment_block, run_call

from .fastagi_fakes import FakeRouter

# -- sans-IO: replies ---------------------------------------------------------------------


def feed_all(reader: ReplyReader, data: bytes) -> list[object]:
    return [r for line in data.decode().split("\n")[:-1] if (r := reader.feed(line))]


def test_reply_reader_keeps_a_520_block_whole() -> None:
    reader = ReplyReader()
    replies = feed_all(reader, R_520_SET_VARIABLE)
    assert len(replies) == 1
    reply = replies[0]
    assert reply.code == 520  # type: ignore[attr-defined]
    # the usage text quotes "200 result=1" lines: they are part of the block, not replies
    assert reply.lines[-1].startswith("520 ")  # type: ignore[attr-defined]


def test_reply_reader_hangup_line_then_reply() -> None:
    reader = ReplyReader()
    assert reader.feed("HANGUP") is None
    assert reader.hungup
    reply = reader.feed("200 result=0")
    assert reply is not None and reply.ok and reply.result == 0


def test_reply_reader_refuses_garbage_and_endless_blocks() -> None:
    with pytest.raises(AgiProtocolError):
        ReplyReader().feed("hello there")
    reader = ReplyReader()
    reader.feed("520-Invalid command syntax.  Proper usage follows:")
    with pytest.raises(AgiProtocolError, match="does not end"):
        for _ in range(100):
            reader.feed("200 result=1 looks like a reply but is usage text")


# -- sans-IO: setting variables ------------------------------------------------------------

SAFE = {cv.ACTION: "operator", cv.TARGET: "PJSIP/op7", cv.WAIT: "20"}


def test_safe_values_take_one_mset() -> None:
    setter = VariableSetter(SAFE)
    first = setter.first()
    assert first == 'EXEC MSet "CALLROUTER_ACTION=operator,CALLROUTER_TARGET=PJSIP/op7,' \
                    'CALLROUTER_WAIT=20"'
    assert setter.next(parse_reply_line("200 result=0"), hungup=False) is None
    assert setter.trips == 1


def test_unsafe_value_gets_its_own_set_variable() -> None:
    setter = VariableSetter({**SAFE, cv.OPERATOR: 'op, "x"'})
    assert (setter.first() or "").startswith("EXEC MSet ")
    second = setter.next(parse_reply_line("200 result=0"), hungup=False)
    assert second == 'SET VARIABLE CALLROUTER_OPERATOR "op, \\"x\\""'
    assert setter.next(parse_reply_line("200 result=1"), hungup=False) is None
    assert setter.trips == 2


@pytest.mark.parametrize("refusal", ["510 Invalid or unknown command", "200 result=-2"])
def test_refused_mset_sets_every_variable_one_by_one(refusal: str) -> None:
    setter = VariableSetter(SAFE)
    setter.first()
    sent = []
    command = setter.next(parse_reply_line(refusal), hungup=False)
    while command is not None:
        sent.append(command)
        command = setter.next(parse_reply_line("200 result=1"), hungup=False)
    assert [c.split()[2] for c in sent] == list(SAFE)
    assert setter.trips == 1 + len(SAFE)


def test_no_set_variable_after_hangup() -> None:
    setter = VariableSetter({**SAFE, cv.OPERATOR: "a,b"})
    setter.first()
    with pytest.raises(AgiHangup):
        setter.next(parse_reply_line("200 result=0"), hungup=True)


# -- sans-IO: the environment block --------------------------------------------------------


def test_environment_from_block_as_asterisk_sends_it() -> None:
    raw = b"".join(environment_block(port=4573, caller="+79123456789", args=["support"]))
    env = environment_from_block(raw)
    assert env.route == "route"
    assert env.callerid == "+79123456789"
    assert env.arg(1) == "support"


@pytest.mark.parametrize(("raw", "error"), [
    (b"\n\n", "empty environment block"),
    (b"agi_request: x\nnot a line\n\n", "not an AGI environment line"),
    (b"agi_request: " + b"x" * 2000 + b"\n\n", "exceeds 1024"),
])
def test_environment_from_block_refuses(raw: bytes, error: str) -> None:
    with pytest.raises(AgiProtocolError, match=error):
        environment_from_block(raw)


def test_hangup_inside_or_at_the_end_of_an_unfinished_block() -> None:
    with pytest.raises(AgiHangup):
        environment_from_block(b"agi_request: x\nHANGUP\n\n")
    assert isinstance(unfinished_block(b"agi_request: x\nHANGUP\n"), AgiHangup)
    assert isinstance(unfinished_block(b"agi_request: x\n"), AgiEndOfStream)


# -- the session over TCP ------------------------------------------------------------------


class Outcomes:
    def __init__(self) -> None:
        self.ends: list[tuple[str, str]] = []
        self.decisions = 0

    def decision(self, record: object, seconds: float, fallback: object) -> None:
        self.decisions += 1

    def session_end(self, route: str, outcome: str, seconds: float) -> None:
        self.ends.append((route, outcome))

    def rejected(self, why: str) -> None:
        self.ends.append(("-", why))


async def start(router: FakeRouter, **kw: object) -> tuple[FastAgiServer, Outcomes]:
    seen = Outcomes()
    srv = await build_server(router, port=0, observer=seen, **kw).start()  # type: ignore[arg-type]
    return srv, seen


async def raw_session(port: int, send: bytes, *, read_until_close: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(send)
    await writer.drain()
    got = b""
    try:
        async with asyncio.timeout(read_until_close):
            while chunk := await reader.read(65536):
                got += chunk
                if got.endswith(b"\n") and b"EXEC MSet" in got:
                    writer.write(b"200 result=0\n")
                    await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    writer.close()
    return got


async def test_env_block_split_across_many_segments() -> None:
    srv, seen = await start(FakeRouter())
    try:
        raw = b"".join(environment_block(port=srv.port, caller="1234567", args=["support"]))
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        for i in range(0, len(raw), 7):  # the block's "\n\n" falls across two segments too
            writer.write(raw[i:i + 7])
            await writer.drain()
            await asyncio.sleep(0)
        line = await asyncio.wait_for(reader.readline(), 2.0)
        assert line.startswith(b"EXEC MSet ") and b"CALLROUTER_ACTION=operator" in line
        writer.write(b"200 result=0\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 2.0) == b""  # the daemon hung up
        writer.close()
        await asyncio.sleep(0.05)
        assert seen.ends == [("route", "ok")]
        assert seen.decisions == 1
    finally:
        await srv.close()


async def test_hangup_line_while_routing_is_kept_for_the_reply() -> None:
    """Asterisk writes ``HANGUP`` as soon as the caller hangs up, possibly while the daemon
    is still deciding; the line must not be taken for the reply to the MSet."""
    srv, seen = await start(FakeRouter(mode="sleep", delay=0.2), budget=1.0)
    try:
        raw = b"".join(environment_block(port=srv.port, caller="1234567", args=["support"]))
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(raw + b"HANGUP\n")
        line = await asyncio.wait_for(reader.readline(), 2.0)
        assert line.startswith(b"EXEC MSet ")
        writer.write(b"511 Command Not Permitted on a dead channel or intercept routine\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 2.0) == b""
        writer.close()
        await asyncio.sleep(0.05)
        assert seen.ends == [("route", "hangup")]
        assert seen.decisions == 0
    finally:
        await srv.close()


async def test_flood_after_the_env_block_drops_only_that_session() -> None:
    srv, seen = await start(FakeRouter(mode="sleep", delay=0.3), budget=1.0,
                            max_sessions=100)
    try:
        raw = b"".join(environment_block(port=srv.port, caller="1234567", args=["support"]))
        flood = raw_session(srv.port, raw + b"x" * (srv.max_pending + 10))
        good = run_call("127.0.0.1", srv.port, caller="1234567", queue="support")
        got, res = await asyncio.gather(flood, good)
        assert b"EXEC MSet" not in got  # cut before it was answered
        assert res.variables[cv.ACTION] == "operator"
        assert ("route", "bad_client") in seen.ends and ("route", "ok") in seen.ends
    finally:
        await srv.close()


async def test_closing_the_server_abandons_routings_in_flight(caplog) -> None:  # type: ignore[no-untyped-def]
    router = FakeRouter(mode="sleep", delay=30.0)
    srv, seen = await start(router, budget=20.0)
    raw = b"".join(environment_block(port=srv.port, caller="1234567", args=["support"]))
    session = asyncio.ensure_future(raw_session(srv.port, raw, read_until_close=5.0))
    for _ in range(300):  # until the routing started
        if router.calls:
            break
        await asyncio.sleep(0.01)
    assert router.calls
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(srv.close(), 3.0)
    assert await asyncio.wait_for(session, 3.0) == b""  # closed without a command
    assert seen.ends == [("route", "closed")]
    assert srv.active == 0
    await asyncio.sleep(0.05)
    tasks = [t for t in asyncio.all_tasks() if "route_call" in repr(t.get_coro())]
    assert tasks == []  # the routing was cancelled, not left sleeping
    assert "Task exception was never retrieved" not in caplog.text


async def test_route_that_raises_closes_with_error_and_no_command(caplog) -> None:  # type: ignore[no-untyped-def]
    srv, seen = await start(FakeRouter())

    def broken(env: object, peer: object, answer: object) -> None:
        raise RuntimeError("bug in a route")

    srv.routes["route"] = broken  # type: ignore[assignment]
    try:
        raw = b"".join(environment_block(port=srv.port, caller="1234567", args=["support"]))
        with caplog.at_level(logging.ERROR, logger="callrouter.fastagi"):
            got = await raw_session(srv.port, raw)
        assert got == b""  # no variables: the dialplan sends the call to the normal queue
        assert seen.ends == [("route", "error")]
        assert "bug in a route" in caplog.text
    finally:
        await srv.close()


async def test_a_route_that_never_answers_is_abandoned_at_the_session_deadline() -> None:
    srv, seen = await start(FakeRouter())
    srv.session_timeout = 0.3
    abandoned: list[bool] = []

    def silent(env: object, peer: object, answer: object) -> object:
        return lambda: abandoned.append(True)  # never calls answer

    srv.routes["route"] = silent  # type: ignore[assignment]
    try:
        raw = b"".join(environment_block(port=srv.port, caller="1234567", args=["support"]))
        got = await raw_session(srv.port, raw, read_until_close=3.0)
        assert got == b""  # closed without a command: the dialplan's normal queue
        assert seen.ends == [("route", "bad_client")]
        assert abandoned == [True]
    finally:
        await srv.close()


async def test_a_finished_session_is_freed_without_the_garbage_collector() -> None:
    """Sessions and their routings are freed by reference counting as soon as they end.
    A cycle (the timer's callback, the route's abandon holding the session's answer, the
    transport) left ~25 objects a call to the collector, which at 1,500 calls/s reached
    the old generations and made full collections of 20 ms."""
    from callrouter.fastagi.handler import _Pending
    from callrouter.fastagi.session import AgiSessionProtocol

    def alive() -> int:
        return sum(isinstance(o, (AgiSessionProtocol, _Pending)) for o in gc.get_objects())

    srv, seen = await start(FakeRouter())
    try:
        gc.collect()
        gc.disable()
        results = await asyncio.gather(*(
            run_call("127.0.0.1", srv.port, caller=f"1{i:06d}", queue="support")
            for i in range(20)))
        assert all(r.variables[cv.ACTION] == "operator" for r in results)
        await asyncio.sleep(0.05)  # the transports' close callbacks
        assert len(seen.ends) == 20
        assert alive() == 0
    finally:
        gc.enable()
        await srv.close()
