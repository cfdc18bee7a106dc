"""Benchmark: Store.snapshot() against PostgreSQL with 1,000,000 calls / 100,000 callers.

Not a test (pytest does not collect it). Run:

    uv run python -m tests.store.bench_snapshot [--calls 1000000] [--callers 100000]

Creates a throw-away database next to CALLROUTER_TEST_PG_DSN's, seeded by ``bench/seed.py``
(SQL generate_series, 2,000 operators), and prints snapshot latency percentiles next to a
baseline measured in the same run: one ``SELECT 1`` in a Store transaction (the floor:
pool checkout, BEGIN, round trip, COMMIT). Prints the query plans so a missing index shows.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.seed import bench_database, caller_number
from callrouter.store import Store, make_engine, make_sessionmaker


async def _measure(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _report(label: str, ms: list[float]) -> None:
    q = statistics.quantiles(ms, n=100)
    print(f"{label:>28}: p50 {q[49]:6.2f} ms  p95 {q[94]:6.2f} ms  p99 {q[98]:6.2f} ms")


async def main(calls: int, callers: int, samples: int, operators: int = 2000) -> None:
    async with bench_database(calls=calls, callers=callers, operators=operators) as db:
        engine = make_engine(db.url)
        try:
            await _bench(engine, callers, samples)
        finally:
            await engine.dispose()


async def _bench(engine: AsyncEngine, callers: int, samples: int) -> None:
    store = Store(make_sessionmaker(engine))
    now = datetime.now(UTC)
    rng = random.Random(1)

    def number() -> str:
        return caller_number(rng.randrange(callers))

    async def baseline() -> None:
        async with store.transaction() as tx:
            await tx.session.execute(text("SELECT 1"))

    async def snapshot() -> None:
        await store.snapshot(number(), now, 24 * 3600)

    async def snapshot_30d() -> None:
        await store.snapshot(number(), now, 30 * 24 * 3600)

    await _measure(snapshot, 200)  # warm the pool and the prepared statements
    _report("baseline SELECT 1 in a tx", await _measure(baseline, samples))
    _report("snapshot, 24 h lookback", await _measure(snapshot, samples))
    _report("snapshot, 30 d lookback", await _measure(snapshot_30d, samples))

    async with engine.connect() as c:
        n = "+79000004242"
        for sql in (
            "EXPLAIN SELECT * FROM calls WHERE caller_number = :n "
            "AND started_at >= now() - interval '1 day' ORDER BY started_at DESC LIMIT 100",
            "EXPLAIN SELECT count(*) FROM decisions WHERE caller_number = :n "
            "AND escalated AND decided_at >= date_trunc('day', now())",
            "EXPLAIN SELECT * FROM tickets WHERE caller_number = :n "
            "ORDER BY created_at DESC LIMIT 1",
        ):
            plan = (await c.execute(text(sql), {"n": n})).scalars().all()
            print("\n".join(plan[:3]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--callers", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--operators", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.callers, args.samples, args.operators))
