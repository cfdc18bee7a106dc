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


@pytest.mark.parametrize("env", ["auto", "asyncio"])
def test_loop_lag_sees_a_callback_that_holds_the_loop(monkeypatch: pytest.MonkeyPatch,
                                                      env: str) -> None:
    import time

    monkeypatch.setenv(aio.LOOP_ENV, env)
    seen: list[float] = []

    async def main() -> None:
        lag = aio.LoopLag(seen.append, interval=0.02)
        lag.start()
        lag.start()  # a second start does not add a second timer
        for _ in range(200):  # a few quiet ticks first (however slow the machine is)
            if len(seen) >= 2:
                break
            await asyncio.sleep(0.01)
        quiet = len(seen)
        loop = asyncio.get_running_loop()
        loop.call_soon(time.sleep, 0.06)  # a callback holding the loop for 60 ms
        await asyncio.sleep(0.1)
        lag.stop()
        stopped = len(seen)
        await asyncio.sleep(0.06)
        assert len(seen) == stopped  # no tick after stop
        assert quiet >= 2

    aio.run(main())
    assert max(seen) >= 0.03  # the tick due during the 60 ms came that much late
    assert min(seen) >= 0.0
