"""Asterisk's side of FastAGI, reproduced from the Asterisk 22 traces in ``../shared/asterisk``.

``run_call`` connects to a FastAGI server like ``AGI(agi://host:port/route,QUEUE)`` would:
it sends the environment block in Asterisk's byte format (one write per line), answers each
command with Asterisk's reply texts, records the variables set, and ends like Asterisk
(``HANGUP`` once the server closes). It keeps Asterisk's pipelining bug: a second command
sent in the same write is not answered until more bytes arrive. ``bad_client`` is the
toolkit of misbehaving peers for robustness tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

R_510 = b"510 Invalid or unknown command\n"
R_511 = b"511 Command Not Permitted on a dead channel or intercept routine\n"
_USAGE_HEAD = b"520-Invalid command syntax.  Proper usage follows:\n"
_USAGE_TAIL = b"520 End of proper usage.\n"
R_520_SET_VARIABLE = _USAGE_HEAD + b"Sets a variable to the current channel.\n" + _USAGE_TAIL
R_520_GET_VARIABLE = (
    _USAGE_HEAD
    + b"Returns <literal>0</literal> if <replaceable>variablename</replaceable> is not set. "
    b"Returns <literal>1</literal> if <replaceable>variablename</replaceable> is set and "
    b"returns the variable in parentheses.\n"
    b"Example return code: 200 result=1 (testvariable)\n" + _USAGE_TAIL
)

# The env keys in Asterisk 22's order (agi-basic.raw); agi_arg_N follow, then an empty line.
ENV_KEYS: tuple[str, ...] = (
    "agi_network", "agi_network_script", "agi_request", "agi_channel", "agi_language",
    "agi_type", "agi_uniqueid", "agi_version", "agi_callerid", "agi_calleridname",
    "agi_callingpres", "agi_callingani2", "agi_callington", "agi_callingtns", "agi_dnid",
    "agi_rdnis", "agi_context", "agi_extension", "agi_priority", "agi_enhanced",
    "agi_accountcode", "agi_threadid",
)  # fmt: skip


def environment_block(
    *,
    host: str = "127.0.0.1",
    port: int = 4573,
    script: str | None = "route",
    channel: str = "PJSIP/trunk-00000001",
    uniqueid: str = "1795425059.1",
    caller: str | None = "5551234",
    caller_name: str | None = None,
    callingpres: int = 0,
    args: Sequence[str] = (),
    context: str = "callrouter-inbound",
    extension: str = "s",
    priority: int = 2,
    language: str = "en",
    dnid: str | None = None,
    rdnis: str | None = None,
    accountcode: str = "",
    threadid: int | None = None,
    network: bool = True,
) -> list[bytes]:
    """The env lines as Asterisk writes them (each ends in LF; the last is the empty line).

    ``network=False`` gives the classic-AGI block (no ``agi_network`` lines, the request is
    the script name). Absent or empty caller ids are ``unknown``, as Asterisk sends them.
    """
    values: dict[str, str] = {
        "agi_network": "yes",
        "agi_network_script": script or "",
        "agi_request": f"agi://{host}:{port}/{script}" if script else f"agi://{host}:{port}",
        "agi_channel": channel,
        "agi_language": language,
        "agi_type": channel.split("/", 1)[0],
        "agi_uniqueid": uniqueid,
        "agi_version": "22.10.1",
        "agi_callerid": caller or "unknown",
        "agi_calleridname": caller_name or "unknown",
        "agi_callingpres": str(callingpres),
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": dnid or "unknown",
        "agi_rdnis": rdnis or "unknown",
        "agi_context": context,
        "agi_extension": extension,
        "agi_priority": str(priority),
        "agi_enhanced": "0.0",
        "agi_accountcode": accountcode,
        "agi_threadid": str(threadid if threadid is not None else random.getrandbits(47)),
    }
    keys = list(ENV_KEYS)
    if not network:
        keys = [k for k in keys if not k.startswith("agi_network")]
        values["agi_request"] = script or "callrouter-route.agi"
    elif not script:
        keys.remove("agi_network_script")  # only sent when the URL has a path
    lines = [f"{k}: {values[k]}\n".encode() for k in keys]
    lines += [f"agi_arg_{i}: {a}\n".encode() for i, a in enumerate(args, 1)]
    lines.append(b"\n")
    return lines


def parse_agi_args(line: str) -> list[str]:
    """Split a command line the way res_agi's parse_args does (quotes, backslash escapes)."""
    argv: list[str] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                argv.append("")
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            argv.append("")
            whitespace = False
        argv[-1] += ch
        escaped = False
    return argv


