"""Running the service's event loop: uvloop where it is installed, asyncio otherwise.

uvloop (libuv under asyncio's API) roughly halves the per-connection cost of the FastAGI
server: accepting a socket, its transport and the stream objects are most of what a
routed call costs besides the decision. ``CALLROUTER_EVENT_LOOP=asyncio`` turns it off
(to compare, or to debug with asyncio's debug mode).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOP_ENV = "CALLROUTER_EVENT_LOOP"


def retrieve_exception(task: asyncio.Future[Any]) -> None:
    """A done-callback for a task nobody may be left awaiting (a routing abandoned at its
    budget, a shared reload, a shielded read): marks its exception retrieved so asyncio
    does not log "exception was never retrieved"; whoever still waits gets it raised."""
    if not task.cancelled():
        task.exception()


class LoopLag:
    """How late the running loop runs a timer due every ``interval`` seconds, given to
    ``observe`` at each tick: the time in which the process could serve nothing (CPU
    starvation, a long callback, a garbage-collector pause, a pause of the machine). While
    the loop is away, FastAGI connections wait in the kernel's accept queue, which the
    daemon cannot time itself (docs/performance.md, "Where the time goes").

    One timer handle every ``interval``: nothing per call. Measured on ``perf_counter``;
    under uvloop the timers themselves run on a millisecond clock, so up to ~1 ms of lag is
    the timer's own."""

    def __init__(self, observe: Callable[[float], None], interval: float = 0.25) -> None:
        self._observe = observe
        self._interval = interval
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is None:
            self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        self._due = time.perf_counter() + self._interval
        self._handle = asyncio.get_running_loop().call_later(self._interval, self._tick)

    def _tick(self) -> None:
        lag = time.perf_counter() - self._due
        self._schedule()
        self._observe(max(0.0, lag))


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default loop."""
    if os.environ.get(LOOP_ENV, "auto").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)
