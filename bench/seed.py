"""A throw-away PostgreSQL database with a large, realistic routing history, for benchmarks.

Shared by ``bench/bench_fastagi.py`` and ``tests/store/bench_snapshot.py``. The database is
named ``callrouter_bench_<pid>_<random>``, created next to the admin DSN's database,
migrated with Alembic, seeded in SQL (``generate_series``: no rows cross the wire) and
dropped on exit. Nothing else on the server is touched.

History: ``operators`` operators (first line, one PJSIP interface each, queue ``support``);
``calls`` answered calls spread over the last 30 days from ``callers`` callers (caller
``+7900NNNNNNN``), 1 in 50 escalated, each with its decision row; a ticket for half the
callers (a third of them open), VIP flags for a tenth, opt-outs for a twentieth.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from sqlalchemy.engine import make_url

from callrouter.store import upgrade

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

SEED_SQL = """
INSERT INTO operators (id, name, tier, queues, active, created_at, updated_at)
SELECT 'op' || i, 'Operator ' || i, 'first_line', '["support"]', true, now(), now()
FROM generate_series(1, :operators) AS i;

INSERT INTO operator_interfaces (interface, operator_id, position)
SELECT 'PJSIP/' || (1000 + i), 'op' || i, 0
FROM generate_series(1, :operators) AS i;

INSERT INTO calls (id, caller_raw, caller_number, queue, server_id, uniqueid, decision_id,
                   operator_id, started_at, ended_at, hold_seconds, talk_seconds, outcome,
                   transferred, escalated)
SELECT md5(i::text), '7900' || lpad((i % :callers)::text, 7, '0'),
       '+7900' || lpad((i % :callers)::text, 7, '0'), 'support', 'default', i::text,
       md5('d' || i), 'op' || (1 + i % :operators),
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
SELECT '+7900' || lpad((i * 17 % :callers)::text, 7, '0'), 'op' || (1 + i % :operators), now()
FROM generate_series(1, :callers / 20) AS i ON CONFLICT DO NOTHING;

VACUUM ANALYZE;
"""


def caller_number(i: int) -> str:
    """The E.164 number of seeded caller ``i`` (``0 <= i < callers``)."""
    return "+7900" + str(i).zfill(7)


def seed_sql(calls: int, callers: int, operators: int) -> str:
    return (
        SEED_SQL.replace(":operators", str(operators))
        .replace(":callers", str(callers))
        .replace(":calls", str(calls))
    )


@dataclass(frozen=True)
class BenchDatabase:
    name: str
    dsn: str  # plain libpq/asyncpg DSN
    url: str  # SQLAlchemy URL (postgresql+asyncpg://...)


def admin_dsn() -> str:
    return os.environ.get("CALLROUTER_BENCH_PG_DSN") or os.environ.get(
        "CALLROUTER_TEST_PG_DSN", DEFAULT_ADMIN_DSN
    )


async def seed(db: BenchDatabase, *, calls: int, callers: int, operators: int) -> float:
    """Seed ``db``; returns the seconds it took."""
    t0 = time.perf_counter()
    conn = await asyncpg.connect(db.dsn)
    try:
        # Several statements, VACUUM among them: the simple protocol, outside a transaction.
        for statement in seed_sql(calls, callers, operators).split(";\n"):
            if statement.strip():
                await conn.execute(statement)
    finally:
        await conn.close()
    return time.perf_counter() - t0


@asynccontextmanager
async def bench_database(
    *, calls: int, callers: int, operators: int, admin: str | None = None, quiet: bool = False,
    keep: str | None = None,
) -> AsyncIterator[BenchDatabase]:
    """A freshly created, migrated and seeded database, dropped (WITH FORCE) on exit.

    ``keep`` names a database to seed once and keep (for iterating on the daemon: seeding
    a million calls takes about a minute); an existing one is reused as it is, with the
    decisions and calls earlier runs added to it.
    """
    admin = admin or admin_dsn()
    name = keep or f"callrouter_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    exists = bool(keep) and await conn.fetchval(
        "SELECT 1 FROM pg_database WHERE datname = $1", name
    )
    if not exists:
        await conn.execute(f'CREATE DATABASE "{name}"')
    base = make_url(admin).set(database=name)
    db = BenchDatabase(
        name=name,
        dsn=base.render_as_string(hide_password=False),
        url=base.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False),
    )
    try:
        if exists:
            if not quiet:
                print(f"reusing {db.name} (kept from an earlier run)", flush=True)
        else:
            await upgrade(db.url)
            seconds = await seed(db, calls=calls, callers=callers, operators=operators)
            if not quiet:
                print(f"seeded {db.name}: {calls:,} calls / {callers:,} callers / "
                      f"{operators:,} operators in {seconds:.1f} s", flush=True)
        yield db
    finally:
        if not keep:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
