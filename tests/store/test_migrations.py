"""The Alembic migration builds exactly the schema the models describe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from callrouter.store import make_engine, upgrade
from callrouter.store.migrate import alembic_config, downgrade
from callrouter.store.models import Base
from tests.pg import private_database


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_equals_models(database_url: str) -> None:
    engine = make_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_upgrade_again_is_a_no_op_at_head(database_url: str) -> None:
    await upgrade(database_url)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = make_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()
    assert version == head


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database this test may migrate up and down (not the session's shared one)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    with private_database(request.getfixturevalue("pg_database_url"), "mig",
                          migrate=False) as url:
        yield url


async def _tables(url: str) -> set[str]:
    engine = make_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_0003_call_legs_and_notes_go_down_and_up_again(own_database: str) -> None:
    """0003 only adds tables: its downgrade drops them and leaves ``calls`` as 0002 had
    it, and upgrading again gives the models' schema."""
    await upgrade(own_database, "0002")
    before = await _tables(own_database)
    await upgrade(own_database)
    assert await _tables(own_database) == before | {"call_legs", "call_notes"}
    await downgrade(own_database, "0002")
    assert await _tables(own_database) == before
    await upgrade(own_database)
    engine = make_engine(own_database, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()