def split_app_args(data: str, delim: str = ",", limit: int = 0) -> list[str]:
    """Asterisk's app-argument splitter (quotes and backslashes removed, () [] nest)."""
    out: list[str] = [""]
    paren = bracket = 0
    quote = False
    i = 0
    while i < len(data):
        ch = data[i]
        if ch == "(":
            paren += 1
        elif ch == ")" and paren:
            paren -= 1
        elif ch == "[":
            bracket += 1
        elif ch == "]" and bracket:
            bracket -= 1
        elif ch == '"':
            quote = not quote
            i += 1
            continue
        elif ch == "\\":
            i += 1
            if i < len(data):
                out[-1] += data[i]
            i += 1
            continue
        elif ch == delim and not (paren or quote or bracket) and (not limit or len(out) < limit):
            out.append("")
            i += 1
            continue
        out[-1] += ch
        i += 1
    return out


@dataclass
class ChannelModel:
    """One channel as Asterisk's AGI sees it; ``answer`` gives the exact reply bytes."""

    channel: str = "PJSIP/trunk-00000001"
    uniqueid: str = "1795425059.1"
    caller: str | None = "5551234"
    caller_name: str | None = None
    answered: bool = False
    dead: bool = False
    sounds: frozenset[str] = frozenset({"silence/1", "callrouter/your-operator"})
    exec_replies: Mapping[str, bytes] = field(default_factory=dict)  # app (lower) -> reply
    variables: dict[str, str] = field(default_factory=dict)  # every variable on the channel
    set_by_agi: dict[str, str] = field(default_factory=dict)  # only those set over AGI

    def lookup(self, name: str) -> str | None:
        builtin = {
            "CALLERID(num)": self.caller or "",
            "CALLERID(name)": self.caller_name or "",
            "CHANNEL": self.channel,
            "UNIQUEID": self.uniqueid,
        }
        if name in self.variables:
            return self.variables[name]
        return builtin.get(name)

    def _set(self, name: str, value: str) -> None:
        self.variables[name] = value
        self.set_by_agi[name] = value

    def answer(self, line: bytes) -> bytes:
        """The reply to one command line (given without its LF; a CR stays in, as in Asterisk)."""
        argv = parse_agi_args(line.decode("utf-8", "replace"))
        words = [a.upper() for a in argv[:3]]
        if not argv:
            return R_510
        if words[0] == "NOOP" and len(argv) >= 1:
            return b"200 result=0\n"
        if words[0] == "ANSWER":
            if self.dead:
                return R_511
            self.answered = True
            return b"200 result=0\n"
        if words[0] == "VERBOSE":
            return b"200 result=1\n"
        if words[:2] == ["CHANNEL", "STATUS"]:
            if self.dead:
                return R_511
            if len(argv) > 2 and argv[2] != self.channel:
                return b"200 result=-1\n"
            return b"200 result=6\n" if self.answered else b"200 result=4\n"
        if words[:2] == ["SET", "VARIABLE"]:
            if len(argv) < 4:
                return R_520_SET_VARIABLE
            self._set(argv[2], argv[3])
            return b"200 result=1\n"
        if words[:2] == ["GET", "VARIABLE"]:
            if len(argv) < 3:
                return R_520_GET_VARIABLE
            value = self.lookup(argv[2])
            return b"200 result=0\n" if value is None else f"200 result=1 ({value})\n".encode()
        if words[:3] == ["GET", "FULL", "VARIABLE"] and len(argv) >= 4:
            return f"200 result=1 ({self._substitute(argv[3])})\n".encode()
        if words[:2] == ["STREAM", "FILE"]:
            if self.dead:
                return R_511
            return b"200 result=0 endpos=0\n"  # not in the traces: an approximation
        if words[0] == "EXEC" and len(argv) >= 2:
            return self._exec(argv[1], argv[2] if len(argv) > 2 else "")
        return R_510

    def _substitute(self, expr: str) -> str:
        out, i = "", 0
        while i < len(expr):
            if expr.startswith("${", i) and "}" in expr[i:]:
                end = expr.index("}", i)
                out += self.lookup(expr[i + 2 : end]) or ""
                i = end + 1
            else:
                out += expr[i]
                i += 1
        return out

    def _exec(self, app: str, data: str) -> bytes:
        name = app.lower()
        if name in self.exec_replies:
            return self.exec_replies[name]
        if name == "mset":
            for pair in split_app_args(data):
                parts = split_app_args(pair, "=", limit=2)
                if len(parts) == 2:
                    self._set(parts[0], parts[1])
            return b"200 result=0\n"
        if name == "set":
            key, sep, value = data.partition("=")
            if sep:
                self._set(key, value)
            return b"200 result=0\n"
        if name == "playback":
            if self.dead:
                return b"200 result=-1\n"
            self.answered = True
            ok = data.split(",", 1)[0] in self.sounds
            self.variables["PLAYBACKSTATUS"] = "SUCCESS" if ok else "FAILED"
            return b"200 result=0\n"
        if name in ("noop", "verbose", "log", "userevent"):
            return b"200 result=0\n"
        return b"200 result=-2\n"


