"""Routed calls/s and p50/p99 latency of the FastAGI route, with the classic AGI entry as the
baseline in the same run.

    uv run python bench/bench_fastagi.py --calls 5000 --concurrency 200 \
        [--router-factory module:callable] [--classic-calls 50]

The router factory (no arguments, may be async) builds the router to measure; the default is
an in-memory router that answers at once, which measures the adapter alone. The lead's
PostgreSQL large-history factory plugs in here.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.fastagi import build_server
from callrouter.fastagi.classic import load_factory
from callrouter.service.ports import DecisionRecord, InboundCall
from callrouter.simulator.agi import ChannelModel, environment_block, run_call

ROOT = Path(__file__).resolve().parents[1]


class InstantRouter:
    async def route_call(self, call: InboundCall, now: datetime | None = None) -> DecisionRecord:
        return self.fallback(call, ReasonCode.NEW_CALLER, "bench")

    def fallback(self, call: InboundCall, code: ReasonCode, text: str) -> DecisionRecord:
        d = Decision(action=Action.QUEUE, queue=call.queue, priority=0,
                     reasons=(Reason(code, text),))
        return DecisionRecord(id=str(uuid.uuid4()), decided_at=datetime.now(UTC),
                              caller_raw=call.caller_raw, caller_number=None, queue=call.queue,
                              decision=d, latency_ms=0.0)


def make_instant_router() -> InstantRouter:
    return InstantRouter()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def bench_fastagi(factory_spec: str, calls: int, concurrency: int) -> None:
    router = load_factory(factory_spec)()
    if inspect.isawaitable(router):
        router = await router
    srv = await build_server(router, port=0, max_sessions=concurrency * 2).start()
    latencies: list[float] = []
    fallbacks = 0
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        nonlocal fallbacks
        async with sem:
            res = await run_call("127.0.0.1", srv.port, caller=f"+7912{i % 100_000:07d}",
                                 queue="support", uniqueid=f"1795425059.{i}")
        latencies.append(res.seconds * 1000)
        if res.variables.get("CALLROUTER_REASON", "").startswith("fallback"):
            fallbacks += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    elapsed = time.perf_counter() - started
    await srv.close()
    print(f"fastagi  calls={calls} concurrency={concurrency} rate={calls / elapsed:8.1f}/s "
          f"p50={pct(latencies, 50):6.2f} ms p99={pct(latencies, 99):6.2f} ms "
          f"fallbacks={fallbacks}  (simulator and server share one process and core)")


def bench_classic(factory_spec: str, calls: int) -> float:
    env = dict(os.environ, CALLROUTER_AGI_ROUTER=factory_spec,
               PYTHONPATH=os.pathsep.join([str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")]))
    latencies = []
    started = time.perf_counter()
    for i in range(calls):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(ROOT / "agi" / "callrouter-route.agi")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert proc.stdin and proc.stdout
        proc.stdin.write(b"".join(environment_block(network=False, caller=f"+7912{i:07d}",
                                                    args=["support"])))
        proc.stdin.flush()
        model = ChannelModel()
        while line := proc.stdout.readline():
            proc.stdin.write(model.answer(line.rstrip(b"\n")))
            proc.stdin.flush()
        proc.stdin.close()
        proc.wait()
        latencies.append((time.perf_counter() - t0) * 1000)
    rate = calls / (time.perf_counter() - started)
    print(f"classic  calls={calls} concurrency=1 rate={rate:8.1f}/s "
          f"p50={pct(latencies, 50):6.2f} ms p99={pct(latencies, 99):6.2f} ms")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--classic-calls", type=int, default=30)
    ap.add_argument("--router-factory", default="bench_fastagi:make_instant_router")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    asyncio.run(bench_fastagi(args.router_factory, args.calls, args.concurrency))
    if args.classic_calls:
        bench_classic(args.router_factory, args.classic_calls)


if __name__ == "__main__":
    main()
