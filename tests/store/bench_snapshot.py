"""Benchmark: Store.snapshot() against PostgreSQL with 1,000,000 calls / 100,000 callers.

Not a test (pytest does not collect it). Run:

    uv run python -m tests.store.bench_snapshot [--calls 1000000] [--callers 100000]

Creates a throw-away database next to CALLROUTER_TEST_PG_DSN's, seeds it with SQL
(generate_series), and prints snapshot latency percentiles next to a baseline measured
in the same run: one ``SELECT 1`` in a Store transaction (the floor: pool checkout,
BEGIN, round trip, COMMIT). Prints the query plans so a missing index shows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from callrouter.store import Store, make_engine, make_sessionmaker, upgrade

SEED_SQL = """
INSERT INTO operators (id, name, tier, queues, active, created_at, updated_at)
SELECT 'op' || i, 'Operator ' || i, 'first_line', '["support"]', true, now(), now()
FROM generate_series(1, 200) AS i;

INSERT INTO calls (id, caller_raw, caller_number, queue, server_id, uniqueid, decision_id,
                   operator_id, started_at, ended_at, hold_seconds, talk_seconds, outcome,
                   transferred, escalated)
SELECT md5(i::text), '7900' || lpad((i % :callers)::text, 7, '0'),
       '+7900' || lpad((i % :callers)::text, 7, '0'), 'support', 'default', i::text,
       md5('d' || i), 'op' || (1 + i % 200),
       now() - (i % 2592000) * interval '1 second',
       now() - (i % 2592000) * interval '1 second' + interval '3 minutes',
       5, 170, 'answered', false, (i % 50 = 0)
FROM generate_series(1, :calls) AS i;

INSERT INTO decisions (id, decided_at, caller_raw, caller_number, queue, action,
                       target_queue, priority, wait_seconds, escalated, reason_code,
                       reason_codes, reasons, inputs, latency_ms, server_id, uniqueid)
SELECT md5('d' || i), now() - (i % 2592000) * interval '1 second',
       '7900' || lpad((i % :callers)::text, 7, '0'),
       '+7900' || lpad((i % :callers)::text, 7, '0'), 'support', 'queue', 'support', 0, 0,
       (i % 50 = 0), 'default_queue', '["default_queue"]',
       '[{"code": "default_queue", "text": "x"}]', '{}', 1.0, 'default', i::text
FROM generate_series(1, :calls) AS i;

INSERT INTO tickets (id, caller_number, subject, status, tier, created_at, updated_at)
SELECT md5('t' || i), '+7900' || lpad((i * 7 % :callers)::text, 7, '0'), 'issue',
       (ARRAY['open', 'pending', 'closed'])[1 + i % 3], 'first_line',
       now() - (i % 600) * interval '1 hour', now() - (i % 300) * interval '1 hour'
FROM generate_series(1, :callers / 2) AS i;

INSERT INTO caller_flags (caller_number, vip_class, abusive, notes, updated_at)
SELECT '+7900' || lpad((i * 13 % :callers)::text, 7, '0'), 'gold', false, '', now()
FROM generate_series(1, :callers / 10) AS i ON CONFLICT DO NOTHING;

INSERT INTO caller_opt_outs (caller_number, operator_id, created_at)
SELECT '+7900' || lpad((i * 17 % :callers)::text, 7, '0'), 'op' || (1 + i % 200), now()
FROM generate_series(1, :callers / 20) AS i ON CONFLICT DO NOTHING;

ANALYZE;
"""


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


async def main(calls: int, callers: int, samples: int) -> None:
    dsn = os.environ.get("CALLROUTER_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"callrouter_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(dsn).set(drivername="postgresql+asyncpg", database=name)
    url_s = url.render_as_string(hide_password=False)
    engine = make_engine(url_s)
    try:
        await upgrade(url_s)
        t0 = time.perf_counter()
        seed = SEED_SQL.replace(":callers", str(callers)).replace(":calls", str(calls))
        conn = await asyncpg.connect(make_url(dsn).set(database=name).render_as_string(False))
        await conn.execute(seed)
        await conn.close()
        print(f"seeded {calls} calls / {callers} callers in {time.perf_counter() - t0:.1f} s")

        store = Store(make_sessionmaker(engine))
        now = datetime.now(UTC)
        rng = random.Random(1)

        def number() -> str:
            return "+7900" + str(rng.randrange(callers)).zfill(7)

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
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--callers", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.callers, args.samples))
