"""Prometheus metrics in a registry of their own, fed by observers the composition root wires.

The global ``prometheus_client.REGISTRY`` is never used: two apps in one process (tests,
a CLI run next to a server) must not share or collide on counters.

Sticky hit rate is ``callrouter_targeted_calls_total{result="hit"}`` over the sum of
``hit`` and ``miss``: a targeted call is one whose decision named an operator; it is a hit
when that operator answered (the AMI listener's ``sticky_hit``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from callrouter.domain.reasons import ReasonCode
from callrouter.service.ports import CallRecord, DecisionRecord

log = logging.getLogger(__name__)
CONTENT_TYPE = CONTENT_TYPE_LATEST
# The AMI listener's own vocabulary (ListenerStatus.state), plus "disabled" (no AMI set up).
AMI_STATES = ("connected", "connecting", "down", "auth_failed", "stopped", "disabled")
_AMI_ALIASES = {"disconnected": "down"}

# Decision latency is dominated by one store round trip; the FastAGI budget is 0.5 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# A FastAGI session takes a fraction of a millisecond when nothing waits; 5 s is its limit.
SESSION_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
# uvloop's timers run on a millisecond clock, so a healthy loop shows up to ~1 ms of lag;
# more is a stall that queues calls (docs/performance.md, "Where the time goes").
LOOP_LAG_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

_MACHINERY_FALLBACKS = {
    ReasonCode.FALLBACK_TIMEOUT: "timeout",
    ReasonCode.FALLBACK_STORE_DOWN: "store_down",
    ReasonCode.FALLBACK_BAD_INPUT: "bad_input",
    ReasonCode.FALLBACK_ERROR: "error",
}


class DecisionLogState(Protocol):
    """What the decision writer counts (``DecisionWriter`` has this shape)."""

    written: int
    dropped: int
    rejected: int
    failures: int

    @property
    def pending(self) -> int: ...


class _DecisionLogCollector(Collector):
    """The decision writer's own counters, read at scrape time (nothing on the call path)."""

    def __init__(self, writer: DecisionLogState, namespace: str) -> None:
        self._writer = writer
        self._ns = namespace

    def collect(self) -> Iterator[Any]:
        w, ns = self._writer, self._ns
        yield GaugeMetricFamily(f"{ns}_decision_log_pending",
                                "Decisions waiting to be written to the decision log.",
                                value=w.pending)
        for name, text, count in (
            ("written", "Decisions written to the decision log.", w.written),
            ("dropped", "Decisions dropped because the backlog was full (database down "
                        "for long).", w.dropped),
            ("rejected", "Decisions the database refused for their data (logged, dropped).",
             w.rejected),
            ("write_failures", "Failed writes of the decision log (retried).", w.failures),
        ):
            yield CounterMetricFamily(f"{ns}_decision_log_{name}", text, value=count)


class StateReplicaState(Protocol):
    """What the routing-state replica reports (``pg_replica.ReplicaStatus`` has this shape)."""

    state: str
    loads: int
    load_seconds: float
    notifications: int
    served: int
    asked_database: int
    callers: int
    calls: int


class _StateReplicaCollector(Collector):
    """The routing-state replica's status, read at scrape time."""

    def __init__(self, status: StateReplicaState, namespace: str) -> None:
        self._status = status
        self._ns = namespace

    def collect(self) -> Iterator[Any]:
        st, ns = self._status, self._ns
        yield GaugeMetricFamily(f"{ns}_state_replica_live",
                                "1 while callers' routing state is answered from memory.",
                                value=1 if st.state == "live" else 0)
        for name, text, value in (
            ("callers", "Callers with routing state in memory.", st.callers),
            ("calls", "Calls in memory (the kept window).", st.calls),
            ("load_seconds", "Duration of the last full load.", st.load_seconds),
        ):
            yield GaugeMetricFamily(f"{ns}_state_replica_{name}", text, value=value)
        for name, text, count in (
            ("loads", "Full loads (start, reconnects, truncates, a longer lookback).",
             st.loads),
            ("notifications", "Change notifications received.", st.notifications),
            ("served", "Caller snapshots answered from memory.", st.served),
            ("asked_database", "Caller snapshots read from the database (replica not live, "
                               "a question beyond the kept window, a caller being re-read).",
             st.asked_database),
        ):
            yield CounterMetricFamily(f"{ns}_state_replica_{name}", text, value=count)


class CallRecordsState(Protocol):
    """What the AMI call-record writer counts (``WriterStatus`` has this shape)."""

    queued_memory: int
    queued_journal: int
    written: int
    rejected: int
    failures: int


