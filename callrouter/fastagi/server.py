"""The FastAGI TCP server: accepts Asterisk's connections and dispatches them by route."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from functools import partial

from callrouter.fastagi.connection import AgiConnection
from callrouter.fastagi.handler import AgiHandler, AgiSession, SessionObserver
from callrouter.fastagi.protocol import (
    COMMAND_TIMEOUT,
    ENV_MAX_BYTES,
    ENV_MAX_LINE,
    ENV_TIMEOUT,
    AgiChannel,
    AgiDeadChannel,
    AgiEndOfStream,
    AgiHangup,
    AgiProtocolError,
)

log = logging.getLogger("callrouter.fastagi")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4573
STREAM_LIMIT = 8192  # the least a connection may buffer (a reply line, a 520 block)


class FastAgiServer:
    """``await FastAgiServer(routes, fallback=...).start()``; ``await server.close()``.

    Every session is bounded: the environment block must arrive within ``env_timeout`` and
    ``env_max_bytes``, each command within ``command_timeout``, the whole session within
    ``session_timeout``; at most ``max_sessions`` run at once (others are closed at once,
    which Asterisk reports as AGISTATUS=SUCCESS with no variables: the dialplan's normal
    queue). A bad client only ever costs its own connection.
    """

    def __init__(
        self,
        routes: Mapping[str, AgiHandler],
        *,
        fallback: AgiHandler,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        env_timeout: float = ENV_TIMEOUT,
        env_max_bytes: int = ENV_MAX_BYTES,
        env_max_line: int = ENV_MAX_LINE,
        command_timeout: float = COMMAND_TIMEOUT,
        session_timeout: float = 5.0,
        max_sessions: int = 1000,
        observer: SessionObserver | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.fallback = fallback
        self.host = host
        self.port = port
        self.env_timeout = env_timeout
        self.env_max_bytes = env_max_bytes
        self.env_max_line = env_max_line
        self.command_timeout = command_timeout
        self.session_timeout = session_timeout
        self.max_sessions = max_sessions
        self.observer = observer or SessionObserver()
        self.active = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> FastAgiServer:
        # the environment block is read in one go, so the limit covers the whole block
        # (and bounds the memory a connection may hold)
        limit = max(STREAM_LIMIT, self.env_max_bytes)
        self._server = await asyncio.get_running_loop().create_server(
            lambda: AgiConnection(limit, self._opened), self.host, self.port, backlog=1024,
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info("FastAGI listening on %s:%d (routes: %s)", self.host, self.port,
                 ", ".join(sorted(self.routes)))
        return self

    @property
    def url(self) -> str:
        return f"agi://{self.host}:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> FastAgiServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _opened(self, conn: AgiConnection) -> None:
        """A connection was accepted: its session runs as a task of its own."""
        if self.active >= self.max_sessions:
            self.observer.rejected("too_many_sessions")
            log.warning("%d FastAGI sessions already running; closing a new one at once "
                        "(the dialplan sends that call to the normal queue)", self.active)
            conn.close()
            return
        self.active += 1
        task = asyncio.get_running_loop().create_task(self._accept(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, conn: AgiConnection) -> None:
        try:
            await self._session(conn)
        finally:
            self.active -= 1
            # Not waiting for the close: the transport closes the socket on its own, and
            # the session has nothing left to say.
            conn.close()

    async def _session(self, conn: AgiConnection) -> None:
        """One session under one deadline: ``env_timeout`` for the environment block, then
        ``session_timeout`` (from the connect) for the rest — the routing decision has its
        own, shorter budget in the handler, and each AGI command waits at most until the
        session's end (one timer per call instead of one per phase and command)."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        opened = loop.time()
        channel = AgiChannel(conn, conn, command_timeout=None)
        route = "?"
        outcome = "ok"
        phase = "env"
        try:
            async with asyncio.timeout_at(opened + self.env_timeout) as deadline:
                env = await channel.read_environment(
                    timeout=None, max_bytes=self.env_max_bytes, max_line=self.env_max_line,
                )
                phase = "route"
                deadline.reschedule(opened + self.session_timeout)
                route = env.route
                handler = self.routes.get(route)
                if handler is None:
                    outcome = "unknown_route"
                    handler = self.fallback
                await handler(AgiSession(channel=channel, env=env, peer_name=partial(_peer, conn)))
        except (AgiHangup, AgiDeadChannel) as exc:
            outcome = "hangup"
            log.info("FastAGI %s route %s: caller hung up (%s)", _peer(conn), route, exc)
        except AgiEndOfStream as exc:
            outcome = "closed"
            log.info("FastAGI %s route %s: connection closed early (%s)", _peer(conn), route,
                     exc)
        except AgiProtocolError as exc:
            outcome = "bad_client"
            log.info("FastAGI %s: dropped (%s)", _peer(conn), exc)
        except TimeoutError:
            outcome = "bad_client"
            if phase == "env":
                log.info("FastAGI %s: dropped (no complete environment block within %.1f s)",
                         _peer(conn), self.env_timeout)
            else:
                log.warning("FastAGI %s route %s: session exceeded %.1f s", _peer(conn),
                            route, self.session_timeout)
        except Exception:
            outcome = "error"
            log.exception("FastAGI %s route %s: handler failed", _peer(conn), route)
        finally:
            self.observer.session_end(route, outcome, time.perf_counter() - started)


def _peer(conn: AgiConnection) -> str:
    info = conn.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return f"{info[0]}:{info[1]}"
    return str(info or "")
