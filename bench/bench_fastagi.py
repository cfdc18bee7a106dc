"""Routed calls/s and p50/p99 latency of the FastAGI route against PostgreSQL with a large
history, with the classic AGI entry (a process per call) as the baseline in the same run.

    uv run python bench/bench_fastagi.py [--calls 20000] [--concurrency 200]
        [--history-calls 1000000] [--callers 100000] [--operators 2000]
        [--classic-calls 60] [--classic-concurrency 2] [--profile daemon.prof]

What runs where:

* a throw-away PostgreSQL database (``bench/seed.py``: created, migrated, seeded with SQL,
  dropped at the end) next to ``$CALLROUTER_BENCH_PG_DSN`` / ``$CALLROUTER_TEST_PG_DSN``
  (default ``postgresql://postgres@127.0.0.1:5432/postgres``);
* the daemon in its own process: ``build_runtime`` as ``callrouter serve`` builds it (real
  FastAGI server, RoutingService, Store on asyncpg, decision writer; no HTTP, no AMI —
  operator states come from a fixed presence map), logging at INFO to a file;
* the load generator in this process: ``--concurrency`` sessions, each a loop of calls.
  A call sends Asterisk's env block (``callrouter.simulator.agi.environment_block``),
  answers each command as Asterisk does and ends when the server closes the socket. Its
  latency is connect -> close, what the caller waits in ``AGI()``;
* the classic entry: ``agi/callrouter-route.agi`` started per call with the env block on
  stdin, the same service on the same database (``daemon:make_classic_router``),
  ``--classic-concurrency`` at a time.

The daemon's decision writer must have written every decision by the end; the time it took
to drain after the load stopped is printed (a writer that falls behind would flatter the
rate).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench.seed import bench_database, caller_number  # noqa: E402
from callrouter.simulator.agi import ChannelModel, environment_block  # noqa: E402

MSET = b"EXEC MSet "
MSET_OK = b"200 result=0\n"
REASON = re.compile(rb"CALLROUTER_REASON=([a-z_]+)")
ACTION = re.compile(rb"CALLROUTER_ACTION=([a-z_]+)")


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    actions: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    failures: int = 0

    @property
    def calls(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def caller_mix(n: int, callers: int, seed: int = 11) -> list[str | None]:
    """Mostly callers with history; 5 % first-time callers; 2 % withheld."""
    rng = random.Random(seed)
    out: list[str | None] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.02:
            out.append(None)
        elif r < 0.07:
            out.append("8912" + str(rng.randrange(10_000_000)).zfill(7))
        else:
            out.append(caller_number(rng.randrange(callers)).removeprefix("+"))
    return out


def env_blocks(port: int, callers: list[str | None], tag: str, *, network: bool = True) -> (
    list[bytes]
):
    return [
        b"".join(environment_block(port=port, caller=c, uniqueid=f"{tag}.{i}",
                                   channel=f"PJSIP/trunk-{i:08x}", args=["support"],
                                   network=network))
        for i, c in enumerate(callers)
    ]


async def one_call(port: int, block: bytes, out: LoadResult) -> None:
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(block)
    model: ChannelModel | None = None
    mset = b""
    while line := await reader.readline():
        if line.startswith(MSET):
            mset = line
            writer.write(MSET_OK)
        else:  # anything else gets Asterisk's exact reply
            model = model or ChannelModel()
            writer.write(model.answer(line.rstrip(b"\n")))
    out.latencies_ms.append((time.perf_counter() - t0) * 1000)
    writer.close()
    if m := REASON.search(mset):
        out.reasons[m.group(1).decode()] += 1
    if m := ACTION.search(mset):
        out.actions[m.group(1).decode()] += 1
    if not mset:
        out.failures += 1


async def load(port: int, blocks: list[bytes], concurrency: int) -> LoadResult:
    """``concurrency`` sessions, each calling again as soon as its call ends."""
    out = LoadResult()
    todo = iter(blocks)

    async def session() -> None:
        for block in todo:
            try:
                await one_call(port, block, out)
            except OSError:
                out.failures += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(concurrency)))
    out.seconds = time.perf_counter() - t0
    return out


async def classic(blocks: list[bytes], concurrency: int, db_url: str) -> LoadResult:
    env = dict(os.environ, CALLROUTER_AGI_ROUTER="daemon:make_classic_router",
               CALLROUTER_BENCH_DB_URL=db_url,
               PYTHONPATH=os.pathsep.join([str(ROOT / "bench"), str(ROOT),
                                           os.environ.get("PYTHONPATH", "")]))
    out = LoadResult()
    todo = iter(blocks)

    async def session() -> None:
        for block in todo:
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "agi" / "callrouter-route.agi"),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
            assert proc.stdin and proc.stdout
            proc.stdin.write(block)
            model = ChannelModel()
            mset = b""
            while line := await proc.stdout.readline():
                if line.startswith(MSET):
                    mset = line
                proc.stdin.write(model.answer(line.rstrip(b"\n")))
            proc.stdin.close()
            await proc.wait()
            out.latencies_ms.append((time.perf_counter() - t0) * 1000)
            if m := REASON.search(mset):
                out.reasons[m.group(1).decode()] += 1
            if not mset:
                out.failures += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(concurrency)))
    out.seconds = time.perf_counter() - t0
    return out


def line(label: str, r: LoadResult, concurrency: int) -> str:
    return (f"{label:<8} calls={r.calls:<6} concurrency={concurrency:<4} rate={r.rate:8.1f}/s "
            f"p50={pct(r.latencies_ms, 50):7.2f} ms p99={pct(r.latencies_ms, 99):7.2f} ms "
            f"failures={r.failures}")


async def run(args: argparse.Namespace) -> None:
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}", flush=True)
    async with bench_database(calls=args.history_calls, callers=args.callers,
                              operators=args.operators, keep=args.keep_db) as db:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        log_path = os.path.join(tempfile.gettempdir(), f"callrouter-bench-{os.getpid()}.log")
        from daemon import daemon_process  # bench/daemon.py, importable in the spawned child

        proc = ctx.Process(target=daemon_process, name="callrouter-daemon", args=(db.url, child),
                           kwargs={"max_sessions": max(1000, 2 * args.concurrency),
                                   "profile": args.profile, "log_path": log_path,
                                   "log_level": args.log_level})
        proc.start()
        child.close()  # so a daemon that dies shows as EOFError here, not a hang
        try:
            hello = await asyncio.to_thread(parent.recv)
            port = hello["port"]
            tag = str(int(time.time()))
            mix = caller_mix(args.warmup + args.calls, args.callers)
            blocks = env_blocks(port, mix, tag)
            warm = await load(port, blocks[: args.warmup], args.concurrency)
            print(f"warm-up: {warm.calls} calls ({warm.rate:.0f}/s), daemon loop "
                  f"{hello['loop']}, log {log_path} at {args.log_level}, engine options "
                  f"{os.environ.get('CALLROUTER_BENCH_ENGINE') or 'as shipped'}", flush=True)
            parent.send("start")
            fast = await load(port, blocks[args.warmup:], args.concurrency)
            parent.send("stop")
            daemon = await asyncio.to_thread(parent.recv)
        finally:
            proc.join(60)
            if proc.is_alive():
                proc.terminate()
        print(line("fastagi", fast, args.concurrency), flush=True)
        cpu_per_call = daemon["cpu_seconds"] / max(fast.calls, 1) * 1e6
        print(f"         daemon: {daemon['cpu_seconds']:.1f} s CPU in {daemon['wall_seconds']:.1f}"
              f" s ({cpu_per_call:.0f} us/call); decisions written "
              f"{daemon['written']} (backlog {daemon['writer_pending_at_stop']} at stop, "
              f"drained in {daemon['writer_drain_seconds']:.2f} s, left "
              f"{daemon['left_unwritten']}, dropped "
              f"{daemon['dropped']}, write failures {daemon['write_failures']})")
        print(f"         actions: {dict(fast.actions.most_common())}")
        print(f"         reasons: {dict(fast.reasons.most_common())}", flush=True)
        if daemon.get("profile_top"):
            print(daemon["profile_top"])

        if args.classic_calls:
            cmix = caller_mix(args.classic_calls, args.callers, seed=12)
            cblocks = env_blocks(0, cmix, tag + "c", network=False)
            base = await classic(cblocks, args.classic_concurrency, db.url)
            print(line("classic", base, args.classic_concurrency))
            print(f"         reasons: {dict(base.reasons.most_common())}")
            print(f"fastagi/classic rate: {fast.rate / base.rate:.0f}x "
                  f"(target >= 30x; fastagi target >= 1500/s with p99 < 5 ms at 200 sessions)")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--warmup", type=int, default=2_000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--history-calls", type=int, default=1_000_000)
    ap.add_argument("--callers", type=int, default=100_000)
    ap.add_argument("--operators", type=int, default=2_000)
    ap.add_argument("--classic-calls", type=int, default=60)
    ap.add_argument("--classic-concurrency", type=int, default=2)
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--keep-db", metavar="NAME",
                    help="seed this database once and reuse it in later runs (not dropped)")
    ap.add_argument("--profile", help="cProfile the daemon's measured phase into this file")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
