"""An app over a real Store, the real RoutingService, fake presence.

``world``
    On a store rolled back after each test (``api_store``: SQLite here; a module that
    should also run on PostgreSQL overrides ``api_store`` with the parametrised ``store``).
    That store has one connection: the test and the app must not use it at the same time.
``committed_world``
    On a fresh SQLite file of its own whose transactions really commit, for tests where
    the server works on its own (event streams re-checking their token) while the test
    makes requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from callrouter.api import ApiDeps, ComponentStatus, create_app
from callrouter.config.rules_holder import RulesHolder
from callrouter.domain.model import Operator, OperatorState, Tier
from callrouter.events import EventHub
from callrouter.metrics import Metrics
from callrouter.numbers import NumberNormaliser
from callrouter.service.ports import CallRecord
from callrouter.service.routing import RoutingService
from callrouter.store import Role, Store, make_engine, make_sessionmaker, upgrade

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ANNA_CALLER = "+79123456789"  # answered by op1 (Anna) 30 min ago
BORIS_CALLER = "+79990001122"  # answered by op2 (Boris) only
NEVER_CALLED = "+79995550000"


_APP: list[FastAPI] = []


class FakePresence:
    def __init__(self) -> None:
        self.live: dict[str, OperatorState] = {}

    def states(self) -> Mapping[str, OperatorState]:
        return self.live


@dataclass
class World:
    """What a test needs to talk to the app: client factory, tokens, seeded ids."""

    deps: ApiDeps
    store: Store
    presence: FakePresence
    tokens: dict[str, str] = field(default_factory=dict)
    token_ids: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    invalidated: list[str] = field(default_factory=list)

    def app(self) -> FastAPI:
        """One app for the session with this test's deps swapped in: building FastAPI's
        routes costs 0.3 s, and every handler reads its deps from ``app.state.deps``."""
        if not _APP:
            _APP.append(create_app(self.deps))
        _APP[0].state.deps = self.deps
        return _APP[0]

    def client(self, role: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        transport = httpx.ASGITransport(app=self.app())
        return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


def answered(uid: str, number: str, operator: str, end: datetime, talk: int = 120) -> CallRecord:
    start = end - timedelta(seconds=talk + 10)
    return CallRecord(
        uniqueid=uid, caller_raw=number, caller_number=number, queue="support",
        started_at=start, answered_at=start + timedelta(seconds=10), ended_at=end,
        operator_id=operator, answered_interface=f"PJSIP/{operator}", talk_seconds=talk,
        outcome="answered", hangup_by="caller",
    )


async def seed(world: World) -> None:
    store = world.store
    async with store.transaction() as tx:
        await tx.operators.add(Operator("op1", "Anna", ("PJSIP/1001",), queues=("support",)))
        await tx.operators.add(Operator("op2", "Boris", ("PJSIP/1002",), queues=("support",)))
        await tx.operators.add(
            Operator("spec1", "Sveta", ("PJSIP/2001",), tier=Tier.SPECIALIST)
        )
        for role, operator in (
            ("admin", None), ("supervisor", None), ("operator", "op1"),
            ("operator2", "op2"), ("readonly", None),
        ):
            issued = await tx.tokens.create(
                f"test-{role}", Role(role.rstrip("2")), operator_id=operator
            )
            world.tokens[role] = issued.plaintext
            world.token_ids[role] = issued.info.id
        ticket = await tx.tickets.create(ANNA_CALLER, "no internet", now=NOW - timedelta(hours=1))
        world.ids["ticket"] = ticket.id
        incident = await tx.incidents.start("callrouter/outage", title="fibre cut",
                                            now=NOW - timedelta(days=2))
        world.ids["incident"] = incident.id
    await store.write_call_records([
        answered("u-anna", ANNA_CALLER, "op1", NOW - timedelta(minutes=30)),
        answered("u-boris", BORIS_CALLER, "op2", NOW - timedelta(minutes=20)),
    ])
    async with store.transaction() as tx:
        call = await tx.calls.get_by_uniqueid("u-anna")
        assert call is not None
        world.ids["anna_call"] = call.id
        other = await tx.calls.get_by_uniqueid("u-boris")
        assert other is not None
        world.ids["boris_call"] = other.id


def build_world(store: Store) -> World:
    presence = FakePresence()
    holder = RulesHolder()
    numbers = NumberNormaliser("RU")
    routing = RoutingService(
        rules=lambda: holder.rules, numbers=numbers, snapshots=store, directory=store,
        presence=presence, incidents=store, clock=lambda: NOW,
    )
    world_ref: list[World] = []
    deps = ApiDeps(
        store=store, routing=routing, rules=holder, presence=presence,
        ami_status=lambda: ComponentStatus(ok=True, state="connected"),
        fastagi_status=lambda: ComponentStatus(ok=True, state="listening"),
        events=EventHub(queue_size=10), metrics=Metrics(), numbers=numbers,
        invalidate_directory=lambda: world_ref[0].invalidated.append("directory"),
        invalidate_incidents=lambda: world_ref[0].invalidated.append("incidents"),
        clock=lambda: NOW, redact_access_log=False,
    )
    world = World(deps=deps, store=store, presence=presence)
    world_ref.append(world)
    return world


@pytest.fixture
def api_store(sqlite_store: Store) -> Store:
    return sqlite_store


@pytest.fixture
async def world(api_store: Store) -> AsyncIterator[World]:
    w = build_world(api_store)
    await seed(w)
    yield w


@pytest.fixture
async def committed_world(tmp_path: Path) -> AsyncIterator[World]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"
    await upgrade(url)  # a tenth of a second
    engine = make_engine(url)
    try:
        w = build_world(Store(make_sessionmaker(engine)))
        await seed(w)
        yield w
    finally:
        await engine.dispose()
