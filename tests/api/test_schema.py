"""schemathesis against the OpenAPI description: no server error, every response conforms.

Runs through the ASGI app with an admin token on a Store of its own (the per-test
rolled-back Store is bound to another event loop than schemathesis' client uses).
Bounded: a few examples per operation. Streams are left out: they never end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.pool import NullPool

from callrouter.api import create_app
from callrouter.store import Store, make_engine, make_sessionmaker, upgrade
from tests.api.conftest import build_world, seed

T = TypeVar("T")
CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance,
    response_schema_conformance,
]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    path: Path = tmp_path_factory.mktemp("schema") / "fuzz.db"
    url = f"sqlite+aiosqlite:///{path}"
    _run(upgrade(url))
    # NullPool: each request's loop opens its own connection (none is shared across loops)
    store = Store(make_sessionmaker(make_engine(url, poolclass=NullPool)))
    world = build_world(store)
    _run(seed(world))
    return create_app(world.deps), world.tokens["admin"]


def _operations(app: Any) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    found = schema.exclude(path_regex="/stream/").get_all_operations()
    return [result.ok() for result in found]  # type: ignore[union-attr]


def test_api_conforms_to_its_openapi(fuzzed: tuple[Any, str]) -> None:
    """Every operation, a few generated cases each (schemathesis' lazy pytest fixture
    loader does not work with this pytest, so the operations are walked here)."""
    app, token = fuzzed
    operations = _operations(app)
    assert len(operations) > 25
    headers = {"Authorization": f"Bearer {token}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            check()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc
