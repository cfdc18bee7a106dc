"""Run the Alembic migrations programmatically (``callrouter db upgrade``, test fixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from callrouter.store.db import make_engine

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported where a migration runs, not with the store: the classic AGI entry
# starts a process per call and never migrates, and importing Alembic cost it ~0.75 s of
# its 3-4 s start on this machine (past its 2 s router budget, the call gets the queue).

# The migrations live next to the package in the source tree (repo root /migrations).
ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "migrations"


def alembic_config() -> Config:
    """An Alembic config pointing at the project's migrations, independent of the cwd."""
    from alembic.config import Config

    ini = ROOT / "alembic.ini"
    config = Config(str(ini)) if ini.exists() else Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _migrate_on(connection: Connection, step: str, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, step)(config, revision)


async def _migrate(url: str, step: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate_on, step, revision)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (default: the newest)."""
    await _migrate(url, "upgrade", revision)


async def downgrade(url: str, revision: str) -> None:
    """Take the database at ``url`` back to ``revision`` (the migrations' own downgrades)."""
    await _migrate(url, "downgrade", revision)
