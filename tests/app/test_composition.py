"""Composition-root details that need no sockets."""

from __future__ import annotations

from pathlib import Path

from callrouter.app import _default_journal
from callrouter.config.settings import AmiSettings, DatabaseSettings, Settings

PG = "postgresql+asyncpg://callrouter@db/callrouter"


def settings(url: str, server_id: str = "default") -> Settings:
    return Settings(database=DatabaseSettings(url=url),
                    ami=AmiSettings(server_id=server_id), config_file=None)


def test_sqlite_journal_sits_next_to_the_database(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    assert _default_journal(settings(f"sqlite+aiosqlite:///{db}")) == Path(f"{db}.call-journal")


def test_postgres_journal_is_per_server() -> None:
    """Daemons sharing PostgreSQL (and maybe a working directory) never share a journal."""
    assert _default_journal(settings(PG)) == Path("callrouter-call-journal.jsonl")
    a, b = _default_journal(settings(PG, "a")), _default_journal(settings(PG, "b"))
    assert a != b and "a" in a.name and "b" in b.name
