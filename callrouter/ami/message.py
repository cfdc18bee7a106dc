"""AMI messages as header maps, and an incremental parser for Asterisk's side of the stream."""

from __future__ import annotations

import logging
from collections.abc import Iterator

log = logging.getLogger(__name__)

BANNER_PREFIX = "Asterisk Call Manager/"
_TERMINATOR = b"\r\n\r\n"
# A message larger than this without a blank line is garbage (or an attack): drop it.
MAX_MESSAGE_BYTES = 256 * 1024


class OnceLog:
    """Logs a warning the first time a kind of anomaly is seen, then only counts it.

    AMI streams are long: a missing header repeated on every event must not flood the log.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self.counts: dict[str, int] = {}

    def __call__(self, kind: str, detail: str = "") -> None:
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        if n == 1:
            self._log.warning("AMI: %s%s (logged once; further ones are counted)",
                              kind, f": {detail}" if detail else "")


class AmiMessage:
    """One AMI message: the first value of each header, plus every value of repeated ones.

    Header names keep Asterisk's spelling (``Uniqueid``, ``DestUniqueid``); lookups are
    exact, which is what makes this fast. Repeated headers (``Variable:``, ``Output:``)
    are kept in order and read with :meth:`getall`.
    """

    __slots__ = ("_multi", "headers", "name")

    def __init__(self, headers: dict[str, str],
                 multi: dict[str, list[str]] | None = None) -> None:
        self.headers = headers
        self._multi = multi
        self.name: str | None = headers.get("Event")

    @classmethod
    def of(cls, **headers: str) -> AmiMessage:
        return cls(dict(headers))

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.headers.get(key, default)

    def getall(self, key: str) -> list[str]:
        if self._multi is not None and key in self._multi:
            return list(self._multi[key])
        value = self.headers.get(key)
        return [] if value is None else [value]

    def __getitem__(self, key: str) -> str:
        return self.headers[key]

    def __contains__(self, key: object) -> bool:
        return key in self.headers

    @property
    def action_id(self) -> str | None:
        return self.headers.get("ActionID")

    @property
    def is_response(self) -> bool:
        return "Response" in self.headers

    def items(self) -> Iterator[tuple[str, str]]:
        """Every header in wire order per name, duplicates included."""
        for key, value in self.headers.items():
            if self._multi is not None and key in self._multi:
                for v in self._multi[key]:
                    yield key, v
            else:
                yield key, value

    def to_bytes(self) -> bytes:
        return ("".join(f"{k}: {v}\r\n" for k, v in self.items()) + "\r\n").encode()

    def __repr__(self) -> str:
        return f"AmiMessage({self.headers!r})"


def parse_block(block: str, anomaly: OnceLog | None = None) -> AmiMessage | None:
    """Parse one message (the text between blank lines). ``None`` for a block of garbage."""
    headers: dict[str, str] = {}
    multi: dict[str, list[str]] | None = None
    for line in block.split("\r\n"):
        name, sep, value = line.partition(": ")
        if not sep:
            if line.endswith(":"):  # "Name:" with no space: an empty value
                name, value = line[:-1], ""
            elif not line or line.startswith(BANNER_PREFIX):
                continue
            else:
                if anomaly is not None:
                    anomaly("garbage line", repr(line[:80]))
                continue
        if value and value[-1] == "\r":
            # A stray CR inside a value (seen: "Command: NOOP\r\r\n" after a CRLF AGI client).
            value = value.rstrip("\r")
        if name in headers:
            if multi is None:
                multi = {}
            if name not in multi:
                multi[name] = [headers[name]]
            multi[name].append(value)
        else:
            headers[name] = value
    if not headers:
        return None
    if "Event" not in headers and "Response" not in headers:
        if anomaly is not None:
            anomaly("message without Event or Response", repr(block[:80]))
        return None
    return AmiMessage(headers, multi)


class AmiStreamParser:
    """Turns the bytes Asterisk sends into messages, whatever the read boundaries.

    The banner (``Asterisk Call Manager/11.0.0\\r\\n``) is a single line with no blank
    line after it, so it is glued to the first response: strip it from the head of the
    stream. A connection cut mid-message leaves a partial block in the buffer; the
    owner calls :meth:`reset` on reconnect so it is never glued to the next stream.
    """

    def __init__(self, anomaly: OnceLog | None = None) -> None:
        self._buf = b""
        self._at_start = True
        self.banner: str | None = None
        self.anomaly = anomaly or OnceLog(log)
        self.messages = 0

    def reset(self) -> None:
        if self._buf.strip():
            self.anomaly("connection ended inside a message", f"{len(self._buf)} bytes dropped")
        self._buf = b""
        self._at_start = True

    def feed(self, data: bytes) -> list[AmiMessage]:
        buf = self._buf + data if self._buf else data
        if self._at_start:
            if len(buf) < len(BANNER_PREFIX) and BANNER_PREFIX.encode().startswith(buf):
                self._buf = buf
                return []
            self._at_start = False
            if buf.startswith(BANNER_PREFIX.encode()):
                end = buf.find(b"\r\n")
                if end < 0:
                    self._buf = buf
                    self._at_start = True
                    return []
                self.banner = buf[:end].decode("ascii", "replace")
                buf = buf[end + 2:]
        parts = buf.split(_TERMINATOR)
        rest = parts.pop()
        if len(rest) > MAX_MESSAGE_BYTES:
            self.anomaly("oversized message without terminator", f"{len(rest)} bytes dropped")
            rest = b""
        self._buf = rest
        out: list[AmiMessage] = []
        anomaly = self.anomaly
        for raw in parts:
            if not raw:
                continue
            msg = parse_block(raw.decode("utf-8", "replace"), anomaly)
            if msg is not None:
                out.append(msg)
        self.messages += len(out)
        return out


def to_int(value: str | None, default: int = 0) -> int:
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        try:
            return int(float(value))
        except ValueError:
            return default
