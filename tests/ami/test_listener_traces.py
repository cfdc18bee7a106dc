"""Real Asterisk 22 traces replayed over TCP by the fake AMI server into the listener."""

from __future__ import annotations

import pytest

from callrouter.domain.model import OperatorState
from tests.ami.conftest import TRACES, trace, until

QUEUE_CASES = [
    # trace, operator, hold, talk, hangup_by
    ("ami-queue-answered-caller-hangup", "op1", 1, 4, "caller"),
    ("ami-queue-answered-agent-hangup", "op1", 1, 4, "operator"),
    ("ami-queue-ringnoanswer-then-other", "op2", 7, 4, "operator"),
    ("ami-member-admin", "op1", 1, 13, "operator"),
    ("ami-devicestate", "op1", 1, 3, "operator"),
]


@pytest.mark.parametrize(("name", "operator", "hold", "talk", "hangup_by"), QUEUE_CASES)
async def test_queue_call_answered(make_listener, ami_server, name, operator, hold, talk,
                                   hangup_by):
    _listener, rec = await make_listener()
    await ami_server.replay(trace(name))
    [record] = await rec.wait_records(1)
    assert record.outcome == "answered"
    assert record.operator_id == operator
    assert record.answered_interface == f"Local/{operator}@operators/n"
    assert (record.hold_seconds, record.talk_seconds) == (hold, talk)
    assert record.hangup_by == hangup_by
    assert record.server_id == "ast1"
    assert [a.operator_id for a in rec.answered] == [operator]
    assert rec.answered[0].caller_number == record.caller_number
    # While the call was up its record said who answered, and no more.
    [live] = rec.live
    assert (live.outcome, live.operator_id, live.answered_interface, live.ended_at) == (
        "in_progress", operator, record.answered_interface, None)
    assert live.answered_at == record.answered_at and live.hold_seconds == hold


async def test_ring_no_answer_then_other_member_answers(make_listener, ami_server):
    _listener, rec = await make_listener()
    await ami_server.replay(trace("ami-queue-ringnoanswer-then-other"))
    [record] = await rec.wait_records(1)
    assert record.operator_id == "op2" and record.queue == "support-q"
    assert record.caller_number == "5551003"


async def test_abandon(make_listener, ami_server):
    _listener, rec = await make_listener()
    await ami_server.replay(trace("ami-queue-abandon"))
    [record] = await rec.wait_records(1)
    assert record.outcome == "abandoned"
    assert record.operator_id is None and record.hangup_by == "caller"
    assert record.hold_seconds == 4 and record.talk_seconds == 0
    assert rec.answered == [] and rec.live == []


async def test_direct_dial_answered_with_expectation_from_fastagi(make_listener, ami_server):
    listener, rec = await make_listener()
    # agi_uniqueid from ami-direct-dial-answered.agi.transcript
    listener.expect("1795425171.89", "dec-1", "op1")
    await ami_server.replay(trace("ami-direct-dial-answered"))
    [record] = await rec.wait_records(1)
    assert record.outcome == "answered" and record.operator_id == "op1"
    assert record.decision_id == "dec-1" and record.sticky_hit is True
    assert record.fallback_cause is None
    assert record.hold_seconds == 1 and record.talk_seconds == 4
    assert rec.answered[0].decision_id == "dec-1"


async def test_direct_dial_noanswer_falls_back_to_queue(make_listener, ami_server):
    # The traces' dialplan names the target ROUTE_TARGET: read it as the target variable.
    _listener, rec = await make_listener(tracker_options={"target_var": "ROUTE_TARGET",
                                                         "grace_seconds": 0.2})
    await ami_server.replay(trace("ami-direct-dial-noanswer-queue-priority"))
    records = await rec.wait_records(2)
    routed = next(r for r in records if r.caller_number == "5551007")
    waiting = next(r for r in records if r.caller_number == "5551006")
    assert routed.fallback_cause == "NOANSWER"
    assert routed.outcome == "answered" and routed.operator_id == "op1"
    assert routed.queue == "fallback-q" and routed.sticky_hit is False
    # The priority-10 caller was served first although it joined later.
    assert records.index(routed) < records.index(waiting)
    assert waiting.outcome == "answered" and waiting.fallback_cause is None
    assert waiting.hold_seconds == 12


async def test_shutdown_with_call_agent_complete_without_caller_headers(make_listener,
                                                                        ami_server):
    listener, rec = await make_listener()
    logins = ami_server.logins
    await ami_server.replay(trace("ami-shutdown-stop-now-with-call"))
    [record] = await rec.wait_records(1)
    assert record.outcome == "answered" and record.operator_id == "op1"
    assert record.hangup_by == "caller" and record.talk_seconds == 1
    # Shutdown, then EOF: the listener reconnects and rebuilds presence.
    await ami_server.wait_login(count=logins + 1)
    await listener.wait_connected(5)
    assert listener.status.reconnects >= 1
    assert listener.presence.states()["op1"] == OperatorState.AVAILABLE


RERUN = ["ami-queue-answered-caller-hangup", "ami-queue-answered-agent-hangup",
         "ami-queue-ringnoanswer-then-other", "ami-queue-abandon", "ami-devicestate"]


@pytest.mark.parametrize("name", RERUN)
async def test_rerun_traces_give_the_same_records(make_listener, ami_server, name):
    """Another run, another event order: the same facts must come out."""
    path_a = trace(name)
    path_b = TRACES / "rerun" / f"{name}.events-on.session"
    outs = []
    for path in (path_a, path_b):
        listener, rec = await make_listener()
        await ami_server.replay(path)
        [record] = await rec.wait_records(1)
        outs.append(record)
        await listener.stop()
    a, b = outs
    for field in ("outcome", "operator_id", "answered_interface", "hangup_by", "queue",
                  "caller_number"):
        assert getattr(a, field) == getattr(b, field), field
    # Asterisk truncates real time: the rerun's abandon says HoldTime 3, this run's 4.
    assert abs(a.talk_seconds - b.talk_seconds) <= 1
    assert abs(a.hold_seconds - b.hold_seconds) <= 1


async def test_presence_follows_pause_and_device_state(make_listener, ami_server):
    listener, rec = await make_listener()
    assert listener.presence.states() == {
        "op1": OperatorState.AVAILABLE, "op2": OperatorState.AVAILABLE,
        "op3": OperatorState.LOGGED_OFF}
    await ami_server.replay(trace("ami-member-admin"))
    await rec.wait_records(1)
    await until(lambda: listener.presence.states()["op3"] == OperatorState.LOGGED_OFF)
    details = listener.presence.details()
    assert details["op2"].state == OperatorState.AVAILABLE  # unpaused at the end
    assert details["op1"].call_uniqueid is None
