"""Running the service's event loop: uvloop where it is installed, asyncio otherwise.

uvloop (libuv under asyncio's API) roughly halves the per-connection cost of the FastAGI
server: accepting a socket, its transport and the stream objects are most of what a
routed call costs besides the decision. ``CALLROUTER_EVENT_LOOP=asyncio`` turns it off
(to compare, or to debug with asyncio's debug mode).
"""

from __future__ import annotations

import asyncio
import os
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
