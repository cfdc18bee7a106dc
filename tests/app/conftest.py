"""Helpers for the composition-root tests: the whole runtime on real sockets, with a fake
Asterisk (AMI) and simulated FastAGI calls."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from callrouter.app import Runtime, build_runtime
from callrouter.config.rules_holder import RulesHolder
from callrouter.config.settings import (
    AmiSettings,
    ApiSettings,
    DatabaseSettings,
    FastAgiSettings,
    Settings,
)
from callrouter.domain.model import Operator, Tier
from callrouter.simulator.ami import FakeAmiServer, FakeMember
from callrouter.store.db import make_engine, make_sessionmaker
from callrouter.store.records import StoredCall
from callrouter.store.store import Store

SECRET = "test-secret"
RULES = """\
[rules]
default_queue = "support"

[rules.defaults]
sticky_window = "2h"
ring_seconds = 15

[rules.queues.support]
"""

OPERATORS = [
    Operator("anna", "Anna", ("PJSIP/1001",), Tier.FIRST_LINE, ("support",)),
    Operator("boris", "Boris", ("PJSIP/1002",), Tier.FIRST_LINE, ("support",)),
]


def members() -> list[FakeMember]:
    return [FakeMember("support", op.interfaces[0], op.name) for op in OPERATORS]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def until(cond: Callable[[], Awaitable[object]], timeout: float = 5.0,
                what: str = "condition") -> object:
    """Poll an async condition until it is truthy (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s")
        await asyncio.sleep(0.02)


def make_settings(url: str, ami_port: int, tmp: Path, *, server_id: str = "ast1",
                  api_port: int = 0) -> Settings:
    return Settings(
        database=DatabaseSettings(url=url),
        fastagi=FastAgiSettings(port=0),
        api=ApiSettings(port=api_port),
        ami=AmiSettings(enabled=True, host="127.0.0.1", port=ami_port, username="callrouter",
                        secret=SECRET, server_id=server_id,  # type: ignore[arg-type]
                        ping_interval=1.0, journal_path=tmp / f"{server_id}.journal",
                        directory_reload_seconds=45.0, directory_miss_seconds=2.0),
        config_file=None,
    )


def rules_holder(tmp: Path) -> RulesHolder:
    path = tmp / "rules.toml"
    path.write_text(RULES, encoding="utf-8")
    return RulesHolder.from_file(path)


async def seed_operators(url: str, operators: Sequence[Operator] = OPERATORS) -> None:
    engine = make_engine(url)
    try:
        store = Store(make_sessionmaker(engine))
        async with store.transaction() as tx:
            known = {op.id for op in await tx.operators.list()}
            for op in operators:
                if op.id not in known:
                    await tx.operators.add(op)
    finally:
        await engine.dispose()


@asynccontextmanager
async def fake_asterisk() -> AsyncIterator[FakeAmiServer]:
    server = FakeAmiServer(members=members(), username="callrouter", secret=SECRET)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def running(settings: Settings, rules: RulesHolder, *,
                  with_api: bool = True) -> AsyncIterator[Runtime]:
    runtime = await asyncio.wait_for(build_runtime(settings, rules, with_api=with_api), 15)
    try:
        assert runtime.ami is not None and runtime.fastagi is not None
        await runtime.ami.wait_connected(5)
        yield runtime
    finally:
        await asyncio.wait_for(runtime.close(), 15)


async def stored_call(runtime: Runtime, uniqueid: str) -> StoredCall | None:
    async with runtime.store.transaction() as tx:
        call: StoredCall | None = await tx.calls.get_by_uniqueid(
            uniqueid, runtime.settings.ami.server_id)
        return call


async def answered_call(runtime: Runtime, uniqueid: str, timeout: float = 5.0) -> StoredCall:
    """The call record the AMI listener wrote, once it shows who answered and the end."""

    async def done() -> StoredCall | None:
        call = await stored_call(runtime, uniqueid)
        if call is not None and call.operator_id and call.ended_at is not None:
            return call
        return None

    call = await until(done, timeout, f"answered call record {uniqueid}")
    assert isinstance(call, StoredCall)
    return call
