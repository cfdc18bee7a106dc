"""AgiConnection reads as asyncio.StreamReader does (same results, same exceptions) and
holds at most about twice its limit of a client that floods it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callrouter.fastagi.connection import AgiConnection


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.paused = False
        self.closed = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


def pair(limit: int = 64) -> tuple[AgiConnection, asyncio.StreamReader, FakeTransport]:
    opened: list[AgiConnection] = []
    conn = AgiConnection(limit, opened.append)
    transport = FakeTransport()
    conn.connection_made(transport)
    assert opened == [conn]
    return conn, asyncio.StreamReader(limit=limit), transport


def feed(conn: AgiConnection, reader: asyncio.StreamReader, data: bytes) -> None:
    conn.data_received(data)
    reader.feed_data(data)


def eof(conn: AgiConnection, reader: asyncio.StreamReader) -> None:
    conn.eof_received()
    reader.feed_eof()


async def both(conn: AgiConnection, reader: asyncio.StreamReader, call: str,
               *args: Any) -> tuple[Any, Any]:
    """The same read on both; the result or the exception (type and fields) of each."""
    out = []
    for source in (conn, reader):
        try:
            out.append(await asyncio.wait_for(getattr(source, call)(*args), 0.5))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            out.append((type(exc).__name__, getattr(exc, "partial", None),
                        getattr(exc, "consumed", None)))
    return out[0], out[1]


@pytest.mark.parametrize("chunks", [
    [b"agi_request: x\nagi_channel: y\n\nrest"],
    [b"agi_req", b"uest: x\n", b"\n", b"200 result=0\n"],
    [b"a\n", b"\n"],
])
async def test_readuntil_and_readexactly_match_stream_reader(chunks: list[bytes]) -> None:
    conn, reader, _ = pair()
    for chunk in chunks:
        feed(conn, reader, chunk)
    assert await conn.readexactly(1) == await reader.readexactly(1)
    got, want = await both(conn, reader, "readuntil", b"\n\n")
    assert got == want


async def test_a_read_waits_for_the_data_that_completes_it() -> None:
    conn, _, _ = pair()
    read = asyncio.ensure_future(conn.readuntil(b"\n\n"))
    conn.data_received(b"agi_request: x\n")
    await asyncio.sleep(0)
    assert not read.done()
    conn.data_received(b"\n")
    assert await read == b"agi_request: x\n\n"


async def test_end_of_stream_and_limit_raise_as_stream_reader_does() -> None:
    conn, reader, _ = pair(limit=16)
    feed(conn, reader, b"x" * 40)  # no separator within the limit
    got, want = await both(conn, reader, "readuntil", b"\n\n")
    assert got == want and got[0] == "LimitOverrunError"

    conn, reader, _ = pair()
    feed(conn, reader, b"agi_request: half")
    eof(conn, reader)
    got, want = await both(conn, reader, "readuntil", b"\n\n")
    assert got == want == ("IncompleteReadError", b"agi_request: half", None)

    conn, reader, _ = pair()
    eof(conn, reader)
    got, want = await both(conn, reader, "readexactly", 1)
    assert got == want == ("IncompleteReadError", b"", None)


async def test_a_lost_connection_ends_a_waiting_read_and_fails_drain() -> None:
    conn, _, _ = pair()
    read = asyncio.ensure_future(conn.readuntil(b"\n"))
    await asyncio.sleep(0)
    conn.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(asyncio.IncompleteReadError):
        await read
    with pytest.raises(ConnectionResetError):
        await conn.drain()


async def test_a_flood_pauses_reading_past_twice_the_limit_and_resumes_when_read() -> None:
    conn, _, transport = pair(limit=100)
    conn.data_received(b"x" * 80 + b"\n" + b"y" * 60 + b"\n")
    assert not transport.paused
    conn.data_received(b"z" * 70)  # 212 bytes held: more than twice the limit
    assert transport.paused
    assert await conn.readuntil(b"\n") == b"x" * 80 + b"\n"
    assert transport.paused  # 131 bytes left: still more than the limit
    assert await conn.readuntil(b"\n") == b"y" * 60 + b"\n"
    assert not transport.paused  # 70 bytes left: within the limit again


async def test_the_writing_half_goes_to_the_transport() -> None:
    conn, _, transport = pair()
    conn.write(b"EXEC MSet \"A=1\"\n")
    await conn.drain()
    assert transport.written == [b"EXEC MSet \"A=1\"\n"]
    assert conn.get_extra_info("peername") == ("127.0.0.1", 40000)
    conn.close()
    assert transport.closed
    with pytest.raises(ConnectionResetError):
        await conn.drain()
