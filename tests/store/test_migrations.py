"""The Alembic migration builds exactly the schema the models describe."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from callrouter.store import make_engine, upgrade
from callrouter.store.migrate import alembic_config
from callrouter.store.models import Base


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
