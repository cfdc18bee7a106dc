"""PostgreSQL for the tests: the admin DSN, running setup outside pytest-asyncio's loops,
and databases of a test's own next to the session's."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

from callrouter.store import upgrade

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_CONNECT_TIMEOUT = 5.0

T = TypeVar("T")


def admin_dsn() -> str:
    return os.environ.get("CALLROUTER_TEST_PG_DSN", DEFAULT_PG_DSN)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine in a private event loop on a worker thread.

    Setup and teardown must not touch the per-test event loops pytest-asyncio makes.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def pg_admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=PG_CONNECT_TIMEOUT)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def private_database(next_to: str, tag: str, *, migrate: bool = True) -> Iterator[str]:
    """A database of a test's own on the server of ``next_to`` (the session's
    ``pg_database_url``, which is read-only by convention: what a test commits would show
    through every rolled-back store test), migrated unless ``migrate=False``; dropped at
    the end. Its URL keeps ``next_to``'s driver."""
    base = make_url(next_to)
    name = f"{base.database}_{tag}_{uuid.uuid4().hex[:6]}"
    url = base.set(database=name).render_as_string(hide_password=False)
    dsn = admin_dsn()
    run(pg_admin(dsn, f'CREATE DATABASE "{name}"'))
    try:
        if migrate:
            run(upgrade(url))
        yield url
    finally:
        run(pg_admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
