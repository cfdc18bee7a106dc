"""The C load generator (``bench/loadgen.c``): Asterisk's side of FastAGI for the bench at a
small fraction of the Python generator's CPU (it shares the machine with what it measures).

    exe = build()                                  # cc -O2, cached by source hash
    run = await paced(port, blocks, sessions=200, rate=1500.0)
    run = await closed(port, blocks, sessions=200)
    run.fill(LoadResult())                         # the bench's result type

``build`` compiles the source into a private directory under the temp dir, named by the
hash of the source, the compiler and the flags, so a changed source is rebuilt and an
unchanged one is not. A run writes the calls (arrival offset and env block each) to a
file, runs the binary as an asyncio subprocess and reads its result file: per call the
status, latency, start lag and the ``EXEC MSet`` argument, then the generator's own CPU
time and wall time.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import shutil
import stat
import struct
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

SOURCE = Path(__file__).with_name("loadgen.c")
NULLAGI = Path(__file__).with_name("nullagi.c")  # the floor run's responder
CFLAGS = ("-O2", "-Wall", "-Wextra")
MAGIC = b"CRLGIN1\n"
DEFAULT_TIMEOUT = 10.0  # seconds a call may take before it counts as a failure
REASON = re.compile(rb"CALLROUTER_REASON=([a-z_]+)")
ACTION = re.compile(rb"CALLROUTER_ACTION=([a-z_]+)")


def compiler() -> str | None:
    """The C compiler: ``$CC`` or ``cc`` (then ``gcc``, ``clang``) on the PATH."""
    names = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for name in names:
        if path := shutil.which(name):
            return path
    return None


def available() -> bool:
    return compiler() is not None


def build(path: Path = SOURCE) -> Path:
    """Compile ``loadgen.c`` (or another one-file program of bench/, such as ``nullagi.c``;
    once per source, compiler and flags) and return the binary."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc, clang or $CC) on the PATH")
    source = path.read_bytes()
    key = hashlib.sha256(b"\0".join([source, cc.encode(), " ".join(CFLAGS).encode()]))
    folder = Path(tempfile.gettempdir()) / f"callrouter-loadgen-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o022:
        raise RuntimeError(f"{folder} is not this user's private directory")
    exe = folder / f"{path.stem}-{key.hexdigest()[:16]}"
    if exe.exists():
        return exe
    tmp = folder / f"{exe.name}.{os.getpid()}.tmp"
    done = subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(path)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"compiling {path.name} failed:\n{done.stderr}")
    os.replace(tmp, exe)
    return exe


def poisson_arrivals(n: int, rate: float, *, seed: int = 5, lead: float = 0.05) -> list[float]:
    """Arrival offsets (s) of ``n`` calls of a Poisson process at ``rate`` over exactly
    ``n / rate`` seconds, after ``lead`` seconds: given its count, a Poisson process's
    arrival times are independent and uniform over the window, so they are sorted uniform
    draws. Drawing gaps instead (``expovariate``) would stretch or shrink the run by a
    random ~1 % (the sum of n gaps), and with it the rate a run offers."""
    rng = random.Random(seed)
    window = n / rate
    return sorted(lead + rng.random() * window for _ in range(n))


@dataclass(frozen=True, slots=True)
class Call:
    status: str  # ok | nomset | refused | reset | timeout | protocol | error
    latency_ms: float | None  # None: never connected, or timed out
    lag_ms: float  # paced: arrival -> start (the generator's own delay unless ``late``)
    late: bool  # paced: arrived while every session was busy
    other_commands: int  # command lines other than the MSet (answered as Asterisk does)
    mset: bytes  # the ``EXEC MSet`` argument, b"" when none came
    decided_ms: float | None = None  # start -> the MSet came (the daemon's decision)

    @property
    def failed(self) -> bool:
        return self.status != "ok"


