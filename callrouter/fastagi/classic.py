"""Classic (non-network) AGI: the same ``route`` handler over stdin/stdout.

Asterisk runs ``AGI(callrouter-route.agi,QUEUE)`` as a child process per call, writes the
env block (without ``agi_network`` lines) to its stdin and reads commands from its stdout.
Logs go to stderr. The router comes from a factory named ``module:callable`` in
``$CALLROUTER_AGI_ROUTER`` (default ``callrouter.app:build_classic_router``); when it cannot
be built the call still gets the entry queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from callrouter.domain.reasons import ReasonCode
from callrouter.fastagi.handler import (
    DEFAULT_BUDGET,
    QueueOnlyRouter,
    RouteHandler,
    Router,
    converse,
)
from callrouter.fastagi.protocol import ENV_MAX_BYTES, AgiChannel, AgiError

log = logging.getLogger("callrouter.fastagi.classic")

FACTORY_ENV = "CALLROUTER_AGI_ROUTER"
DEFAULT_FACTORY = "callrouter.app:build_classic_router"


def load_factory(spec: str) -> Callable[[], Any]:
    module, _, attr = spec.partition(":")
    factory = getattr(importlib.import_module(module), attr or "build_classic_router")
    if not callable(factory):
        raise TypeError(f"{spec} is not callable")
    return factory  # type: ignore[no-any-return]


async def build_router(spec: str) -> Router:
    """The router from the factory, or a queue-only router when that fails (fail open)."""
    try:
        router = load_factory(spec)()
        if inspect.isawaitable(router):
            router = await router
        return router  # type: ignore[no-any-return]
    except Exception as exc:
        log.error("cannot build the router from %s (%s: %s); every call gets its entry queue",
                  spec, type(exc).__name__, exc)
        return QueueOnlyRouter(f"router unavailable: {type(exc).__name__}")


class _StdoutWriter:
    """Blocking writes to fd 1: a command is a few dozen bytes and Asterisk reads at once.
    (asyncio pipe transports refuse regular files, which stdout may be in tests.)"""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


def _pump_stdin(reader: asyncio.StreamReader, fd: int) -> None:
    """Feed stdin to ``reader`` from a daemon thread: works for pipes, files and ttys, and
    a read still blocked when the call is done cannot keep the process alive."""
    loop = asyncio.get_running_loop()

    def pump() -> None:
        try:
            while chunk := os.read(fd, 65536):
                loop.call_soon_threadsafe(reader.feed_data, chunk)
        except OSError:
            pass
        with contextlib.suppress(RuntimeError):  # the loop may be gone already
            loop.call_soon_threadsafe(reader.feed_eof)

    threading.Thread(target=pump, name="agi-stdin", daemon=True).start()


async def run_classic(
    router: Router | None = None,
    *,
    budget: float = DEFAULT_BUDGET,
    default_queue: str = "support",
    env_timeout: float = 2.0,
) -> int:
    """Serve one call on stdin/stdout. Returns the process exit status (always 0: a
    non-zero status would only make Asterisk log a failure, the dialplan falls back anyway)."""
    asyncio.get_running_loop().set_exception_handler(_quiet_abandoned)
    reader = asyncio.StreamReader(limit=ENV_MAX_BYTES)
    _pump_stdin(reader, sys.stdin.fileno())
    channel = AgiChannel(reader, _StdoutWriter(sys.stdout.fileno()))
    try:
        env = await channel.read_environment(timeout=env_timeout)
        if router is None:
            spec = os.environ.get(FACTORY_ENV, DEFAULT_FACTORY)
            try:
                router = await asyncio.wait_for(build_router(spec), max(2.0, budget))
            except TimeoutError:
                log.error("building the router from %s took too long; entry queue", spec)
                router = QueueOnlyRouter("router start timed out")
        handler = RouteHandler(router, budget=budget, default_queue=default_queue)
        await converse(handler.start, channel, env, lambda: "stdin")
    except AgiError as exc:
        log.info("classic AGI ended early: %s", exc)
    except Exception:
        log.exception("classic AGI failed; the dialplan sends the call to the normal queue")
    finally:
        closer = getattr(router, "aclose", None)
        if closer is not None:
            try:
                await closer()
            except Exception:
                log.exception("closing the router failed")
        channel.close()
    return 0


def _quiet_abandoned(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A router build abandoned at its time limit leaves asyncpg's half-open connection to
    fail later ("Future exception was never retrieved: ConnectionError"). Asterisk shows an
    AGI's stderr in its console, so that expected leftover is logged at DEBUG; anything
    else goes to asyncio's default handler."""
    if isinstance(context.get("exception"), ConnectionError):
        log.debug("abandoned after the router's time limit: %s", context.get("message"))
        return
    loop.default_exception_handler(context)


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("CALLROUTER_AGI_LOG", "WARNING"),
                        format="callrouter-route.agi: %(levelname)s %(message)s")
    budget = float(os.environ.get("CALLROUTER_AGI_BUDGET_MS", "500")) / 1000
    default_queue = os.environ.get("CALLROUTER_AGI_DEFAULT_QUEUE", "support")
    try:
        return asyncio.run(run_classic(budget=budget, default_queue=default_queue))
    except Exception:
        log.exception("classic AGI could not start")
        return 0


__all__ = ["FACTORY_ENV", "ReasonCode", "build_router", "main", "run_classic"]
