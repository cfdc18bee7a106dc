"""The Alembic migration builds exactly the schema the models describe."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
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


async def test_0004_fills_the_last_handlers_own_talk_from_the_legs(own_database: str) -> None:
    """Calls recorded with legs before 0004 get the last handler's own talk time; calls
    not transferred, still live, or without legs stay NULL (the whole call's time counts).
    The downgrade drops the column; upgrading again gives the models' schema."""
    await upgrade(own_database, "0003")
    at = datetime(2026, 11, 1, 12, tzinfo=UTC)
    calls = [  # id, operator, outcome, transferred, [(operator, talk), ...]
        ("c1", "boris", "answered", True, [("anna", 600), ("boris", 5)]),
        ("c2", "anna", "answered", False, [("anna", 120)]),
        ("c3", "boris", "in_progress", True, [("anna", 600), ("boris", 0)]),
        ("c4", "boris", "answered", True, []),
        ("c5", "anna", "answered", True, [("anna", 60), ("boris", 40), ("anna", 25)]),
    ]
    engine = make_engine(own_database, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            for call_id, operator, outcome, moved, legs in calls:
                await connection.execute(text(
                    "INSERT INTO calls (id, caller_raw, server_id, uniqueid, started_at,"
                    " hold_seconds, talk_seconds, outcome, transferred, escalated,"
                    " operator_id) VALUES (:id, '', 'default', :id, :at, 0, :talk,"
                    " :outcome, :moved, false, :operator)"),
                    {"id": call_id, "at": at, "talk": sum(t for _, t in legs),
                     "outcome": outcome, "moved": moved, "operator": operator})
                for seq, (leg_operator, talk) in enumerate(legs):
                    await connection.execute(text(
                        "INSERT INTO call_legs (call_id, seq, operator_id, via, hold_seconds,"
                        " talk_seconds) VALUES (:id, :seq, :operator, 'queue', 0, :talk)"),
                        {"id": call_id, "seq": seq, "operator": leg_operator, "talk": talk})
        await upgrade(own_database)
        async with engine.connect() as connection:
            found = dict((await connection.execute(text(
                "SELECT id, operator_talk_seconds FROM calls"))).all())
        assert found == {"c1": 5, "c2": None, "c3": None, "c4": None, "c5": 85}

        await downgrade(own_database, "0003")
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("calls")})
            assert "operator_talk_seconds" not in columns
            assert await connection.scalar(text("SELECT COUNT(*) FROM call_legs")) == 8
        await upgrade(own_database)
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()
