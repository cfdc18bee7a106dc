"""Reads recorded AMI sessions (``.session`` bytes + ``.timeline`` index) of shared/asterisk."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TraceMessage:
    t: float
    direction: str  # "A>C" (Asterisk -> client) or "C>A"
    raw: bytes

    @property
    def is_event(self) -> bool:
        return self.raw.startswith(b"Event: ")

    def header(self, name: str) -> str | None:
        m = re.search(rb"(?m)^" + re.escape(name.encode()) + rb": ([^\r]*)\r$", self.raw)
        return m.group(1).decode() if m else None


def load_session(path: Path | str) -> list[TraceMessage]:
    """Every message of a session in wire order; the timeline gives direction and bounds."""
    p = Path(path)
    stem = str(p)[: -len(".session")] if str(p).endswith(".session") else str(p)
    data = Path(stem + ".session").read_bytes()
    out: list[TraceMessage] = []
    for line in Path(stem + ".timeline").read_text().splitlines():
        parts = line.split(None, 4)
        if len(parts) < 4 or parts[1] not in ("A>C", "C>A"):
            continue
        off, length = int(parts[2]), int(parts[3])
        msg = TraceMessage(float(parts[0]), parts[1], data[off: off + length])
        # The recorder sometimes logs a client action twice (same offset): keep one.
        if out and out[-1].direction == msg.direction and out[-1].raw == msg.raw \
                and msg.direction == "C>A":
            continue
        out.append(msg)
    return out


def asterisk_events(path: Path | str, *, keep_lists: bool = False) -> list[TraceMessage]:
    """The asynchronous events Asterisk sent, without banner, responses and (by default)
    the list events answering the recording driver's own actions (they carry ActionID)."""
    out = []
    for m in load_session(path):
        if m.direction != "A>C" or not m.is_event:
            continue
        if not keep_lists and b"\r\nActionID: " in m.raw:
            continue
        if m.raw.startswith((b"Event: FullyBooted\r\n", b"Event: SuccessfulAuth\r\n")):
            continue
        out.append(m)
    return out


_ID_HEADER = re.compile(
    rb"(?m)^((?:Dest)?(?:Uniqueid|Linkedid)|[A-Za-z]*Uniqueid|[A-Za-z]*Linkedid): "
    rb"(\d+\.\d+)\r$")


def fresh_ids(raw: bytes, prefix: str) -> bytes:
    """Rewrite every uniqueid/linkedid value so a repeated trace looks like new calls."""
    return _ID_HEADER.sub(lambda m: m.group(1) + b": " + prefix.encode() + m.group(2) + b"\r",
                          raw)


def repeated_stream(path: Path | str, times: int) -> bytes:
    """One byte stream of ``times`` copies of a trace's events, each with fresh ids."""
    events = [m.raw for m in asterisk_events(path)]
    chunks: list[bytes] = []
    for n in itertools.islice(itertools.count(), times):
        prefix = f"9{n}"
        chunks.extend(fresh_ids(raw, prefix) for raw in events)
    return b"".join(chunks)
