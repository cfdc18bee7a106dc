"""AMI events parsed and applied per second on a recorded stream (repeated with fresh ids).

Run: uv run python bench/bench_ami.py [--repeat N]. Prints figures; asserts nothing.
Baselines measured in the same run: the raw split into messages, and panoramisk's own
parser (Message.from_line) on the same bytes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from panoramisk.message import Message

from callrouter.ami.interfaces import InterfaceMap
from callrouter.ami.message import AmiStreamParser
from callrouter.ami.presence import PresenceBook
from callrouter.ami.tracker import CallTracker
from callrouter.domain.model import Operator
from callrouter.simulator.ami_traces import repeated_stream

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "asterisk" / "ami"
# A realistic mix: answered calls both ways, a ring-no-answer, an abandon, a direct dial.
MIX = ["ami-queue-answered-caller-hangup", "ami-queue-answered-agent-hangup",
       "ami-queue-ringnoanswer-then-other", "ami-queue-abandon", "ami-direct-dial-answered"]


def build_stream(repeat: int) -> bytes:
    return b"".join(repeated_stream(TRACES / f"{n}.events-on.session", repeat) for n in MIX)


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>12,.0f} events/s  ({n:,} events in {seconds:.3f} s)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=65536, help="socket read size")
    args = ap.parse_args()
    stream = build_stream(args.repeat)
    chunks = [stream[i:i + args.chunk] for i in range(0, len(stream), args.chunk)]
    n = stream.count(b"\r\n\r\n")
    print(f"stream: {len(stream) / 1e6:.1f} MB, {n:,} events, mix = {', '.join(MIX)}")

    t0 = time.perf_counter()
    count = sum(len(c.split(b"\r\n\r\n")) for c in chunks)
    print(f"baseline raw split     {rate(n, time.perf_counter() - t0)}  [{count}]")

    t0 = time.perf_counter()
    for block in stream.decode().split("\r\n\r\n"):
        Message.from_line(block)
    print(f"baseline panoramisk    {rate(n, time.perf_counter() - t0)}")

    t0 = time.perf_counter()
    parser = AmiStreamParser()
    parsed = 0
    for c in chunks:
        parsed += len(parser.feed(c))
    print(f"our parser             {rate(parsed, time.perf_counter() - t0)}")

    ops = {f"op{i}": Operator(id=f"op{i}", name=f"Op {i}",
                              interfaces=(f"Local/op{i}@operators/n",)) for i in (1, 2, 3)}
    imap = InterfaceMap(ops)
    records: list[object] = []
    tracker = CallTracker(imap, on_record=records.append, target_var="ROUTE_TARGET")
    presence = PresenceBook(imap)
    presence.connected = True
    table = {**presence.handlers, **tracker.handlers}
    parser = AmiStreamParser()
    t0 = time.perf_counter()
    now = time.time()
    applied = 0
    for c in chunks:
        for msg in parser.feed(c):
            handler = table.get(msg.name or "")
            if handler is not None:
                handler(msg, now)
            applied += 1
    tracker.tick(now + 3600)
    elapsed = time.perf_counter() - t0
    print(f"parse + apply (ours)   {rate(applied, elapsed)}")
    print(f"call records: {len(records):,}; calls still open: {len(tracker.calls)}; "
          f"target 30,000 events/s -> {'met' if applied / elapsed >= 30000 else 'NOT met'}")


if __name__ == "__main__":
    main()