class LoadResultLike(Protocol):
    """The fields of the bench's ``LoadResult`` that ``Run.fill`` sets."""

    latencies_ms: list[float]
    seconds: float
    actions: Counter[str]
    reasons: Counter[str]
    failures: int
    start_lag_ms: list[float]
    max_in_flight: int
    generator_cpu_seconds: float | None
    generator_own_lag_ms: tuple[float, float, float] | None
    spans: list[tuple[float, float]]
    decided_ms: list[float]


R = TypeVar("R", bound=LoadResultLike)


@dataclass
class Run:
    calls: list[Call]
    summary: dict[str, str] = field(default_factory=dict)
    arrivals: Sequence[float] = ()  # paced: each call's arrival offset (s) from the start

    @property
    def cpu_seconds(self) -> float:
        """The generator process's CPU (user + system) up to its last call's end."""
        return float(self.summary["cpu_user_s"]) + float(self.summary["cpu_sys_s"])

    @property
    def wall_seconds(self) -> float:
        """From the start to the last call's end (paced: less the lead before the first
        arrival, so that a run's rate is its calls over the time they arrived and ended in)."""
        return float(self.summary["wall_s"]) - (min(self.arrivals) if self.arrivals else 0.0)

    @property
    def max_in_flight(self) -> int:
        return int(self.summary["max_in_flight"])

    @property
    def failures(self) -> int:
        return sum(c.failed for c in self.calls)

    def spans(self) -> list[tuple[float, float]]:
        """Paced: each answered call's (connect, end) on CLOCK_MONOTONIC in seconds, the
        clock of the daemon's ``time.perf_counter()`` on Linux."""
        t0 = int(self.summary.get("t0_ns", 0)) / 1e9
        if not t0 or len(self.arrivals) != len(self.calls):
            return []
        return [(t0 + at + c.lag_ms / 1e3, t0 + at + (c.lag_ms + c.latency_ms) / 1e3)
                for at, c in zip(self.arrivals, self.calls, strict=True)
                if c.latency_ms is not None]

    def own_lag_ms(self) -> tuple[float, float, float]:
        """Paced: p50, p99 and max of the start delay of the calls that found a session free
        (the generator's own scheduling: timer wake-up and the events handled before)."""
        return (float(self.summary["on_time_lag_p50_ms"]),
                float(self.summary["on_time_lag_p99_ms"]),
                float(self.summary["on_time_lag_max_ms"]))

    def fill(self, out: R) -> R:
        """Add this run to the bench's ``LoadResult`` (latencies of the calls that got an
        answer, start lags of the late ones, decisions, failures, the generator's CPU)."""
        for c in self.calls:
            if c.latency_ms is not None:
                out.latencies_ms.append(c.latency_ms)
            if c.decided_ms is not None:
                out.decided_ms.append(c.decided_ms)
            if c.late:
                out.start_lag_ms.append(c.lag_ms)
            if m := REASON.search(c.mset):
                out.reasons[m.group(1).decode()] += 1
            if m := ACTION.search(c.mset):
                out.actions[m.group(1).decode()] += 1
        out.failures += self.failures
        out.max_in_flight = max(out.max_in_flight, self.max_in_flight)
        out.seconds += self.wall_seconds
        out.generator_cpu_seconds = (out.generator_cpu_seconds or 0.0) + self.cpu_seconds
        if self.summary.get("mode") == "paced":
            out.generator_own_lag_ms = self.own_lag_ms()
            out.spans = self.spans()
        return out


def write_input(path: Path, blocks: Sequence[bytes], arrivals: Sequence[float]) -> None:
    pack = struct.Struct("<dI").pack
    parts = [MAGIC, struct.pack("<II", len(blocks), 0)]
    for at, block in zip(arrivals, blocks, strict=True):
        parts += [pack(at, len(block)), block]
    path.write_bytes(b"".join(parts))


