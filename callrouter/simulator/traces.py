"""Readers for the shared Asterisk trace files (``*.transcript`` and ``*.raw``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\"}


def unescape(text: str) -> bytes:
    """Undo the transcript escaping: ``\\n \\r \\t \\\\ \\xNN``, everything else literal."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x":
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
                continue
            out += _ESCAPES.get(nxt, nxt.encode())
            i += 2
            continue
        out += ch.encode("latin-1")
        i += 1
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Record:
    t: float
    direction: str  # "A>S", "S>A" or "**"
    data: bytes  # the bytes, or the note's text encoded for "**"


def read_transcript(path: Path) -> Iterator[Record]:
    for line in path.read_text(encoding="ascii").splitlines():
        if not line or line.startswith("#"):
            continue
        t, direction, rest = line.split(" ", 2)
        data = rest.encode() if direction == "**" else unescape(rest)
        yield Record(float(t), direction, data)


def exchanges(path: Path) -> list[tuple[bytes, bytes]]:
    """(command line, reply bytes) pairs after the env block; unsolicited HANGUPs dropped.

    Consecutive A>S records after a command form its reply (a 520 block is several).
    """
    pairs: list[tuple[bytes, bytes]] = []
    in_env = True
    for rec in read_transcript(path):
        if rec.direction == "A>S" and in_env:
            if rec.data == b"\n":
                in_env = False
            continue
        if rec.direction == "S>A":
            for part in rec.data.splitlines(keepends=True):
                pairs.append((part, b""))
        elif rec.direction == "A>S" and rec.data != b"HANGUP\n" and pairs:
            cmd, reply = pairs[-1]
            pairs[-1] = (cmd, reply + rec.data)
    return pairs


def env_lines(raw: bytes) -> list[tuple[str, str]]:
    """The (key, value) pairs of the env block at the start of a ``.raw`` file, in order."""
    block = raw.split(b"\n\n", 1)[0].decode("utf-8")
    return [tuple(line.split(": ", 1)) for line in block.split("\n")]  # type: ignore[misc]