class _CallRecordsCollector(Collector):
    """The AMI call-record writer's counters, read at scrape time."""

    def __init__(self, status: CallRecordsState, namespace: str) -> None:
        self._status = status
        self._ns = namespace

    def collect(self) -> Iterator[Any]:
        s, ns = self._status, self._ns
        yield GaugeMetricFamily(f"{ns}_call_records_pending",
                                "AMI call records waiting to be written (memory and journal).",
                                value=s.queued_memory + s.queued_journal)
        yield GaugeMetricFamily(f"{ns}_call_records_journaled",
                                "AMI call records held in the journal (the database was down).",
                                value=s.queued_journal)
        for name, text, count in (
            ("written", "AMI call records written to the call log.", s.written),
            ("rejected", "AMI call records the database refused for their data (logged, "
                         "dropped).", s.rejected),
            ("write_failures", "Failed writes of AMI call records (retried).", s.failures),
        ):
            yield CounterMetricFamily(f"{ns}_call_records_{name}", text, value=count)


# The FastAGI server's session outcomes (``FastAgiServer.release``), a fixed set: the label
# never carries what a client sent (an unknown route's name is ``unknown_route``).
SESSION_OUTCOMES = ("ok", "hangup", "closed", "bad_client", "error", "unknown_route")


class _FastAgiCollector(Collector):
    """The FastAGI sessions running now, read at scrape time."""

    def __init__(self, active: Callable[[], int], namespace: str) -> None:
        self._active = active
        self._ns = namespace

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily(f"{self._ns}_fastagi_active_sessions",
                                "FastAGI sessions open now (connected, not yet closed).",
                                value=self._active())


class FastAgiMetrics:
    """The FastAGI server's observer (the shape of ``fastagi.SessionObserver``, which this
    module does not import: adapters depend on the metrics, not the other way round).

    Each session's outcome and its time from accept to close; connections refused at
    once (``too_many_sessions``). Decisions are counted by ``Metrics.on_decision``, the
    routing service's observer, so ``decision`` does nothing here."""

    def __init__(self, sessions: Counter, seconds: Histogram, rejected: Counter) -> None:
        self._sessions = sessions
        self._seconds = seconds
        self._rejected = rejected
        # labels() takes a lock and builds a tuple: once per outcome, not once per call
        self._children = {o: sessions.labels(outcome=o) for o in SESSION_OUTCOMES}

    def decision(self, record: DecisionRecord, seconds: float, fallback: object) -> None:
        """Counted by ``Metrics.on_decision``."""

    def session_end(self, route: str, outcome: str, seconds: float) -> None:
        child = self._children.get(outcome)
        if child is None:  # not one of the server's outcomes: a bug, counted as an error
            child = self._children["error"]
        child.inc()
        self._seconds.observe(max(0.0, seconds))

    def rejected(self, why: str) -> None:
        self._rejected.labels(why=why).inc()


