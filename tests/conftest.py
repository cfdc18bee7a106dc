"""Database fixtures any test area can use.

``store``
    A ``callrouter.store.Store`` on a migrated database, parametrised ``[sqlite, postgres]``.
    The test runs inside an outer transaction that is rolled back at the end; every
    transaction the Store opens becomes a SAVEPOINT in it
    (``join_transaction_mode="create_savepoint"``), so tests never see each other's rows.
    Do not run two Store calls concurrently (``asyncio.gather``) in one test: they share
    one connection.
``sqlite_store``
    The same, SQLite only (fast; for tests that only need *a* store).
``database_url``
    The URL of the migrated database behind ``store`` (parametrised the same way). Writes
    through it bypass the rollback and persist for the session: read-only use, please.
``sqlite_database_url`` / ``pg_database_url`` (session scope)
    A migrated SQLite temp file / a fresh PostgreSQL database named
    ``callrouter_test_<pid>_<random>``, created and migrated once per session and dropped
    at its end.

PostgreSQL: DSN from ``CALLROUTER_TEST_PG_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/test``; that database is only used to CREATE and
DROP ours). Unreachable -> the postgres params are skipped, or fail when
``CALLROUTER_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.pool import NullPool

from callrouter.store import Store, make_engine, upgrade
from tests.pg import admin_dsn, pg_admin, run


def _redacted(dsn: str) -> str:
    return make_url(dsn).render_as_string(hide_password=True)


@pytest.fixture(scope="session")
def sqlite_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("store") / "callrouter.db"
    url = f"sqlite+aiosqlite:///{path}"
    run(upgrade(url))
    return url


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    dsn = admin_dsn()
    name = f"callrouter_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    try:
        run(pg_admin(dsn, f'CREATE DATABASE "{name}"'))
    except (
        OSError,
        TimeoutError,
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    ) as exc:
        where = _redacted(dsn)
        if os.environ.get("CALLROUTER_REQUIRE_POSTGRES") == "1":
            pytest.fail(
                f"PostgreSQL required (CALLROUTER_REQUIRE_POSTGRES=1) but not reachable at "
                f"{where}: {exc!r}",
                pytrace=False,
            )
        pytest.skip(f"PostgreSQL not reachable at {where}: {exc!r}")
    url = (
        make_url(dsn)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )
    try:
        run(upgrade(url))
        yield url
    finally:
        run(pg_admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_database_url" if request.param == "sqlite" else "pg_database_url"
    url: str = request.getfixturevalue(name)
    return url


async def _rolled_back_store(url: str) -> AsyncIterator[Store]:
    engine = make_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            outer = await connection.begin()
            sessions = async_sessionmaker(
                bind=connection,
                expire_on_commit=False,
                autoflush=False,
                join_transaction_mode="create_savepoint",
            )
            try:
                yield Store(sessions)
            finally:
                await outer.rollback()
    finally:
        await engine.dispose()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    async for s in _rolled_back_store(database_url):
        yield s


@pytest.fixture
async def sqlite_store(sqlite_database_url: str) -> AsyncIterator[Store]:
    async for s in _rolled_back_store(sqlite_database_url):
        yield s
