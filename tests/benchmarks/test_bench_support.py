"""The bench's arrival times, its rate window and the machine-stall probe."""

from __future__ import annotations

import itertools
import os
import statistics

from bench import loadgen, machine


def test_arrivals_fill_exactly_the_window_the_rate_gives() -> None:
    n, rate, lead = 15_000, 1500.0, 0.05
    at = loadgen.poisson_arrivals(n, rate, seed=5, lead=lead)
    assert len(at) == n and at == sorted(at)
    assert lead <= at[0] and at[-1] <= lead + n / rate
    # the window is covered end to end: the first and last calls sit near its edges
    assert at[0] - lead < 0.01 and lead + n / rate - at[-1] < 0.01
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert abs(statistics.fmean(gaps) - 1 / rate) < 0.02 / rate
    # exponential gaps: the standard deviation equals the mean (a fixed-rate ticker: 0)
    assert 0.9 < statistics.pstdev(gaps) * rate < 1.1
    # uniform over the window: each tenth holds a tenth of the calls, give or take
    tenths = [sum(lead + k * 1.0 <= t < lead + (k + 1) * 1.0 for t in at) for k in range(10)]
    assert all(1350 < c < 1650 for c in tenths), tenths


def test_arrivals_are_reproducible_by_seed() -> None:
    assert loadgen.poisson_arrivals(100, 50.0, seed=1) == loadgen.poisson_arrivals(100, 50.0,
                                                                                     seed=1)
    assert loadgen.poisson_arrivals(100, 50.0, seed=1) != loadgen.poisson_arrivals(100, 50.0,
                                                                                     seed=2)


def test_a_paced_runs_rate_window_starts_at_its_first_arrival() -> None:
    run = loadgen.Run(calls=[], summary={"wall_s": "10.06"}, arrivals=[0.05, 3.0, 9.9])
    assert abs(run.wall_seconds - 10.01) < 1e-9
    assert loadgen.Run(calls=[], summary={"wall_s": "3.5"}).wall_seconds == 3.5  # closed


def test_stall_figures_count_what_the_gaps_say() -> None:
    s = machine.CpuStalls(cpu=1, seconds=2.0, gaps_ms=(0.6, 1.0, 1.5, 4.0, 7.5))
    assert s.count(1.0) == 4 and s.count(5.0) == 1 and s.longest_ms == 7.5
    assert abs(s.lost_share(1.0) - 14.0 / 2000.0) < 1e-12
    line = machine.summary([s])
    assert line == "CPU1 2.0/s (longest 7.5 ms, 0.7 % of the time)"
    hist = machine.histogram([s])
    assert "0.5-1 ms: 1, 1-2 ms: 2, 2-5 ms: 1, >= 5 ms: 1" in hist
    assert machine.summary([machine.CpuStalls(0, 1.0, ())]).startswith("CPU0 0.0/s (longest 0.0")


def test_probe_spins_on_every_cpu_and_keeps_only_gaps_above_its_floor() -> None:
    stalls = machine.probe(0.2, min_ms=0.05)
    assert sorted(s.cpu for s in stalls) == sorted(os.sched_getaffinity(0))
    for s in stalls:
        assert s.seconds == 0.2
        assert all(g >= 0.05 for g in s.gaps_ms)
        assert s.lost_share(0.05) < 1.0


def test_a_paced_runs_spans_are_on_the_generators_clock() -> None:
    calls = [loadgen.Call("ok", 2.0, 0.5, False, 0, b""), loadgen.Call("timeout", None, 0.0,
                                                                        False, 0, b""),
             loadgen.Call("ok", 1.0, 0.0, False, 0, b"")]
    run = loadgen.Run(calls=calls, summary={"wall_s": "1", "t0_ns": "100000000000"},
                      arrivals=[0.05, 0.06, 0.5])
    spans = run.spans()
    assert len(spans) == 2  # the call that never ended has no span
    (s1, e1), (s2, e2) = spans
    assert abs(s1 - 100.0505) < 1e-9 and abs(e1 - 100.0525) < 1e-9
    assert abs(s2 - 100.5) < 1e-9 and abs(e2 - 100.501) < 1e-9
    assert loadgen.Run(calls=calls, summary={"wall_s": "1"}).spans() == []  # no t0: none


def test_where_the_time_went_splits_each_call_at_accept_and_close() -> None:
    from bench.bench_fastagi import where_the_time_went

    # 100 calls 10 ms apart: 0.1 ms to be accepted, 0.3 ms in the daemon, 0.05 ms after;
    # the last one waited 4 ms in the accept queue
    spans, sessions = [], []
    for i in range(100):
        s = 50.0 + i * 0.01
        wait = 0.004 if i == 99 else 0.0001
        spans.append((s, s + wait + 0.0003 + 0.00005))
        sessions.append((s + wait, s + wait + 0.0003))
    sessions.append((10.0, 10.001))  # a warm-up session long before: not paired
    text = where_the_time_went(spans, sessions)
    assert text is not None
    assert "connect->accept p50=0.10" in text and "session p50=0.30" in text
    assert "close->end p50=0.05" in text
    assert "slowest 1 % of calls, on average: 4.00 ms connect->accept" in text
    # a session that does not fit inside its call: the pairing is wrong, nothing printed
    assert where_the_time_went(spans, [(a + 0.01, c + 0.01) for a, c in sessions]) is None
    assert where_the_time_went(spans, sessions[:50]) is None  # counts differ
    assert where_the_time_went([], sessions) is None


def test_a_held_back_reply_is_not_charged_to_the_rate_but_counts_as_open() -> None:
    from bench.bench_fastagi import LoadResult

    # 1,500 calls of 133 ms each (all but 0.3 ms of it the held-back reply) over 1.133 s
    r = LoadResult(latencies_ms=[133.0] * 1500, seconds=1.133, held_back_s=0.133)
    assert abs(r.rate - 1500.0) < 1e-6
    assert abs(r.mean_open - 1500 * 0.133 / 1.133) < 1e-9  # Little's law: ~176 open
    assert LoadResult(latencies_ms=[1.0] * 10, seconds=2.0).rate == 5.0
