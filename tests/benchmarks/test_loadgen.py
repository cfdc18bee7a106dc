"""The C load generator of the FastAGI bench (``bench/loadgen.c``) against the real FastAGI
server (in-process, fake router): every call gets its MSet, late starts and failures are
counted, and it never hangs on a dead or silent daemon. Skipped without a C compiler."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench import loadgen
from callrouter.fastagi import FastAgiServer, build_server
from callrouter.simulator.agi import environment_block
from tests.fastagi.fastagi_fakes import FakeRouter
from tests.silent import silent_server

pytestmark = pytest.mark.skipif(not loadgen.available(), reason="no C compiler")

# FakeRouter: 1xx -> operator, 2xx -> specialist, anything else -> queue
CALLERS = ["1234567", "2345678", "5551234", None, "1000001"] * 10
EXPECTED = {"1234567": "operator", "2345678": "specialist", "5551234": "queue",
            None: "queue", "1000001": "operator"}


@pytest.fixture(scope="module")
def exe() -> Path:
    return loadgen.build()  # compiled once for the module (and cached by source hash)


@pytest.fixture
async def server() -> AsyncIterator[FastAgiServer]:
    srv = await build_server(FakeRouter(), port=0).start()
    yield srv
    await srv.close()


def blocks(port: int, callers: list[str | None] = CALLERS) -> list[bytes]:
    return [b"".join(environment_block(port=port, caller=c, uniqueid=f"1795425059.{i}",
                                       channel=f"PJSIP/trunk-{i:08x}", args=["support"]))
            for i, c in enumerate(callers)]


def action(mset: bytes) -> str:
    m = loadgen.ACTION.search(mset)
    assert m, mset
    return m.group(1).decode()


def free_port() -> int:
    """A port nobody listens on (bound, then closed without listen)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_build_is_cached_by_source(exe: Path) -> None:
    assert exe.is_file() and loadgen.build() == exe


async def test_paced_calls_each_get_their_decision(server: FastAgiServer, exe: Path) -> None:
    run = await loadgen.paced(server.port, blocks(server.port), sessions=20, rate=400.0,
                              exe=exe)
    assert [c.status for c in run.calls] == ["ok"] * len(CALLERS)
    assert [action(c.mset) for c in run.calls] == [EXPECTED[c] for c in CALLERS]
    assert all(c.mset.count(b"CALLROUTER_") == 9 for c in run.calls)
    assert all(c.latency_ms is not None and 0 < c.latency_ms < 5000 for c in run.calls)
    assert all(c.lag_ms >= 0 for c in run.calls)
    assert all(c.other_commands == 0 for c in run.calls)  # one MSet, nothing else
    # 50 Poisson arrivals at 400/s arrive over 0.125 s (the 0.05 s lead is not counted)
    assert 0.1 < run.wall_seconds < 5
    assert 0 <= run.cpu_seconds < run.wall_seconds + 1  # tick-based accounting may say 0
    assert 1 <= run.max_in_flight <= 20
    out = run.fill(Result())
    assert out.generator_own_lag_ms is not None and len(out.latencies_ms) == len(CALLERS)


async def test_closed_loop_fills_the_bench_result(server: FastAgiServer, exe: Path) -> None:
    run = await loadgen.closed(server.port, blocks(server.port), sessions=8, exe=exe)
    assert run.failures == 0 and run.max_in_flight == 8
    out = run.fill(Result())
    assert len(out.latencies_ms) == len(CALLERS) and out.failures == 0
    assert out.actions == {"operator": 20, "specialist": 10, "queue": 20}
    assert out.reasons["new_caller"] == 20 and out.reasons["sticky_available"] == 20
    assert out.start_lag_ms == []  # closed loop: no arrival times
    assert out.generator_cpu_seconds == run.cpu_seconds and out.seconds == run.wall_seconds
    assert out.generator_own_lag_ms is None  # paced only


async def test_calls_that_find_every_session_busy_start_late(exe: Path) -> None:
    srv = await build_server(FakeRouter(mode="sleep", delay=0.05), port=0).start()
    try:
        run = await loadgen.paced(srv.port, blocks(srv.port)[:20], sessions=2, rate=200.0,
                                  exe=exe)
    finally:
        await srv.close()
    assert run.failures == 0
    assert run.max_in_flight == 2
    late = [c for c in run.calls if c.late]
    # 2 sessions of ~50 ms calls carry 40/s; 200/s arrive
    assert len(late) >= 10 and all(c.lag_ms > 0 for c in late)
    assert all(c.latency_ms and c.latency_ms >= 50 for c in run.calls)