def read_results(path: Path) -> Run:
    calls: list[Call] = []
    summary: dict[str, str] = {}
    with path.open("rb") as f:
        for line in f:
            if line.startswith(b"# summary "):
                summary = dict(kv.split("=", 1) for kv in line[10:].decode().split())
                continue
            _, status, latency, lag, late, others, decided, mset = line.rstrip(b"\n").split(
                b"\t", 7)
            ns = int(latency)
            calls.append(Call(status=status.decode(), latency_ms=ns / 1e6 if ns >= 0 else None,
                              lag_ms=int(lag) / 1e6, late=late == b"1",
                              other_commands=int(others), mset=mset,
                              decided_ms=int(decided) / 1e6 if int(decided) >= 0 else None))
    if not summary:
        raise RuntimeError(f"{path}: no summary line (the load generator did not finish)")
    return Run(calls=calls, summary=summary)


async def run(port: int, blocks: Sequence[bytes], *, sessions: int = 200, mode: str = "paced",
              arrivals: Sequence[float] | None = None, timeout: float = DEFAULT_TIMEOUT,
              host: str = "127.0.0.1", exe: Path | None = None,
              reply_delay_ms: float = 0.0) -> Run:
    """Drive ``blocks`` through the daemon at ``host:port`` with the C load generator.

    ``mode="paced"``: call i starts at ``arrivals[i]`` seconds (at most ``sessions`` in
    flight); ``"closed"``: ``sessions`` sessions each call again at once.
    ``reply_delay_ms``: Asterisk's reply to the MSet comes that much later (a far or busy
    Asterisk), so each session stays open that much longer."""
    if reply_delay_ms < 0:
        raise ValueError(f"reply delay {reply_delay_ms!r}")
    if mode not in ("paced", "closed"):
        raise ValueError(f"mode {mode!r}")
    if arrivals is None:
        if mode == "paced":
            raise ValueError("paced mode needs arrival offsets")
        arrivals = [0.0] * len(blocks)
    exe = exe or await asyncio.to_thread(build)
    with tempfile.TemporaryDirectory(prefix="callrouter-loadgen-run-") as tmp:
        src, dst = Path(tmp) / "calls.bin", Path(tmp) / "results.tsv"
        write_input(src, blocks, arrivals)
        proc = await asyncio.create_subprocess_exec(
            str(exe), "-i", str(src), "-o", str(dst), "-p", str(port), "-a", host,
            "-c", str(sessions), "-m", mode, "-t", str(timeout),
            "-d", str(round(reply_delay_ms * 1000)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"load generator exited with {proc.returncode}: "
                               f"{(err or out).decode(errors='replace').strip()}")
        result = read_results(dst)
        if mode == "paced":
            result.arrivals = arrivals
        return result


async def paced(port: int, blocks: Sequence[bytes], sessions: int, rate: float, *,
                seed: int = 5, timeout: float = DEFAULT_TIMEOUT, exe: Path | None = None,
                reply_delay_ms: float = 0.0) -> Run:
    """Open loop: Poisson arrivals at ``rate``/s over ``sessions`` sessions."""
    return await run(port, blocks, sessions=sessions, mode="paced", timeout=timeout, exe=exe,
                     arrivals=poisson_arrivals(len(blocks), rate, seed=seed),
                     reply_delay_ms=reply_delay_ms)


async def closed(port: int, blocks: Sequence[bytes], sessions: int, *,
                 timeout: float = DEFAULT_TIMEOUT, exe: Path | None = None) -> Run:
    """Closed loop: ``sessions`` sessions, each calling again as soon as its call ends."""
    return await run(port, blocks, sessions=sessions, mode="closed", timeout=timeout, exe=exe)


async def floor(blocks: Sequence[bytes], sessions: int, rate: float, *,
                timeout: float = DEFAULT_TIMEOUT) -> Run:
    """The paced load against ``nullagi.c``, a responder that decides nothing: what the
    machine, loopback TCP and this generator give a daemon that costs nothing."""
    exe, responder = await asyncio.gather(asyncio.to_thread(build),
                                          asyncio.to_thread(build, NULLAGI))
    proc = await asyncio.create_subprocess_exec(str(responder), "-p", "0",
                                                stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        if not line.startswith(b"port "):
            raise RuntimeError(f"nullagi did not start: {line!r}")
        return await paced(int(line.split()[1]), blocks, sessions, rate, timeout=timeout,
                           exe=exe)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