@dataclass
class SimulatedCallResult:
    variables: dict[str, str]  # the variables the server set, in the order they were set
    agistatus: str  # SUCCESS | HANGUP | FAILURE (| STALLED: the simulator gave up waiting)
    commands: list[str]
    replies: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _StdioReader:
    """Asterisk reads commands with fgets() on a FILE* after poll() on the fd. fgets fills
    its buffer with everything the kernel has; poll only wakes for bytes still in the
    kernel. So a second command sent in the same write sits in the stdio buffer until more
    bytes arrive. This class reproduces that (``agi-pipelined.transcript``)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._kernel = bytearray()
        self._stdio = bytearray()
        self.eof = False

    async def _recv(self) -> bool:
        chunk = await self._reader.read(65536)
        if not chunk:
            self.eof = True
            return False
        self._kernel += chunk
        return True

    async def next_line(self) -> bytes | None:
        """The next command line without LF, or None at EOF (buffered lines come first)."""
        if not self._kernel and not self.eof:
            await self._recv()  # poll(): wait for bytes in the kernel
        if b"\n" not in self._stdio:
            self._stdio += self._kernel
            self._kernel.clear()
            while b"\n" not in self._stdio:
                if self.eof or not await self._recv():
                    return None
                self._stdio += self._kernel
                self._kernel.clear()
        line, _, rest = bytes(self._stdio).partition(b"\n")
        self._stdio[:] = rest
        return line


async def run_call(
    host: str,
    port: int,
    *,
    caller: str | None,
    queue: str,
    uniqueid: str = "1795425059.1",
    channel: str = "PJSIP/trunk-00000001",
    callingpres: int = 0,
    caller_name: str | None = None,
    route: str = "route",
    extra_args: Sequence[str] = (),
    hangup_after: float | None = None,
    exit_on_hangup: bool = False,
    sighup: bool = True,
    exec_replies: Mapping[str, bytes] | None = None,
    connect_timeout: float = 2.0,
    session_timeout: float = 10.0,
) -> SimulatedCallResult:
    """Play one ``AGI(agi://host:port/route,queue)`` call against a FastAGI server.

    ``hangup_after`` seconds after the env block the caller hangs up: Asterisk sends
    ``HANGUP`` (unless ``sighup`` is False, like ``AGISIGHUP=no``) and answers in dead mode;
    with ``exit_on_hangup`` (``AGIEXITONHANGUP=yes``) it sends ``HANGUP`` twice and closes.
    """
    started = time.perf_counter()
    model = ChannelModel(channel=channel, uniqueid=uniqueid, caller=caller,
                         caller_name=caller_name, exec_replies=dict(exec_replies or {}))
    result = SimulatedCallResult(variables=model.set_by_agi, agistatus="SUCCESS", commands=[])
    try:
        # MAX_AGI_CONNECT is 2000 ms in Asterisk
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                connect_timeout)
    except (OSError, TimeoutError):
        result.agistatus = "FAILURE"
        result.seconds = time.perf_counter() - started
        return result
    closed = asyncio.Event()

    def write(data: bytes) -> None:
        if not closed.is_set():
            writer.write(data)

    async def hang_up(delay: float) -> None:
        await asyncio.sleep(delay)
        model.dead = True
        if sighup:
            write(b"HANGUP\nHANGUP\n" if exit_on_hangup else b"HANGUP\n")
        if exit_on_hangup:
            closed.set()
            writer.close()

    hangup_task = None
    try:
        async with asyncio.timeout(session_timeout):
            for env_line in environment_block(host=host, port=port, script=route, channel=channel,
                                          uniqueid=uniqueid, caller=caller,
                                          caller_name=caller_name, callingpres=callingpres,
                                          args=(queue, *extra_args)):
                write(env_line)  # Asterisk does one write() per env line
            await writer.drain()
            if hangup_after is not None:
                hangup_task = asyncio.create_task(hang_up(hangup_after))
            stdio = _StdioReader(reader)
            while not closed.is_set():
                line = await stdio.next_line()
                if line is None:
                    break
                reply = model.answer(line)
                result.commands.append(line.decode("utf-8", "replace"))
                result.replies.append(reply.decode("utf-8", "replace"))
                write(reply)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
            # the server closed its side: Asterisk ends the session with HANGUP, then EOF
            if sighup:
                write(b"HANGUP\n")
    except TimeoutError:
        result.agistatus = "STALLED"
    except (ConnectionError, OSError):
        pass
    finally:
        if hangup_task is not None:
            hangup_task.cancel()
        closed.set()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if model.dead:
        result.agistatus = "HANGUP"
    result.seconds = time.perf_counter() - started
    return result


BadKind = Literal["silent", "half_header", "garbage", "oversized", "trickle"]


async def bad_client(host: str, port: int, kind: BadKind, *, hold: float = 5.0) -> str:
    """Misbehave against a FastAGI server; returns ``closed`` if the server hung up on us
    within ``hold`` seconds, ``held`` if we gave up first, ``refused`` if it never accepted.

    silent: connect and send nothing. half_header: a few env lines, then close. garbage:
    an HTTP request and binary noise. oversized: megabytes without a sensible line end.
    trickle: a valid-looking header one byte at a time, too slowly.
    """
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
    except (OSError, TimeoutError):
        return "refused"
    outcome = "held"
    try:
        async with asyncio.timeout(hold):
            if kind == "half_header":
                for line in environment_block(port=port)[:6]:
                    writer.write(line)
                await writer.drain()
                writer.close()
                return "closed"
            if kind == "garbage":
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(512) + b"\n\n")
                await writer.drain()
            elif kind == "oversized":
                chunk = b"agi_network: " + b"A" * 65536
                for _ in range(32):  # 2 MiB, one endless line
                    writer.write(chunk)
                    await writer.drain()
            elif kind == "trickle":
                for byte in b"".join(environment_block(port=port)):
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)
            while await reader.read(4096):
                pass
            outcome = "closed"
    except TimeoutError:
        outcome = "held"
    except (ConnectionError, OSError):
        outcome = "closed"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return outcome
