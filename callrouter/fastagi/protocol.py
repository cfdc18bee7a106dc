"""The AGI wire protocol: bounded environment read, one-command-at-a-time exchange, typed errors.

Facts from Asterisk 22 traces (``../shared/asterisk/README.md``) this module relies on:
LF-only lines; the environment is ``key: value`` lines (empty values keep a trailing space)
ended by an empty line; replies are one line except ``520-`` blocks, whose usage text may
itself contain ``200 result=1``; an unsolicited ``HANGUP`` line can arrive before any reply;
Asterisk does not answer a second pipelined command, so we always wait for each reply; and
Asterisk has no command timeout, so every read here has one.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

log = logging.getLogger("callrouter.fastagi")

ENV_TIMEOUT = 2.0
ENV_MAX_BYTES = 16 * 1024
ENV_MAX_LINE = 1024
COMMAND_TIMEOUT = 2.0
REPLY_MAX_LINES = 64  # a 520 usage block is a handful of lines; more is not Asterisk


class AgiError(Exception):
    """Base of every AGI channel error."""


class AgiHangup(AgiError):
    """Asterisk sent the unsolicited ``HANGUP`` line: the caller is gone."""


class AgiDeadChannel(AgiError):
    """``511 Command Not Permitted on a dead channel or intercept routine``."""


class AgiEndOfStream(AgiError):
    """The peer closed the connection."""


class AgiProtocolError(AgiError):
    """Garbage, an oversized line or block, or a timeout: not an Asterisk we can talk to."""


class AgiTimeout(AgiProtocolError):
    """Nothing (or not enough) arrived in time."""


@dataclass(frozen=True, slots=True)
class AgiEnvironment:
    """The ``agi_*`` block Asterisk sends first, plus the AGI() arguments."""

    values: Mapping[str, str]
    args: tuple[str, ...] = ()

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)

    @property
    def network_script(self) -> str:
        """Path after ``host:port/`` including any ``?query`` (empty for classic AGI)."""
        return self.get("agi_network_script")

    @property
    def route(self) -> str:
        """The route name: the script path without query string and slashes."""
        script = self.network_script
        if not script:
            # classic AGI: agi_request is the script file name
            script = self.get("agi_request").rsplit("/", 1)[-1]
        return script.split("?", 1)[0].strip("/")

    @property
    def query(self) -> str:
        return urlsplit(self.get("agi_request")).query if self.network_script else ""

    @property
    def channel(self) -> str:
        return self.get("agi_channel")

    @property
    def uniqueid(self) -> str:
        return self.get("agi_uniqueid")

    @property
    def callerid(self) -> str:
        return self.get("agi_callerid")

    @property
    def calleridname(self) -> str:
        return self.get("agi_calleridname")

    @property
    def callingpres(self) -> int | None:
        raw = self.get("agi_callingpres").strip()
        return int(raw) if raw.isdigit() else None

    def arg(self, n: int, default: str = "") -> str:
        """The n-th AGI() argument, 1-based like ``agi_arg_N``."""
        return self.args[n - 1] if 0 < n <= len(self.args) else default


# One environment line: ``agi_<name>: <value>`` (Asterisk always writes the space, even
# before an empty value; a bare ``agi_<name>:`` is tolerated as an empty value).
_ENV_LINE = re.compile(r"^(agi_[\x21-\x39\x3b-\x7e]*): ?(.*)$", re.MULTILINE)


def parse_environment_text(text: str) -> AgiEnvironment:
    """The block's text (lines joined by LF, without the ending empty line).

    One regex pass over the block (C speed) instead of a Python loop over ~25 lines; a
    line that is not ``agi_<name>: <value>`` makes the count differ and is named.
    """
    pairs = _ENV_LINE.findall(text)
    if len(pairs) != text.count("\n") + 1:
        for line in text.split("\n"):
            if _ENV_LINE.match(line) is None:
                raise AgiProtocolError(f"not an AGI environment line: {line[:60]!r}")
        raise AgiProtocolError("not an AGI environment block")  # pragma: no cover
    values = dict(pairs)
    args: list[str] = []
    n = 1
    while (arg := values.get(f"agi_arg_{n}")) is not None:
        args.append(arg)
        n += 1
    return AgiEnvironment(values=values, args=tuple(args))


_REPLY = re.compile(r"^(\d{3})(?:[ -](.*))?$")
_RESULT = re.compile(r"^result=(-?\d+)(?: \((.*)\))?(?: (.*))?$")


@dataclass(frozen=True, slots=True)
class AgiReply:
    """One reply: ``200 result=1 (data) extra``, or a 510/520 with its text."""

    code: int
    result: int | None = None
    data: str | None = None
    extra: str = ""
    lines: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.code == 200


_RESULT_0 = AgiReply(code=200, result=0, data=None, extra="", lines=("200 result=0",))


def parse_reply_line(line: str) -> AgiReply:
    if line == "200 result=0":  # what MSet and most commands answer: no regex needed
        return _RESULT_0
    m = _REPLY.match(line)
    if m is None:
        raise AgiProtocolError(f"not an AGI reply: {line[:60]!r}")
    code, rest = int(m.group(1)), m.group(2) or ""
    if code == 200:
        r = _RESULT.match(rest)
        if r is None:
            raise AgiProtocolError(f"200 reply without result=: {line[:60]!r}")
        return AgiReply(
            code=200, result=int(r.group(1)), data=r.group(2), extra=r.group(3) or "", lines=(line,)
        )
    return AgiReply(code=code, extra=rest, lines=(line,))


def quote_arg(value: str) -> str:
    """Quote one argument for res_agi's parser: ``"``, ``\\`` escaped, always inside quotes."""
    if "\n" in value or "\r" in value:
        raise ValueError("an AGI argument cannot contain CR or LF")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def environment_from_block(raw: bytes, *, max_bytes: int = ENV_MAX_BYTES,
                           max_line: int = ENV_MAX_LINE) -> AgiEnvironment:
    """The environment from its block as read off the wire: ``raw`` ends with the empty
    line (``b"\\n\\n"``; the block ``b"\\n\\n"`` alone is the empty block).

    Refused with a typed error: a block over ``max_bytes``, a line over ``max_line``, an
    empty block, a line that is not ``agi_<name>: <value>``; ``AgiHangup`` when Asterisk
    wrote ``HANGUP`` inside it (the caller hung up while the block was being sent).
    """
    if len(raw) > max_bytes:
        raise AgiProtocolError(f"environment block exceeds {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Asterisk passes caller names through as they came from the trunk
        text = raw.decode("latin-1")
    body = text[:-2]  # without the block's ending empty line
    if not body:
        raise AgiProtocolError("empty environment block")
    if len(body) > max_line and max(map(len, body.split("\n"))) > max_line:
        longest = max(map(len, body.split("\n")))
        raise AgiProtocolError(f"line of {longest + 1} bytes exceeds {max_line}")
    if "HANGUP" in body and "HANGUP" in body.split("\n"):
        raise AgiHangup("HANGUP inside the environment block")
    return parse_environment_text(body)


def unfinished_block(partial: bytes) -> AgiError:
    """The error for a stream that ended inside the environment block."""
    if b"HANGUP\n" in partial:
        return AgiHangup("HANGUP inside the environment block")
    return AgiEndOfStream(f"connection closed ({len(partial)} bytes pending)")


def decode_line(raw: bytes) -> str:
    """One reply line without its LF."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Asterisk passes caller names through as they came from the trunk
        return raw.decode("latin-1")


class ReplyReader:
    """Assembles replies from lines (sans-IO: fed one line at a time, by ``AgiChannel`` and
    by the FastAGI session alike).

    ``feed`` answers the reply once it is complete, else None: a ``HANGUP`` line before a
    reply only sets ``hungup`` (Asterisk still answers the command, in dead mode); a
    ``520-`` usage block ends only at its ``520 `` line (its text may contain ``200
    result=1``). Garbage and a block that does not end raise ``AgiProtocolError``.
    """

    __slots__ = ("_block", "hungup")

    def __init__(self) -> None:
        self.hungup = False
        self._block: list[str] | None = None

    def feed(self, line: str) -> AgiReply | None:
        block = self._block
        if block is not None:
            block.append(line)
            if line.startswith("520 "):
                self._block = None
                return AgiReply(code=520, extra="\n".join(block[1:-1]), lines=tuple(block))
            if len(block) > REPLY_MAX_LINES:
                raise AgiProtocolError("520 usage block does not end")
            return None
        if line == "HANGUP":
            self.hungup = True
            return None
        if line.startswith("520-"):
            self._block = [line]
            return None
        return parse_reply_line(line)


# Characters that pass unchanged through res_agi's parser *and* the app-argument splitter
# (commas, quotes, backslashes, parentheses, brackets and '=' are special there).
_MSET_SAFE = re.compile(r"^[A-Za-z0-9_./:@+#*~-]*$")


class VariableSetter:
    """The commands that set channel variables, in as few round trips as possible (sans-IO:
    ``first()``, then ``next(reply, hungup)`` after each reply, until None).

    Safe values go in one ``EXEC MSet A=1,B=2`` (one round trip, Asterisk answers ``200
    result=0``); a value with special characters gets its own ``SET VARIABLE``. If MSet is
    refused (510/520, or ``result=-2`` when the app is missing) every variable is set one by
    one. Once the caller hung up, no further ``SET VARIABLE`` is sent (``AgiHangup``).
    """

    __slots__ = ("_first", "_mset", "rest", "trips", "values")

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.rest: list[str] = []
        self.trips = 0
        self._mset = False
        if _MSET_SAFE.match("".join(values.values())):  # the usual case: one check for all
            pairs = [f"{key}={value}" for key, value in values.items()]
        else:
            pairs = []
            for key, value in values.items():
                if _MSET_SAFE.match(value):
                    pairs.append(f"{key}={value}")
                else:
                    self.rest.append(key)
        self._first: str | None = None
        if pairs:
            self._mset = True
            self._first = f"EXEC MSet {quote_arg(','.join(pairs))}"

    def first(self) -> str | None:
        if self._first is not None:
            self.trips += 1
            return self._first
        return self._next_set()

    def next(self, reply: AgiReply, hungup: bool) -> str | None:
        if self._mset:
            self._mset = False
            if not reply.ok or reply.result == -2:
                log.warning("MSet refused (%s %s); setting variables one by one",
                            reply.code, reply.extra[:60])
                self.rest = list(self.values)
        if self.rest and hungup:
            raise AgiHangup("caller hung up while variables were being set")
        return self._next_set()

    def _next_set(self) -> str | None:
        if not self.rest:
            return None
        key = self.rest.pop(0)
        self.trips += 1
        return f"SET VARIABLE {key} {quote_arg(self.values[key])}"


class LineReader(Protocol):
    """The reading half: an asyncio.StreamReader (classic entry) or an AgiConnection."""

    async def readexactly(self, n: int) -> bytes: ...

    async def readuntil(self, separator: bytes = b"\n") -> bytes: ...


class LineWriter(Protocol):
    """The writing half: an AgiConnection, or the classic entry's stdout writer."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class AgiChannel:
    """One AGI conversation over a stream pair (FastAGI socket or classic stdin/stdout).

    Exactly one command is outstanding at any time (Asterisk's pipelining bug).
    """

    def __init__(
        self,
        reader: LineReader,
        writer: LineWriter,
        *,
        command_timeout: float | None = COMMAND_TIMEOUT,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.command_timeout = command_timeout
        self.hungup = False
        self.commands_sent = 0

    async def _readline(self, max_line: int) -> str:
        try:
            raw = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            raise AgiEndOfStream(f"connection closed ({len(exc.partial)} bytes pending)") from None
        except asyncio.LimitOverrunError:
            raise AgiProtocolError("line longer than the stream limit") from None
        except (ConnectionError, OSError) as exc:
            raise AgiEndOfStream(f"connection lost: {exc}") from None
        if len(raw) > max_line + 1:
            raise AgiProtocolError(f"line of {len(raw)} bytes exceeds {max_line}")
        return decode_line(raw[:-1])

    async def read_environment(
        self,
        *,
        timeout: float | None = ENV_TIMEOUT,
        max_bytes: int = ENV_MAX_BYTES,
        max_line: int = ENV_MAX_LINE,
    ) -> AgiEnvironment:
        """Read the env block (until the empty line) within ``timeout`` and ``max_bytes``.

        The block is read in one ``readuntil(b"\n\n")`` rather than a line at a time (a
        block is about 25 lines: reading them one by one cost more than the routing
        decision). The reader's limit must be at least ``max_bytes``: a block that does not
        end within it is refused, whatever the client keeps sending. ``timeout=None``: the
        caller bounds the read itself (the FastAGI server's one deadline per session).
        """
        if timeout is None:
            raw = await self._read_block(max_bytes)
        else:
            try:
                async with asyncio.timeout(timeout):
                    raw = await self._read_block(max_bytes)
            except TimeoutError:
                raise AgiTimeout(
                    f"no complete environment block within {timeout:.1f} s"
                ) from None
        return environment_from_block(raw, max_bytes=max_bytes, max_line=max_line)

    async def _read_block(self, max_bytes: int) -> bytes:
        try:
            first = await self._reader.readexactly(1)
            if first == b"\n":  # the empty line first: an empty block, refused at once
                return first + b"\n"
            return first + await self._reader.readuntil(b"\n\n")
        except asyncio.IncompleteReadError as exc:
            raise unfinished_block(exc.partial) from None
        except asyncio.LimitOverrunError:
            raise AgiProtocolError(f"environment block exceeds {max_bytes} bytes") from None
        except (ConnectionError, OSError) as exc:
            raise AgiEndOfStream(f"connection lost: {exc}") from None

    async def command(self, line: str, *, max_line: int = 8192) -> AgiReply:
        """Send one command and wait for its whole reply.

        A ``HANGUP`` line before the reply only sets ``hungup``: Asterisk still answers the
        command (in dead mode). ``511`` raises AgiDeadChannel.
        """
        if "\n" in line or "\r" in line:
            raise ValueError("an AGI command is one line; CR would become part of an argument")
        try:
            self._writer.write(line.encode("utf-8") + b"\n")
            self.commands_sent += 1
            if self.command_timeout is None:  # bounded by the caller (the session deadline)
                await self._writer.drain()
                reply = await self._read_reply(max_line)
            else:
                async with asyncio.timeout(self.command_timeout):
                    await self._writer.drain()
                    reply = await self._read_reply(max_line)
        except TimeoutError:
            raise AgiTimeout(f"no reply to {line.split(' ', 1)[0]} within "
                             f"{self.command_timeout:.1f} s") from None
        except (ConnectionError, OSError) as exc:
            raise AgiEndOfStream(f"connection lost: {exc}") from None
        if reply.code == 511:
            raise AgiDeadChannel(reply.extra)
        return reply

    async def _read_reply(self, max_line: int) -> AgiReply:
        replies = ReplyReader()
        while (reply := replies.feed(await self._readline(max_line))) is None:
            pass
        if replies.hungup:
            self.hungup = True
        return reply

    def close(self) -> None:
        try:
            self._writer.close()
        except (ConnectionError, OSError, RuntimeError):
            pass


async def set_variables(channel: AgiChannel, values: Mapping[str, str]) -> int:
    """Set channel variables over ``channel`` (``VariableSetter``'s commands, each awaited);
    returns the round trips."""
    setter = VariableSetter(values)
    command = setter.first()
    while command is not None:  # the setter refuses a SET VARIABLE after HANGUP
        reply = await channel.command(command)
        command = setter.next(reply, channel.hungup)
    return setter.trips
