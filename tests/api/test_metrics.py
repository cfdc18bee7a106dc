"""Metrics: own registry, counters from decisions and call records, AMI state."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import REGISTRY

from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.metrics import Metrics
from callrouter.service.ports import CallRecord, DecisionRecord

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def record(*codes: ReasonCode, target: str | None = None, escalated: bool = False,
           latency_ms: float = 4.0) -> DecisionRecord:
    decision = Decision(
        Action.OPERATOR if target else Action.QUEUE, "support", 0,
        tuple(Reason(c, str(c)) for c in codes), target_operator_id=target,
        escalated=escalated,
    )
    return DecisionRecord(id="d", decided_at=NOW, caller_raw="", caller_number=None,
                          queue="support", decision=decision, latency_ms=latency_ms)


def value(m: Metrics, name: str, **labels: str) -> float:
    found = m.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_two_instances_do_not_collide_and_global_registry_is_untouched() -> None:
    a, b = Metrics(), Metrics()
    a.on_decision(record(ReasonCode.NEW_CALLER))
    assert value(a, "callrouter_decisions_total", action="queue", reason="new_caller") == 1
    assert value(b, "callrouter_decisions_total", action="queue", reason="new_caller") == 0
    assert REGISTRY.get_sample_value("callrouter_decisions_total",
                                     {"action": "queue", "reason": "new_caller"}) is None


def test_decisions_fallbacks_escalations_latency() -> None:
    m = Metrics()
    m.on_decision(record(ReasonCode.STICKY_AVAILABLE, target="op1", latency_ms=3.0))
    m.on_decision(record(ReasonCode.FALLBACK_TIMEOUT, latency_ms=500.0))
    m.on_decision(record(ReasonCode.ESCALATED_REPEAT, escalated=True))
    assert value(m, "callrouter_targeted_decisions_total", action="operator") == 1
    assert value(m, "callrouter_fallbacks_total", cause="timeout") == 1
    assert value(m, "callrouter_escalations_total", reason="escalated_repeat") == 1
    assert value(m, "callrouter_decision_latency_seconds_count") == 3
    assert value(m, "callrouter_decision_latency_seconds_bucket", le="0.005") == 2


def test_calls_kept_from_a_logged_off_second_line_are_counted() -> None:
    m = Metrics()
    m.on_decision(record(ReasonCode.NEW_CALLER, ReasonCode.NO_SPECIALIST_AVAILABLE))
    m.on_decision(record(ReasonCode.SPECIALIST_UNAVAILABLE, ReasonCode.NO_SPECIALIST_AVAILABLE))
    m.on_decision(record(ReasonCode.NEW_CALLER, ReasonCode.ESCALATION_CAPPED))
    assert value(m, "callrouter_second_line_logged_off_total") == 2
    assert value(m, "callrouter_escalations_total", reason="new_caller") == 0


def test_call_records_count_final_outcomes_hits_and_dial_fallbacks() -> None:
    m = Metrics()
    m.on_call_record(CallRecord(uniqueid="1", outcome="in_progress", sticky_hit=True))
    m.on_call_record(CallRecord(uniqueid="1", outcome="answered", sticky_hit=True))
    m.on_call_record(CallRecord(uniqueid="2", outcome="answered", sticky_hit=False,
                                fallback_cause="NOANSWER"))
    m.on_call_record(CallRecord(uniqueid="3", outcome="abandoned"))
    assert value(m, "callrouter_calls_total", outcome="answered") == 2
    assert value(m, "callrouter_calls_total", outcome="abandoned") == 1
    assert value(m, "callrouter_targeted_calls_total", result="hit") == 1
    assert value(m, "callrouter_targeted_calls_total", result="miss") == 1
    assert value(m, "callrouter_fallbacks_total", cause="noanswer") == 1


def test_ami_state() -> None:
    m = Metrics()
    assert value(m, "callrouter_ami_connected") == 0
    m.set_ami_state("connected")
    assert value(m, "callrouter_ami_connected") == 1
    assert value(m, "callrouter_ami_state", state="connected") == 1
    assert value(m, "callrouter_ami_state", state="down") == 0
    m.set_ami_state(False)
    assert value(m, "callrouter_ami_state", state="down") == 1
    m.set_ami_state("auth_failed")
    assert value(m, "callrouter_ami_state", state="auth_failed") == 1
    m.set_ami_state("connected")
    m.set_ami_state("disconnected")
    assert value(m, "callrouter_ami_state", state="down") == 1
    m.set_ami_state("sleepy")  # a status callback must never raise
    assert value(m, "callrouter_ami_state", state="down") == 1
    assert b"callrouter_ami_connected 0.0" in m.render()


def test_the_decision_log_backlog_and_counters_are_exported() -> None:
    from callrouter.service.decision_writer import DecisionWriter

    class Sink:
        async def record(self, r: DecisionRecord) -> None:  # pragma: no cover
            pass

    writer = DecisionWriter(Sink())
    m = Metrics()
    m.watch_decision_log(writer)
    writer.submit(record(ReasonCode.NEW_CALLER))
    writer.submit(record(ReasonCode.NEW_CALLER))
    writer.written, writer.dropped, writer.rejected, writer.failures = 7, 1, 2, 3
    assert value(m, "callrouter_decision_log_pending") == 2
    assert value(m, "callrouter_decision_log_written_total") == 7
    assert value(m, "callrouter_decision_log_dropped_total") == 1
    assert value(m, "callrouter_decision_log_rejected_total") == 2
    assert value(m, "callrouter_decision_log_write_failures_total") == 3


def test_the_call_record_writer_counters_are_exported() -> None:
    from callrouter.ami.journal import WriterStatus

    status = WriterStatus(queued_memory=3, queued_journal=4, written=9, failures=2,
                          rejected=1)
    m = Metrics()
    m.watch_call_records(status)
    assert value(m, "callrouter_call_records_pending") == 7
    assert value(m, "callrouter_call_records_journaled") == 4
    assert value(m, "callrouter_call_records_written_total") == 9
    assert value(m, "callrouter_call_records_rejected_total") == 1
    assert value(m, "callrouter_call_records_write_failures_total") == 2
    status.rejected += 1  # read at scrape time
    assert value(m, "callrouter_call_records_rejected_total") == 2


def test_the_state_replica_status_is_exported_at_scrape_time() -> None:
    from callrouter.store.pg_replica import ReplicaStatus

    status = ReplicaStatus(state="loading")
    m = Metrics()
    m.watch_state_replica(status)
    assert value(m, "callrouter_state_replica_live") == 0
    status.state, status.callers, status.calls = "live", 12, 30
    status.served, status.asked_database, status.loads, status.notifications = 5, 2, 1, 40
    assert value(m, "callrouter_state_replica_live") == 1
    assert value(m, "callrouter_state_replica_callers") == 12
    assert value(m, "callrouter_state_replica_calls") == 30
    assert value(m, "callrouter_state_replica_served_total") == 5
    assert value(m, "callrouter_state_replica_asked_database_total") == 2
    assert value(m, "callrouter_state_replica_loads_total") == 1
    assert value(m, "callrouter_state_replica_notifications_total") == 40
    status.state = "down"  # the link lost: routing reads the database, and the gauge says so
    assert value(m, "callrouter_state_replica_live") == 0


def test_fastagi_sessions_by_outcome_time_and_rejections() -> None:
    m = Metrics()
    fa = m.fastagi
    fa.session_end("route", "ok", 0.0003)
    fa.session_end("route", "ok", 0.004)
    fa.session_end("route", "bad_client", 5.0)
    fa.session_end("whatever", "unknown_route", 0.0002)
    fa.session_end("route", "no-such-outcome", 0.001)  # a bug upstream: counted as an error
    fa.rejected("too_many_sessions")
    assert value(m, "callrouter_fastagi_sessions_total", outcome="ok") == 2
    assert value(m, "callrouter_fastagi_sessions_total", outcome="bad_client") == 1
    assert value(m, "callrouter_fastagi_sessions_total", outcome="unknown_route") == 1
    assert value(m, "callrouter_fastagi_sessions_total", outcome="error") == 1
    assert value(m, "callrouter_fastagi_sessions_total", outcome="hangup") == 0
    assert value(m, "callrouter_fastagi_session_seconds_count") == 5
    assert value(m, "callrouter_fastagi_session_seconds_bucket", le="0.0005") == 2
    assert value(m, "callrouter_fastagi_session_seconds_bucket", le="0.005") == 4
    assert value(m, "callrouter_fastagi_rejected_total", why="too_many_sessions") == 1
    # decisions are the routing service's to count, not the FastAGI observer's
    fa.decision(record(ReasonCode.NEW_CALLER), 0.001, None)
    assert value(m, "callrouter_decisions_total", action="queue", reason="new_caller") == 0
    # every outcome shows from the start, at 0 (a rate() over a series that appears late
    # misses its first increment)
    text = m.render().decode()
    assert 'callrouter_fastagi_sessions_total{outcome="hangup"} 0.0' in text


def test_fastagi_active_sessions_are_read_at_scrape_time() -> None:
    m = Metrics()
    active = [3]
    m.watch_fastagi(lambda: active[0])
    assert value(m, "callrouter_fastagi_active_sessions") == 3
    active[0] = 0
    assert value(m, "callrouter_fastagi_active_sessions") == 0


def test_the_fastagi_observer_has_the_servers_observer_shape() -> None:
    """The composition root hands ``Metrics.fastagi`` to the FastAGI server as a
    ``SessionObserver`` (metrics does not import the adapter): same methods, same
    parameters."""
    import inspect

    from callrouter.fastagi.handler import SessionObserver
    from callrouter.metrics import FastAgiMetrics

    for name in ("decision", "session_end", "rejected"):
        ours = inspect.signature(getattr(FastAgiMetrics, name)).parameters
        theirs = inspect.signature(getattr(SessionObserver, name)).parameters
        assert list(ours) == list(theirs), name


def test_event_loop_lag_histogram() -> None:
    m = Metrics()
    m.loop_lag.observe(0.0004)
    m.loop_lag.observe(0.007)
    assert value(m, "callrouter_event_loop_lag_seconds_count") == 2
    assert value(m, "callrouter_event_loop_lag_seconds_bucket", le="0.002") == 1
    assert value(m, "callrouter_event_loop_lag_seconds_bucket", le="0.01") == 2