class Metrics:
    """Owns a ``CollectorRegistry``; ``on_decision``, ``on_call_record``, ``set_ami_state``,
    ``watch_decision_log``, ``watch_call_records``, ``watch_fastagi``; ``fastagi`` is the
    FastAGI server's observer and ``loop_lag`` the event loop's lag histogram."""

    def __init__(self, namespace: str = "callrouter") -> None:
        self.namespace = namespace
        self.registry = CollectorRegistry(auto_describe=True)
        self._unknown_states: set[str] = set()
        self._decision_children: dict[tuple[str, str], Any] = {}
        r = self.registry
        self.decisions = Counter(
            "decisions", "Routing decisions by action and first reason.",
            ["action", "reason"], namespace=namespace, registry=r,
        )
        self.targeted_decisions = Counter(
            "targeted_decisions", "Decisions that named an operator or specialist to ring first.",
            ["action"], namespace=namespace, registry=r,
        )
        self.targeted_calls = Counter(
            "targeted_calls",
            "Calls whose decision named an operator, by whether that operator answered "
            "(hit) or not (miss): the sticky hit rate.",
            ["result"], namespace=namespace, registry=r,
        )
        self.fallbacks = Counter(
            "fallbacks",
            "Calls that did not go the way the rules wanted, by cause: machinery "
            "(timeout, store_down, bad_input, error) or the target's dial status "
            "(noanswer, busy, chanunavail, ...).",
            ["cause"], namespace=namespace, registry=r,
        )
        self.escalations = Counter(
            "escalations", "Decisions that escalated a caller to the second line, by reason.",
            ["reason"], namespace=namespace, registry=r,
        )
        self.second_line_logged_off = Counter(
            "second_line_logged_off",
            "Decisions kept out of the specialist queue (no escalation, or an away "
            "specialist's call to the entry queue) because everyone who takes it was "
            "logged off: reason no_specialist_available.",
            namespace=namespace, registry=r,
        )
        self.decision_latency = Histogram(
            "decision_latency_seconds", "Time from reading the call to having a decision.",
            namespace=namespace, registry=r, buckets=LATENCY_BUCKETS,
        )
        self.calls = Counter(
            "calls", "Finished inbound calls by outcome.",
            ["outcome"], namespace=namespace, registry=r,
        )
        self.ami_connected = Gauge(
            "ami_connected", "1 while the AMI connection is up, else 0.",
            namespace=namespace, registry=r,
        )
        self.ami_state = Gauge(
            "ami_state", "The AMI connection's state: 1 for the current state, 0 for others.",
            ["state"], namespace=namespace, registry=r,
        )
        self.fastagi = FastAgiMetrics(
            Counter("fastagi_sessions", "FastAGI sessions by how they ended: ok, hangup (the "
                    "caller hung up first), closed (Asterisk closed early), bad_client "
                    "(garbage, oversized, silent, too slow), error, unknown_route.",
                    ["outcome"], namespace=namespace, registry=r),
            Histogram("fastagi_session_seconds", "FastAGI session time, from the accepted "
                      "connection to its close (the decision, the MSet and its reply).",
                      namespace=namespace, registry=r, buckets=SESSION_BUCKETS),
            Counter("fastagi_rejected", "FastAGI connections closed at once, by why "
                    "(too_many_sessions: fastagi.max_sessions running).",
                    ["why"], namespace=namespace, registry=r),
        )
        self.loop_lag = Histogram(
            "event_loop_lag_seconds",
            "How late the event loop ran a timer due every 0.25 s: time in which the "
            "process could not serve calls (CPU starvation, a long callback, a pause of "
            "the garbage collector or of the machine). Calls that connect meanwhile wait "
            "in the kernel's accept queue.",
            namespace=namespace, registry=r, buckets=LOOP_LAG_BUCKETS,
        )
        self.set_ami_state("down")

    def watch_fastagi(self, active: Callable[[], int]) -> None:
        """Export the FastAGI sessions open now (``FastAgiServer.active``)."""
        self.registry.register(_FastAgiCollector(active, self.namespace))

    def watch_decision_log(self, writer: DecisionLogState) -> None:
        """Export the decision writer's backlog and counters: a log falling behind (the
        database slow or down) shows as ``decision_log_pending`` rising."""
        self.registry.register(_DecisionLogCollector(writer, self.namespace))

    def watch_state_replica(self, status: StateReplicaState) -> None:
        """Export the routing-state replica's status: ``state_replica_live`` 0 means every
        call reads the database (slower, still correct)."""
        self.registry.register(_StateReplicaCollector(status, self.namespace))

    def watch_call_records(self, status: CallRecordsState) -> None:
        """Export the AMI call-record writer's queue and counters (its ``status``): records
        the database refused for their data show as ``call_records_rejected_total``."""
        self.registry.register(_CallRecordsCollector(status, self.namespace))

    # -- observers ------------------------------------------------------------------------

    def on_decision(self, record: DecisionRecord) -> None:
        """A RoutingService observer: count the decision, its latency, fallback, escalation."""
        decision = record.decision
        reason = str(decision.reason_code) if decision.reasons else "none"
        key = (str(decision.action), reason)
        child = self._decision_children.get(key)
        if child is None:  # labels() takes a lock and builds a tuple: once per pair
            child = self._decision_children[key] = self.decisions.labels(*key)
        child.inc()
        self.decision_latency.observe(max(0.0, record.latency_ms) / 1000.0)
        if decision.target_operator_id is not None:
            self.targeted_decisions.labels(action=str(decision.action)).inc()
        for code in decision.codes:
            cause = _MACHINERY_FALLBACKS.get(code)
            if cause is not None:
                self.fallbacks.labels(cause=cause).inc()
                break
        if decision.escalated:
            self.escalations.labels(reason=reason).inc()
        elif ReasonCode.NO_SPECIALIST_AVAILABLE in decision.codes:
            self.second_line_logged_off.inc()

    def on_call_record(self, record: CallRecord) -> None:
        """An AMI listener observer: count final outcomes, sticky hits and target fallbacks.

        Only records with a final outcome are counted, so progress records of a live call
        do not inflate the figures.
        """
        if record.outcome == "in_progress":
            return
        self.calls.labels(outcome=record.outcome).inc()
        if record.sticky_hit is not None:
            self.targeted_calls.labels(result="hit" if record.sticky_hit else "miss").inc()
        if record.fallback_cause:
            self.fallbacks.labels(cause=record.fallback_cause.strip().lower()).inc()

    def set_ami_state(self, state: str | bool) -> None:
        """One of ``AMI_STATES`` (the listener's ``status.state``), or a bool (up or not).

        Called from the listener's status callback, so an unknown state never raises: it
        is shown as ``down`` and logged once per value.
        """
        if isinstance(state, bool):
            state = "connected" if state else "down"
        state = _AMI_ALIASES.get(state, state)
        if state not in AMI_STATES:
            if state not in self._unknown_states:
                self._unknown_states.add(state)
                log.warning("unknown AMI state %r shown as 'down' in the metrics", state)
            state = "down"
        self.ami_connected.set(1 if state == "connected" else 0)
        for known in AMI_STATES:
            self.ami_state.labels(state=known).set(1 if known == state else 0)

    # -- exposition -----------------------------------------------------------------------

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
