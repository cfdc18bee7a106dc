"""One FastAGI connection as an ``asyncio.Protocol``: the reading and writing halves an
``AgiChannel`` needs, without ``asyncio.start_server``'s stream machinery.

Why not streams: a FastAGI session is one short TCP connection per call (Asterisk connects,
sends the environment block, the daemon sends one ``EXEC MSet`` and reads one reply, then
hangs up). ``StreamReaderProtocol`` builds a ``StreamReader``, a ``StreamWriter`` and a
callback task for each, and every read goes through its waiter and flow-control layers;
at 1,500 calls/s that cost about as much CPU as reading the environment itself. This class
keeps one buffer and one waiter per connection and offers just the calls ``AgiChannel``
makes, with ``StreamReader``'s semantics and exceptions (``IncompleteReadError`` at the end
of the stream, ``LimitOverrunError`` when a separator is not found within the limit).

Memory stays bounded as with streams: past twice the limit the transport stops reading
until the session consumes what it holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class AgiConnection(asyncio.Protocol):
    """Reader (``readexactly``, ``readuntil``) and writer (``write``, ``drain``, ``close``,
    ``get_extra_info``) of one connection; ``on_open(self)`` runs at connect."""

    def __init__(self, limit: int, on_open: Callable[[AgiConnection], None]) -> None:
        self._limit = limit
        self._on_open = on_open
        self._buffer = bytearray()
        self._eof = False
        self._lost: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.transport: asyncio.Transport | None = None

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._on_open(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wake()
        if not self._paused and len(self._buffer) > 2 * self._limit:
            assert self.transport is not None
            try:
                self.transport.pause_reading()
                self._paused = True
            except NotImplementedError:  # pragma: no cover - every TCP transport can
                pass

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # nothing more will be read: let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._lost = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        if self._paused:
            self._paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _consume(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        if self._paused and len(self._buffer) <= self._limit:
            self._paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        return data

    # -- the reading half (as asyncio.StreamReader) ----------------------------------

    async def readexactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if self._eof:
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, n)
            await self._wait()
        return self._consume(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Up to and including ``separator``; ``LimitOverrunError`` when it does not come
        within the limit (the data stays in the buffer), ``IncompleteReadError`` when the
        stream ends first."""
        seplen = len(separator)
        offset = 0
        while True:
            found = self._buffer.find(separator, offset)
            if found != -1:
                if found > self._limit:
                    raise asyncio.LimitOverrunError(
                        "Separator is found, but chunk is longer than limit", found)
                return self._consume(found + seplen)
            offset = len(self._buffer) + 1 - seplen  # where the next search starts
            if offset > self._limit:
                raise asyncio.LimitOverrunError(
                    "Separator is not found, and chunk exceed the limit", offset)
            if self._eof:
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, None)
            offset = max(0, offset)
            await self._wait()

    # -- the writing half (as asyncio.StreamWriter) ----------------------------------

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Commands are a line each, far below any write buffer limit: only a connection
        that is gone needs saying."""
        if self._lost is not None:
            raise ConnectionResetError(str(self._lost))
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("connection closed")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self.transport is None:
            return default
        return self.transport.get_extra_info(name, default)
