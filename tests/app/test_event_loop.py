"""callrouter.aio: serve and demo run on uvloop when installed, asyncio when told to."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from callrouter import aio


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(aio.LOOP_ENV, raising=False)
    assert aio.loop_factory() is uvloop.new_event_loop


def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(aio.LOOP_ENV, " AsyncIO ")
    assert aio.loop_factory() is None


@pytest.mark.parametrize(("env", "module"), [("auto", "uvloop"), ("asyncio", "asyncio")])
def test_run_uses_the_chosen_loop(monkeypatch: pytest.MonkeyPatch, env: str, module: str) -> None:
    monkeypatch.setenv(aio.LOOP_ENV, env)

    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__.split(".")[0]

    assert aio.run(which()) == module
