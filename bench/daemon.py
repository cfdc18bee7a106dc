"""The daemon side of the FastAGI benchmark: ``build_runtime`` on the bench database, in its
own process, driven over a multiprocessing pipe; and the classic entry's router factory.

Protocol on the pipe: the daemon sends ``{"port": N}`` once listening; for each measured
phase the parent sends ``"start"`` (CPU time and, the first time, the optional profiler
start) and ``"stop"`` (the daemon drains its decision writer and sends its figures);
``"exit"`` closes the runtime.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import logging
import os
import pstats
import random
import statistics
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from callrouter.domain.model import Operator, OperatorState
from callrouter.domain.reasons import ReasonCode
from callrouter.domain.rules import Rules
from callrouter.fastagi.handler import SessionObserver
from callrouter.numbers import NumberNormaliser
from callrouter.service.decision_writer import DecisionWriter
from callrouter.service.ports import DecisionRecord, InboundCall
from callrouter.service.routing import RoutingService
from callrouter.store import Store, make_engine, make_sessionmaker

if TYPE_CHECKING:
    from callrouter.app import Runtime
    from callrouter.config.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as `callrouter serve`
DB_URL_ENV = "CALLROUTER_BENCH_DB_URL"


class BenchPresence:
    """Live operator states as an AMI listener would report them: most available, some in a
    call, a few paused (fixed seed). The states are built once, like a presence map kept up
    to date by events."""

    def __init__(self, operator_ids: list[str], seed: int = 7) -> None:
        rng = random.Random(seed)
        pick = [OperatorState.AVAILABLE] * 7 + [OperatorState.IN_CALL] * 2 + [
            OperatorState.PAUSED
        ]
        self._states = {op: rng.choice(pick) for op in operator_ids}

    def states(self) -> Mapping[str, OperatorState]:
        return self._states


def engine_options() -> dict[str, Any]:
    """``CALLROUTER_BENCH_ENGINE="pool_size=40,max_overflow=0,pool_pre_ping=false"``."""
    out: dict[str, Any] = {}
    for item in filter(None, os.environ.get("CALLROUTER_BENCH_ENGINE", "").split(",")):
        key, _, value = item.partition("=")
        low = value.strip().lower()
        out[key.strip()] = (low == "true") if low in ("true", "false") else int(value)
    return out


def bench_settings(url: str, max_sessions: int = 1000) -> Settings:
    from callrouter.config.settings import DatabaseSettings, FastAgiSettings, Settings

    linger = os.environ.get("CALLROUTER_BENCH_LINGER_MS")  # what-if: decision batch linger
    extra = {"decision_linger_ms": int(linger)} if linger else {}
    slots = os.environ.get("CALLROUTER_BENCH_SNAPSHOT_STATEMENTS")  # what-if: read slots
    db_extra: dict[str, Any] = {"snapshot_statements": int(slots)} if slots else {}
    replica = os.environ.get("CALLROUTER_BENCH_STATE_REPLICA")  # what-if: "0" reads the db
    if replica is not None:
        db_extra["state_replica"] = replica == "1"
    return Settings(
        database=DatabaseSettings(url=url, **db_extra),
        fastagi=FastAgiSettings(host="127.0.0.1", port=0, max_sessions=max_sessions, **extra),
    )


async def build_bench_runtime(url: str, *, with_fastagi: bool, max_sessions: int = 1000) -> (
    Runtime
):
    """The runtime ``callrouter serve`` builds (no HTTP, no AMI) with bench presence."""
    import callrouter.app
    from callrouter.app import build_runtime
    from callrouter.config.rules_holder import RulesHolder

    options = engine_options()
    if options:  # a what-if: the engine the composition root would build with these options
        make = callrouter.app.make_engine
        callrouter.app.make_engine = lambda url, **kw: make(url, **{**options, **kw})  # type: ignore[assignment]
    runtime = await build_runtime(bench_settings(url, max_sessions), RulesHolder(),
                                  with_fastagi=with_fastagi, with_ami=False, with_api=False)
    if runtime.replica is not None and not await runtime.replica.wait_live(120):
        raise RuntimeError(f"the routing-state replica did not go live: {runtime.replica.status}")
    operators = await runtime.directory.operators()
    # No AMI in the bench: give the service the live states an AMI listener would hold.
    runtime.service._presence = BenchPresence(sorted(operators))
    return runtime


def daemon_process(url: str, conn: Connection, *, max_sessions: int, profile: str | None,
                   log_path: str, log_level: str) -> None:
    """Entry point of the daemon process (multiprocessing, spawn)."""
    logging.basicConfig(level=log_level, format=LOG_FORMAT, filename=log_path)
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        asyncio.run(_daemon(url, conn, max_sessions, profile))
    else:
        if os.environ.get("CALLROUTER_BENCH_UVLOOP", "1") == "1":
            uvloop.run(_daemon(url, conn, max_sessions, profile))
        else:
            asyncio.run(_daemon(url, conn, max_sessions, profile))


async def _daemon(url: str, conn: Connection, max_sessions: int, profile: str | None) -> None:
    runtime = await build_bench_runtime(url, with_fastagi=True, max_sessions=max_sessions)
    from callrouter.app import settle_heap

    settle_heap()  # as `callrouter serve` does once built
    sessions = _SessionTimes(runtime.fastagi.observer)  # and on to the metrics, as served
    runtime.fastagi.observer = sessions
    reads = _TimedSnapshots(runtime.service._snapshots)
    runtime.service._snapshots = reads
    gc_pauses = _GcPauses()
    conn.send({"port": runtime.fastagi.port, "loop": type(asyncio.get_running_loop()).__module__})
    profiled = False
    while (command := await asyncio.to_thread(conn.recv)) == "start":
        # one measured phase: CPU from "start" to "stop", the writer drained inside it
        # CPU time, not wall time: on a shared machine wall time charges whatever function
        # happened to run when the scheduler switched to PostgreSQL or the load generator
        profiler = cProfile.Profile(time.process_time) if profile and not profiled else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        written0 = runtime.writer.written
        sessions.clear()
        reads.times.clear()
        statements0 = getattr(runtime.hot, "statements", 0)
        replica = runtime.replica.status if runtime.replica is not None else None
        served0 = replica.served if replica else 0
        asked0 = replica.asked_database if replica else 0
        notified0 = replica.notifications if replica else 0
        gc_pauses.clear()
        if profiler:
            profiler.enable()
        assert await asyncio.to_thread(conn.recv) == "stop"
        pending = runtime.writer.pending
        t_stop = time.perf_counter()
        try:
            await runtime.writer.flush(timeout=300)
        except TimeoutError:
            pass  # reported: the backlog left is in the figures
        drain = time.perf_counter() - t_stop
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        figures: dict[str, Any] = {
            "cpu_seconds": cpu, "wall_seconds": wall, "writer_pending_at_stop": pending,
            "writer_drain_seconds": drain, "written": runtime.writer.written - written0,
            "left_unwritten": runtime.writer.pending, "dropped": runtime.writer.dropped,
            "write_failures": runtime.writer.failures,
            "session_ms": sessions.percentiles(),
            "session_spans": list(sessions.spans),
            "snapshot_ms": percentiles(reads.times),
            "snapshot_statements": getattr(runtime.hot, "statements", 0) - statements0,
            "snapshot_reads": len(reads.times),
            "gc": gc_pauses.figures(),
        }
        if replica is not None:
            figures["replica"] = {
                "state": replica.state, "served": replica.served - served0,
                "asked_database": replica.asked_database - asked0,
                "notifications": replica.notifications - notified0,
                "callers": replica.callers, "calls": replica.calls,
                "load_seconds": replica.load_seconds,
            }
        if profiler and profile:
            profiled = True
            profiler.dump_stats(profile)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            figures["profile_top"] = out.getvalue()
        conn.send(figures)
    assert command == "exit", command
    await runtime.close()


class _GcPauses:
    """Garbage collections during a phase: how many per generation and the longest pause
    (a collection stops the event loop, so its length is added to every call in flight)."""

    def __init__(self) -> None:
        import gc

        self._started = 0.0
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append((time.perf_counter() - self._started) * 1e3)

    def clear(self) -> None:
        for pauses in self.pauses.values():
            pauses.clear()

    def figures(self) -> dict[str, Any]:
        return {f"gen{g}": {"count": len(p), "max_ms": max(p, default=0.0),
                            "total_ms": sum(p)} for g, p in self.pauses.items()}


class _SessionTimes(SessionObserver):
    """The daemon's own view of each session: from the accepted connection to the handler's
    end (what the load generator sees, less the kernel's accept queue and its own delays)."""

    def __init__(self, inner: SessionObserver) -> None:
        self.inner = inner  # the runtime's own observer (the metrics): still called
        self.times: list[float] = []
        self.spans: list[tuple[float, float]] = []  # (accepted, closed), perf_counter s

    def clear(self) -> None:
        self.times.clear()
        self.spans.clear()

    def session_end(self, route: str, outcome: str, seconds: float) -> None:
        self.inner.session_end(route, outcome, seconds)
        self.times.append(seconds * 1000.0)
        now = time.perf_counter()
        self.spans.append((now - seconds, now))

    def rejected(self, why: str) -> None:
        self.inner.rejected(why)

    def percentiles(self) -> dict[str, float]:
        return percentiles(self.times)


def percentiles(times: list[float]) -> dict[str, float]:
    if len(times) < 2:
        return {}
    q = statistics.quantiles(times, n=1000)
    return {"p50": q[499], "p99": q[989], "p99.9": q[998], "max": max(times)}


class _TimedSnapshots:
    """The routing's snapshot source, timed: how long each call waited for its caller's
    history (its statement slot, the database, the batch it rode in)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.times: list[float] = []

    async def snapshot(self, number: str, now: datetime, lookback_seconds: int) -> Any:
        started = time.perf_counter()
        try:
            return await self._inner.snapshot(number, now, lookback_seconds)
        finally:
            self.times.append((time.perf_counter() - started) * 1000.0)


class ClassicRouter:
    """The classic entry's router: the same RoutingService on the same database, built in
    each process (as ``callrouter-route.agi`` does per call) from the store alone — the
    composition root's imports (HTTP, AMI, metrics) would only add start-up time — and
    closed with its decision written."""

    def __init__(self, service: RoutingService, writer: DecisionWriter, engine: Any) -> None:
        self._service = service
        self._writer = writer
        self._engine = engine

    async def route_call(self, call: InboundCall, now: datetime | None = None, *,
                         wanted: Callable[[], bool] | None = None) -> DecisionRecord:
        return await self._service.route_call(call, now, wanted=wanted)

    def fallback(self, call: InboundCall, code: ReasonCode, text: str) -> DecisionRecord:
        return self._service.fallback(call, code, text)

    async def aclose(self) -> None:
        await self._writer.close()
        await self._engine.dispose()


class _Directory:
    def __init__(self, operators: Mapping[str, Operator]) -> None:
        self._operators = operators

    async def operators(self) -> Mapping[str, Operator]:
        return self._operators


async def make_classic_router() -> ClassicRouter:
    """``CALLROUTER_AGI_ROUTER=daemon:make_classic_router`` (with bench/ on PYTHONPATH)."""
    engine = make_engine(os.environ[DB_URL_ENV])
    store = Store(make_sessionmaker(engine))
    operators = await store.operators()
    writer = DecisionWriter(store)
    writer.start()
    rules = Rules()
    service = RoutingService(
        rules=lambda: rules, numbers=NumberNormaliser("RU"), snapshots=store,
        directory=_Directory(operators), presence=BenchPresence(sorted(operators)),
        incidents=store, writer=writer,
    )
    return ClassicRouter(service, writer, engine)
