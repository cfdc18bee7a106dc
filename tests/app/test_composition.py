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


async def test_postgres_hot_path_takes_its_settings() -> None:
    """The hot path connects lazily, so this needs no database."""
    from callrouter.app import build_runtime
    from callrouter.config.rules_holder import RulesHolder

    s = Settings(database=DatabaseSettings(url=PG, pool_size=7, snapshot_statements=3),
                 config_file=None)
    runtime = await build_runtime(s, RulesHolder(), with_fastagi=False, with_ami=False,
                                  with_api=False)
    try:
        assert runtime.hot is not None
        assert runtime.hot._max_batches == 3
        assert runtime.hot._connections._max == 7
    finally:
        await runtime.close()


async def test_the_state_replica_follows_its_setting() -> None:
    """On PostgreSQL the replica is built (it connects in the background: this needs no
    database) and answers through the hot path until live; off, routing reads the hot
    path directly; SQLite has none."""
    from callrouter.app import build_runtime
    from callrouter.config.rules_holder import RulesHolder

    for enabled in (True, False):
        s = Settings(database=DatabaseSettings(url=PG, state_replica=enabled), config_file=None)
        runtime = await build_runtime(s, RulesHolder(), with_fastagi=False, with_ami=False,
                                      with_api=False)
        try:
            if enabled:
                assert runtime.replica is not None and not runtime.replica.live
                assert runtime.service._snapshots is runtime.replica
            else:
                assert runtime.replica is None
                assert runtime.service._snapshots is runtime.hot
        finally:
            await runtime.close()
