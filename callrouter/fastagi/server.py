"""The FastAGI TCP server: accepts Asterisk's connections and dispatches them by route."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from callrouter.fastagi.handler import AgiRoute, SessionObserver
from callrouter.fastagi.protocol import ENV_MAX_BYTES, ENV_MAX_LINE, ENV_TIMEOUT
from callrouter.fastagi.session import AgiSessionProtocol

log = logging.getLogger("callrouter.fastagi")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4573
MAX_PENDING = 64 * 1024  # what a client may send after its environment block, unasked


class FastAgiServer:
    """``await FastAgiServer(routes, fallback=...).start()``; ``await server.close()``.

    Every session is bounded (``AgiSessionProtocol``): the environment block must arrive
    within ``env_timeout`` and ``env_max_bytes``, the whole session end within
    ``session_timeout`` (the routing decision has its own, shorter budget in the route);
    at most ``max_sessions`` run at once (others are closed at once,
    which Asterisk reports as AGISTATUS=SUCCESS with no variables: the dialplan's normal
    queue). A bad client only ever costs its own connection.
    """

    def __init__(
        self,
        routes: Mapping[str, AgiRoute],
        *,
        fallback: AgiRoute,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        env_timeout: float = ENV_TIMEOUT,
        env_max_bytes: int = ENV_MAX_BYTES,
        env_max_line: int = ENV_MAX_LINE,
        session_timeout: float = 5.0,
        max_sessions: int = 1000,
        max_pending: int = MAX_PENDING,
        observer: SessionObserver | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.fallback = fallback
        self.host = host
        self.port = port
        self.env_timeout = env_timeout
        self.env_max_bytes = env_max_bytes
        self.env_max_line = env_max_line
        self.session_timeout = session_timeout
        self.max_sessions = max_sessions
        self.max_pending = max_pending
        self.observer = observer or SessionObserver()
        self._server: asyncio.Server | None = None
        self._sessions: set[AgiSessionProtocol] = set()

    @property
    def active(self) -> int:
        """Sessions running now."""
        return len(self._sessions)

    async def start(self) -> FastAgiServer:
        self._server = await asyncio.get_running_loop().create_server(
            lambda: AgiSessionProtocol(self), self.host, self.port, backlog=1024,
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
        for session in list(self._sessions):
            session.abort()
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

    # -- for the sessions -------------------------------------------------------------

    def admit(self, session: AgiSessionProtocol) -> bool:
        """A connection was accepted: may its session run? (False: it is closed at once.)"""
        if len(self._sessions) >= self.max_sessions:
            self.observer.rejected("too_many_sessions")
            log.warning("%d FastAGI sessions already running; closing a new one at once "
                        "(the dialplan sends that call to the normal queue)",
                        len(self._sessions))
            return False
        self._sessions.add(session)
        return True

    def release(self, session: AgiSessionProtocol, route: str, outcome: str,
                seconds: float) -> None:
        """A session ended; ``outcome``: ok | hangup | closed | bad_client | error |
        unknown_route."""
        self._sessions.discard(session)
        self.observer.session_end(route, outcome, seconds)
