"""FastAGI adapter: the wire protocol, the ``route`` handler and the TCP server."""

from __future__ import annotations

from callrouter.fastagi.handler import (
    AgiRoute,
    RouteHandler,
    Router,
    SessionObserver,
    route_table,
)
from callrouter.fastagi.server import DEFAULT_HOST, DEFAULT_PORT, FastAgiServer


def build_server(
    router: Router,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    budget: float = 0.5,
    default_queue: str = "support",
    server_id: str = "default",
    observer: SessionObserver | None = None,
    max_sessions: int = 1000,
) -> FastAgiServer:
    """The FastAGI server with the ``route`` route on ``router`` (call ``await .start()``)."""
    handler = RouteHandler(router, budget=budget, default_queue=default_queue,
                           server_id=server_id, observer=observer)
    return FastAgiServer(route_table(handler), fallback=handler.on_unknown_route, host=host,
                         port=port, observer=observer, max_sessions=max_sessions)


__all__ = [
    "AgiRoute",
    "FastAgiServer",
    "RouteHandler",
    "Router",
    "SessionObserver",
    "build_server",
    "route_table",
]
