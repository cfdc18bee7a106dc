"""AMI events parsed and applied per second on a recorded stream (repeated with fresh ids),
and what writing the call records that come out of it costs the store.

Run: uv run python bench/bench_ami.py [--repeat N] [--no-pg]. Prints figures; asserts
nothing. Baselines measured in the same run: the raw split into messages, panoramisk's own
parser (Message.from_line) on the same bytes, and, for the store, the final records alone
(what was written before live records) against live + final records, the way the
listener's writer batches them (500 a transaction), on SQLite and on a throw-away
PostgreSQL database (``bench/seed.py``; skipped when PostgreSQL does not answer).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path

from panoramisk.message import Message

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.seed import bench_database  # noqa: E402
from callrouter.ami.interfaces import InterfaceMap  # noqa: E402
from callrouter.ami.message import AmiStreamParser  # noqa: E402
from callrouter.ami.presence import PresenceBook  # noqa: E402
from callrouter.ami.tracker import CallTracker  # noqa: E402
from callrouter.domain.model import Operator  # noqa: E402
from callrouter.service.ports import CallRecord  # noqa: E402
from callrouter.simulator.ami_traces import repeated_stream  # noqa: E402
from callrouter.store import Store, make_engine, make_sessionmaker, upgrade  # noqa: E402

TRACES = Path(os.environ.get("CALLROUTER_ASTERISK_TRACES")
              or ROOT.parent / "shared" / "asterisk") / "ami"
BATCH = 500  # CallRecordWriter's batch_size
# A realistic mix: answered calls both ways, a ring-no-answer, an abandon, a direct dial.
MIX = ["ami-queue-answered-caller-hangup", "ami-queue-answered-agent-hangup",
       "ami-queue-ringnoanswer-then-other", "ami-queue-abandon", "ami-direct-dial-answered"]


def build_stream(repeat: int) -> bytes:
    return b"".join(repeated_stream(TRACES / f"{n}.events-on.session", repeat) for n in MIX)


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>12,.0f} events/s  ({n:,} events in {seconds:.3f} s)"


def copies(records: Sequence[CallRecord], n: int) -> list[CallRecord]:
    """``records`` ``n`` times over, each time as other calls (uniqueid suffixed)."""
    return [replace(r, uniqueid=f"{r.uniqueid}-{i}") for i in range(n) for r in records]


async def write_all(url: str, records: Sequence[CallRecord]) -> tuple[float, float]:
    """Wall and CPU seconds (this process's) to write ``records`` in the writer's batches."""
    engine = make_engine(url)
    store = Store(make_sessionmaker(engine))
    try:
        await store.write_call_records([replace(records[0], uniqueid="warm-up")])
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(records), BATCH):
            await store.write_call_records(records[i:i + BATCH])
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        await engine.dispose()


@asynccontextmanager
async def sqlite_url() -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await upgrade(url)
        yield url


@asynccontextmanager
async def pg_url() -> AsyncIterator[str]:
    async with bench_database(calls=100_000, callers=10_000, operators=3, quiet=True) as db:
        yield db.url


async def store_phases(final: Sequence[CallRecord], both: Sequence[CallRecord], calls: int,
                       rounds: int, pg: bool) -> None:
    """The final records alone (what was written before live records existed), then live
    and final records in the listener's order, each into a fresh database."""
    databases: list[tuple[str, Callable[[], AbstractAsyncContextManager[str]]]] = [
        ("sqlite", sqlite_url)]
    if pg:
        databases.append(("postgresql", pg_url))
    for name, database in databases:
        for label, records in (("final only", final), ("live + final", both)):
            batch = copies(records, rounds)
            try:
                async with database() as url:
                    wall, cpu = await write_all(url, batch)
            except (OSError, ConnectionError) as exc:
                print(f"{name}: skipped ({exc})")
                break
            n = calls * rounds
            print(f"{name + ': ' + label:<26} {len(batch) / wall:>8,.0f} records/s "
                  f"{n / wall:>8,.0f} calls/s {cpu / n * 1e6:>6,.0f} us CPU/call "
                  f"({len(batch):,} records in {wall:.3f} s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=65536, help="socket read size")
    ap.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL store phase")
    ap.add_argument("--store-rounds", type=int, default=5,
                    help="the records are written this many times over (as other calls)")
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
    records: list[CallRecord] = []
    live: list[CallRecord] = []
    both: list[CallRecord] = []  # in the order the listener hands them to the writer

    def progress(record: CallRecord) -> None:
        live.append(record)
        both.append(record)

    def final(record: CallRecord) -> None:
        records.append(record)
        both.append(record)

    tracker = CallTracker(imap, on_record=final, on_progress=progress,
                          target_var="ROUTE_TARGET")
    presence = PresenceBook(imap)
    presence.connected = True
    table = {**presence.handlers, **tracker.handlers}
    parser = AmiStreamParser()
    t0, c0 = time.perf_counter(), time.process_time()
    now = time.time()
    applied = 0
    for c in chunks:
        for msg in parser.feed(c):
            handler = table.get(msg.name or "")
            if handler is not None:
                handler(msg, now)
            applied += 1
    tracker.tick(now + 3600)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"parse + apply (ours)   {rate(applied, elapsed)}  CPU {cpu:.3f} s")
    print(f"call records: {len(records):,} final + {len(live):,} live; "
          f"calls still open: {len(tracker.calls)}; "
          f"target 30,000 events/s -> {'met' if applied / elapsed >= 30000 else 'NOT met'}")
    calls = len(records)
    print(f"per call: {applied / calls:,.0f} events, {elapsed / calls * 1e6:,.0f} us to parse "
          f"and apply them")
    asyncio.run(store_phases(records, both, calls, args.store_rounds, pg=not args.no_pg))


if __name__ == "__main__":
    main()