async def test_other_commands_are_answered_and_counted(exe: Path) -> None:
    # values MSet cannot carry (the operator id and the interface) go in SET VARIABLEs,
    # answered 200 result=1; the MSet carries the rest
    srv = await build_server(FakeRouter(mode="odd"), port=0).start()
    try:
        run = await loadgen.closed(srv.port, blocks(srv.port)[:5], sessions=5, exe=exe)
    finally:
        await srv.close()
    assert run.failures == 0
    assert all(c.other_commands == 2 for c in run.calls)
    assert all(action(c.mset) == "operator" for c in run.calls)
    assert all(b"CALLROUTER_OPERATOR" not in c.mset and b"CALLROUTER_TARGET" not in c.mset
               for c in run.calls)


async def test_refused_connection_is_a_failure_not_a_hang(exe: Path) -> None:
    port = free_port()
    t0 = time.perf_counter()
    run = await asyncio.wait_for(
        loadgen.paced(port, blocks(port)[:10], sessions=4, rate=500.0, exe=exe), 10)
    assert time.perf_counter() - t0 < 5
    assert [c.status for c in run.calls] == ["refused"] * 10
    assert run.failures == 10 and all(c.latency_ms is None for c in run.calls)
    assert run.fill(Result()).latencies_ms == []


async def test_silent_daemon_times_out(exe: Path) -> None:
    """A daemon that accepts and never answers nor closes: each call fails after -t."""
    async with silent_server() as (port, _):
        t0 = time.perf_counter()
        run = await asyncio.wait_for(
            loadgen.closed(port, blocks(port)[:4], sessions=2, timeout=0.3, exe=exe), 10)
        assert 0.5 < time.perf_counter() - t0 < 5  # two rounds of 0.3 s
    assert [c.status for c in run.calls] == ["timeout"] * 4


class Result:
    """The fields of bench_fastagi.LoadResult that ``Run.fill`` sets."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.seconds = 0.0
        self.actions: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.failures = 0
        self.start_lag_ms: list[float] = []
        self.max_in_flight = 0
        self.generator_cpu_seconds: float | None = None
        self.generator_own_lag_ms: tuple[float, float, float] | None = None
        self.spans: list[tuple[float, float]] = []
        self.decided_ms: list[float] = []


async def test_floor_run_drives_the_null_responder(exe: Path) -> None:
    """bench/nullagi.c answers every call with its one MSet, whatever the caller."""
    run = await loadgen.floor(blocks(0), sessions=10, rate=300.0)
    assert [c.status for c in run.calls] == ["ok"] * len(CALLERS)
    assert {action(c.mset) for c in run.calls} == {"queue"}
    assert all(c.mset.count(b"CALLROUTER_") == 9 for c in run.calls)
    assert all(c.latency_ms is not None and c.latency_ms < 5000 for c in run.calls)
    assert loadgen.build(loadgen.NULLAGI).name.startswith("nullagi-")


async def test_null_responder_drops_a_client_that_never_ends_its_block() -> None:
    responder = await asyncio.to_thread(loadgen.build, loadgen.NULLAGI)
    proc = await asyncio.create_subprocess_exec(str(responder), stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        port = int((await proc.stdout.readline()).split()[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"agi_request: x\n" * 2000)  # 30 kB and no empty line: over its buffer
        try:  # closed with bytes unread: a reset, or an EOF if it came first
            got = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            got = b""
        assert got == b""  # nothing sent
        writer.close()
        # and it still serves the next call
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"agi_request: agi://x/route\n\n")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"EXEC MSet ")
        writer.write(b"200 result=0\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        proc.terminate()
        await proc.wait()


async def test_a_late_reply_keeps_sessions_open_and_the_decision_time_apart(
        server: FastAgiServer, exe: Path) -> None:
    """-d: Asterisk's reply to the MSet comes 80 ms late. Each call then lasts at least
    that, many are open at once, and the time to the decision stays the daemon's."""
    run = await loadgen.paced(server.port, blocks(server.port), sessions=100, rate=400.0,
                              exe=exe, reply_delay_ms=80.0)
    assert [c.status for c in run.calls] == ["ok"] * len(CALLERS)
    assert [action(c.mset) for c in run.calls] == [EXPECTED[c] for c in CALLERS]
    for c in run.calls:
        assert c.latency_ms is not None and c.decided_ms is not None
        assert c.latency_ms >= 80.0 > c.decided_ms > 0
    # 50 calls over 0.125 s, each open >= 80 ms: most of them at once
    assert run.max_in_flight >= 15
    out = run.fill(Result())
    assert len(out.decided_ms) == len(CALLERS)


async def test_without_delay_the_decision_time_is_inside_the_call(
        server: FastAgiServer, exe: Path) -> None:
    run = await loadgen.paced(server.port, blocks(server.port)[:10], sessions=5, rate=200.0,
                              exe=exe)
    assert all(c.decided_ms is not None and c.latency_ms is not None
               and 0 < c.decided_ms <= c.latency_ms for c in run.calls)
    with pytest.raises(ValueError):
        await loadgen.run(server.port, blocks(server.port)[:1], mode="closed", exe=exe,
                          reply_delay_ms=-1)
