"""How often this machine takes a CPU away from a process that wants it: the floor under
any latency figure measured here.

    uv run python bench/machine.py [--seconds 5]

One process per CPU, pinned to it, spins reading the monotonic clock and records every gap
between two readings of at least ``--min-ms``. With nothing else running, a gap is time the
CPU did not run the spinner: an interrupt, a kernel thread, or, on a virtual machine, the
host running something else on the physical core behind the virtual CPU (steal time, which
a guest's /proc/stat does not always report). A call in flight during such a gap waits for
it, whatever the daemon does, so the bench prints these figures next to its own
(docs/performance.md, "The machine's own stalls").

A pure-Python spin reads the clock every ~0.1 us, far below the gaps that matter here
(0.5 ms and more).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import time
from dataclasses import dataclass

BUCKETS_MS = (0.5, 1.0, 2.0, 5.0)  # lower edges of the histogram printed


@dataclass(frozen=True)
class CpuStalls:
    cpu: int
    seconds: float
    gaps_ms: tuple[float, ...]  # every gap of at least the probe's minimum

    def count(self, at_least_ms: float) -> int:
        return sum(g >= at_least_ms for g in self.gaps_ms)

    @property
    def longest_ms(self) -> float:
        return max(self.gaps_ms, default=0.0)

    def lost_share(self, at_least_ms: float = 1.0) -> float:
        """The share of the probe's time spent in gaps of at least ``at_least_ms``."""
        return sum(g for g in self.gaps_ms if g >= at_least_ms) / 1000.0 / self.seconds


def _spin(cpu: int, seconds: float, min_ms: float) -> CpuStalls:
    os.sched_setaffinity(0, {cpu})
    clock = time.perf_counter
    floor = min_ms / 1000.0
    gaps: list[float] = []
    prev = clock()
    end = prev + seconds
    while prev < end:
        now = clock()
        if now - prev >= floor:
            gaps.append((now - prev) * 1000.0)
        prev = now
    return CpuStalls(cpu=cpu, seconds=seconds, gaps_ms=tuple(gaps))


def probe(seconds: float = 3.0, min_ms: float = 0.5) -> list[CpuStalls]:
    """Spin on every CPU this process may use, all at once, for ``seconds``."""
    cpus = sorted(os.sched_getaffinity(0))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(cpus)) as pool:
        return pool.starmap(_spin, [(cpu, seconds, min_ms) for cpu in cpus])


def summary(stalls: list[CpuStalls]) -> str:
    """One line: per CPU, gaps of >= 1 ms a second, the longest, and the time they took."""
    parts = []
    for s in stalls:
        parts.append(f"CPU{s.cpu} {s.count(1.0) / s.seconds:.1f}/s (longest {s.longest_ms:.1f} "
                     f"ms, {100 * s.lost_share():.1f} % of the time)")
    return "; ".join(parts)


def histogram(stalls: list[CpuStalls]) -> str:
    lines = []
    for s in stalls:
        edges = [*BUCKETS_MS, float("inf")]
        counts = [sum(lo <= g < hi for g in s.gaps_ms) for lo, hi in itertools.pairwise(edges)]
        cells = ", ".join(f"{lo:g}-{hi:g} ms: {n}" if hi != float("inf") else
                          f">= {lo:g} ms: {n}"
                          for (lo, hi), n in zip(itertools.pairwise(edges), counts, strict=True))
        lines.append(f"CPU{s.cpu}: {cells}; longest {s.longest_ms:.2f} ms; "
                     f"{100 * s.lost_share(BUCKETS_MS[0]):.2f} % of {s.seconds:.0f} s lost")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--min-ms", type=float, default=BUCKETS_MS[0])
    args = ap.parse_args()
    stalls = probe(args.seconds, args.min_ms)
    print(f"gaps of >= 1 ms: {summary(stalls)}")
    print(histogram(stalls))


if __name__ == "__main__":
    main()
