"""One FastAGI session as an ``asyncio.Protocol``: the whole conversation in callbacks.

A FastAGI session is one short TCP connection per call: Asterisk connects and sends the
environment block, the daemon decides and sends one ``EXEC MSet``, Asterisk answers
``200 result=0``, the daemon hangs up. This class runs that as a state machine driven by
the transport's callbacks:

    ENV ──block complete──▶ ROUTING ──route answers──▶ COMMANDS ──last reply──▶ DONE
     │                         │                          │
     └──── timeout, garbage, oversized, EOF, HANGUP, 511, session deadline ────▶ DONE

Why not a coroutine per session: a task awaiting an ``AgiChannel`` over a stream-like
reader went through a task, a timeout context and six or seven coroutine frames per await,
and woke three futures per call; at 1,500 calls/s that cost more CPU than the routing
decision (measured in docs/performance.md). Here the only task per call is the routing
itself. The wire rules are the ones ``AgiChannel`` follows, from the same sans-IO pieces
(``environment_from_block``, ``ReplyReader``, ``VariableSetter``): one command outstanding
at a time, LF-only lines, ``HANGUP`` lines before a reply, ``520-`` blocks.

Every session is bounded: ``env_timeout`` from the connect for the environment block,
``env_max_bytes`` for its size, ``session_timeout`` from the connect for everything; and
whatever a client sends after the block is limited to ``max_pending`` bytes. One timer per
session covers both deadlines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from callrouter.fastagi.protocol import (
    AgiDeadChannel,
    AgiEndOfStream,
    AgiError,
    AgiHangup,
    AgiProtocolError,
    ReplyReader,
    VariableSetter,
    decode_line,
    environment_from_block,
    unfinished_block,
)

if TYPE_CHECKING:
    from callrouter.fastagi.handler import Abandon, Delivered
    from callrouter.fastagi.server import FastAgiServer

log = logging.getLogger("callrouter.fastagi")

_ENV, _ROUTING, _COMMANDS, _DONE = range(4)
MAX_REPLY_LINE = 8192


class AgiSessionProtocol(asyncio.Protocol):
    """The daemon's end of one FastAGI connection (created by ``FastAgiServer``)."""

    __slots__ = (
        "_abandon", "_buffer", "_delivered", "_opened", "_replies", "_route", "_scan",
        "_server", "_setter", "_started", "_state", "_timer", "_unknown", "transport",
    )

    def __init__(self, server: FastAgiServer) -> None:
        self._server = server
        self._state = _ENV
        self._buffer = bytearray()
        self._scan = 0  # where the search for the block's end goes on
        self._route = "?"
        self._unknown = False  # the route is not one of the server's: the fallback answers
        self._abandon: Abandon | None = None
        self._setter: VariableSetter | None = None
        self._replies: ReplyReader | None = None
        self._delivered: Delivered | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._opened = 0.0
        self._started = 0.0
        self.transport: asyncio.Transport | None = None

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self._server
        if not server.admit(self):
            self._state = _DONE
            transport.close()
            return
        loop = asyncio.get_running_loop()
        self._started = time.perf_counter()
        self._opened = loop.time()
        self._timer = loop.call_at(self._opened + server.env_timeout, self._on_timer)

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == _DONE:
            return
        self._buffer += data
        if state == _ENV:
            self._read_environment()
            if not self._buffer or self._state == _DONE:
                return
        if len(self._buffer) > self._server.max_pending:
            self._fail(AgiProtocolError(f"{len(self._buffer)} bytes sent unasked"))
        elif self._state == _COMMANDS:
            self._read_replies()
        # _ROUTING: kept (a HANGUP line) until the first command's reply is read

    def eof_received(self) -> bool:
        if self._state == _ENV:
            self._fail(unfinished_block(bytes(self._buffer)))
        elif self._state != _DONE:
            self._fail(AgiEndOfStream("connection closed"))
        return False  # nothing more will be read: let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state != _DONE:
            self._fail(AgiEndOfStream(f"connection lost: {exc}" if exc else
                                      "connection closed"))

    # -- the conversation -------------------------------------------------------------

    def _read_environment(self) -> None:
        buffer = self._buffer
        server = self._server
        if buffer[:1] == b"\n":  # the empty line first: an empty block
            end = 0
        else:
            end = buffer.find(b"\n\n", self._scan)
            if end == -1:
                if len(buffer) > server.env_max_bytes:
                    self._fail(AgiProtocolError(
                        f"environment block exceeds {server.env_max_bytes} bytes"))
                else:
                    self._scan = max(0, len(buffer) - 1)
                return
            end += 1
        raw = bytes(buffer[:end + 1])
        del buffer[:end + 1]
        try:
            env = environment_from_block(raw, max_bytes=server.env_max_bytes,
                                         max_line=server.env_max_line)
        except AgiError as exc:
            self._fail(exc)
            return
        self._state = _ROUTING
        self._route = env.route
        route = server.routes.get(self._route)
        if route is None:
            route = server.fallback
            self._unknown = True
        try:
            self._abandon = route(env, self.peer, self._answer)
        except Exception:
            log.exception("FastAGI %s route %s: handler failed", self.peer(), env.route)
            self._finish("error")

    def _answer(self, values: Mapping[str, str], delivered: Delivered) -> None:
        """The route's answer: send the variables (one command at a time)."""
        if self._state != _ROUTING:
            return  # the session already ended (timeout, connection gone)
        self._state = _COMMANDS
        self._delivered = delivered
        self._replies = ReplyReader()
        try:
            self._setter = VariableSetter(values)
            self._send(self._setter.first())
        except Exception:
            log.exception("FastAGI %s route %s: handler failed", self.peer(), self._route)
            self._finish("error")
            return
        if self._buffer and self._state == _COMMANDS:
            self._read_replies()  # what came while routing (a HANGUP line)

    def _send(self, command: str | None) -> None:
        if command is None:
            delivered, self._delivered = self._delivered, None
            self._finish("ok")
            if delivered is not None:
                try:
                    delivered()
                except Exception:
                    log.exception("FastAGI route %s: delivery observer failed", self._route)
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            self._fail(AgiEndOfStream("connection closed"))
            return
        transport.write(command.encode("utf-8") + b"\n")

    def _read_replies(self) -> None:
        buffer = self._buffer
        replies, setter = self._replies, self._setter
        assert replies is not None and setter is not None
        while self._state == _COMMANDS:
            nl = buffer.find(b"\n")
            if nl == -1:
                if len(buffer) > MAX_REPLY_LINE:
                    self._fail(AgiProtocolError(
                        f"line of {len(buffer)} bytes exceeds {MAX_REPLY_LINE}"))
                return
            if nl > MAX_REPLY_LINE:
                self._fail(AgiProtocolError(f"line of {nl + 1} bytes exceeds {MAX_REPLY_LINE}"))
                return
            line = decode_line(bytes(buffer[:nl]))
            del buffer[:nl + 1]
            try:
                reply = replies.feed(line)
                if reply is None:
                    continue
                if reply.code == 511:
                    raise AgiDeadChannel(reply.extra)
                command = setter.next(reply, replies.hungup)
            except AgiError as exc:
                self._fail(exc)
                return
            self._send(command)

    def _on_timer(self) -> None:
        """The session's one timer: the environment's deadline, then the session's."""
        if self._state == _DONE:
            return
        server = self._server
        if self._state == _ENV:
            log.info("FastAGI %s: dropped (no complete environment block within %.1f s)",
                     self.peer(), server.env_timeout)
            self._finish("bad_client")
            return
        deadline = self._opened + server.session_timeout
        loop = asyncio.get_running_loop()
        if loop.time() < deadline:
            self._timer = loop.call_at(deadline, self._on_timer)
            return
        log.warning("FastAGI %s route %s: session exceeded %.1f s", self.peer(),
                    self._route, server.session_timeout)
        abandon, self._abandon = self._abandon, None
        if self._state == _ROUTING and abandon is not None:
            abandon()  # a route that never answered: do not let it run on
        self._finish("bad_client")

    def _fail(self, exc: AgiError) -> None:
        if isinstance(exc, (AgiHangup, AgiDeadChannel)):
            log.info("FastAGI %s route %s: caller hung up (%s)", self.peer(), self._route, exc)
            self._finish("hangup")
        elif isinstance(exc, AgiEndOfStream):
            log.info("FastAGI %s route %s: connection closed early (%s)", self.peer(),
                     self._route, exc)
            self._finish("closed")
        else:
            log.info("FastAGI %s: dropped (%s)", self.peer(), exc)
            self._finish("bad_client")

    def _finish(self, outcome: str) -> None:
        if self._state == _DONE:
            return
        self._state = _DONE
        if self._timer is not None:
            self._timer.cancel()
        self._buffer.clear()
        if self._unknown and outcome == "ok":
            outcome = "unknown_route"
        # Not waiting for the close: the transport closes the socket on its own, and the
        # session has nothing left to say.
        if self.transport is not None:
            self.transport.close()
        # Nothing of the call may keep the session alive: the timer's callback, the route's
        # abandon (whose routing holds this session's answer) and the transport all point
        # back here, and cycles left to the garbage collector were 25 objects a call that
        # reached the old generations and made full collections (20 ms at 1,500 calls/s).
        self._timer = None
        self._abandon = None
        self._delivered = None
        self._setter = None
        self._replies = None
        self.transport = None
        self._server.release(self, self._route, outcome, time.perf_counter() - self._started)

    def abort(self) -> None:
        """The server is closing: drop the routing in flight and the connection."""
        abandon, self._abandon = self._abandon, None
        if self._state == _ROUTING and abandon is not None:
            abandon()
        if self._state != _DONE:
            self._finish("closed")

    def peer(self) -> str:
        """Who is at the other end, for log lines (asked only when one is written)."""
        info = self.transport.get_extra_info("peername") if self.transport else None
        if isinstance(info, tuple) and len(info) >= 2:
            return f"{info[0]}:{info[1]}"
        return str(info or "")

