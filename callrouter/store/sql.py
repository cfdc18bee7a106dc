"""Small SQL helpers shared by the repositories (dialect-specific INSERT, clock)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from callrouter.store.models import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


def upsert_insert(session: AsyncSession, table: type[Base]) -> Any:
    """An INSERT that supports ON CONFLICT on both supported databases.

    Returns the dialect's ``Insert`` (PostgreSQL and SQLite share the
    ``on_conflict_do_update``/``on_conflict_do_nothing`` API).
    """
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"callrouter.store supports SQLite and PostgreSQL, not {name}")
