"""The call tracker alone: parsed trace events, reordered, duplicated, without sockets."""

from __future__ import annotations

import random

import pytest

from callrouter.ami.interfaces import InterfaceMap
from callrouter.ami.message import AmiMessage, AmiStreamParser, parse_block
from callrouter.ami.tracker import CallTracker
from callrouter.service.ports import CallRecord
from callrouter.simulator.ami_traces import asterisk_events
from tests.ami.conftest import OPERATORS, trace


def events(name: str) -> list[AmiMessage]:
    out = []
    for m in asterisk_events(trace(name)):
        msg = parse_block(m.raw.decode())
        assert msg is not None
        out.append(msg)
    return out


def run(evs: list[AmiMessage], **options: object) -> list[CallRecord]:
    records: list[CallRecord] = []
    tracker = CallTracker(InterfaceMap(OPERATORS), on_record=records.append,
                          **options)  # type: ignore[arg-type]
    for i, ev in enumerate(evs):
        tracker.feed(ev, float(i))
    tracker.tick(1e9)
    return records


def move_after(evs: list[AmiMessage], name: str, after: str) -> list[AmiMessage]:
    """Move the first ``name`` event to just after the last caller-side ``after`` event."""
    idx = next(i for i, e in enumerate(evs) if e.name == name)
    ev = evs.pop(idx)
    last = max(i for i, e in enumerate(evs) if e.name == after
               and (e.get("Channel") or "").startswith("Local/s@"))
    evs.insert(last + 1, ev)
    return evs


def key(r: CallRecord) -> tuple[object, ...]:
    return (r.uniqueid, r.outcome, r.operator_id, r.hold_seconds, r.talk_seconds, r.hangup_by)


def test_abandon_after_caller_hangup_is_the_same_call() -> None:
    base = run(events("ami-queue-abandon"))
    moved = run(move_after(events("ami-queue-abandon"), "QueueCallerAbandon", "Hangup"))
    assert [key(r) for r in base] == [key(r) for r in moved]
    assert base[0].outcome == "abandoned"


def test_agent_complete_after_caller_hangup() -> None:
    name = "ami-queue-answered-agent-hangup"
    base = run(events(name))
    moved = run(move_after(events(name), "AgentComplete", "Hangup"))
    assert [key(r) for r in base] == [key(r) for r in moved]


def test_agent_complete_lost_closes_after_grace_from_bridge_times() -> None:
    evs = [e for e in events("ami-queue-answered-caller-hangup") if e.name != "AgentComplete"]
    [record] = run(evs)
    assert record.outcome == "answered" and record.operator_id == "op1"
    assert record.talk_seconds in (4, 5)


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_non_caller_events_change_nothing(seed: int) -> None:
    """Presence-type and member-leg events may land anywhere between the caller's own."""
    name = "ami-queue-ringnoanswer-then-other"
    evs = events(name)
    base = run(list(evs))
    caller = [e for e in evs if (e.get("Channel") or "").startswith("Local/s@")
              or e.name in ("AgentComplete",)]
    others = [e for e in evs if e not in caller]
    rnd = random.Random(seed)
    mixed = list(caller)
    for e in others:
        mixed.insert(rnd.randrange(len(mixed) + 1), e)
    assert [key(r) for r in run(mixed)] == [key(r) for r in base]


def test_duplicated_events_give_one_record() -> None:
    evs = events("ami-queue-answered-caller-hangup")
    doubled = [e for ev in evs for e in (ev, ev)]
    assert [key(r) for r in run(doubled)] == [key(r) for r in run(evs)]


def test_events_for_unknown_calls_are_survived() -> None:
    records = run([AmiMessage.of(Event="AgentComplete", Queue="q", Interface="Local/x@y/n"),
                   AmiMessage.of(Event="Hangup", Uniqueid="1.1"),
                   AmiMessage.of(Event="DialEnd", Uniqueid="2.2", DialStatus="ANSWER"),
                   AmiMessage.of(Event="AgentConnect")])
    assert records == []


def test_direct_dial_from_an_untracked_channel_is_not_a_call() -> None:
    """An operator dialling out is not an inbound call: no decision, no queue, no record."""
    evs = events("ami-direct-dial-answered")
    assert run(evs) == []
    [record] = run(evs, target_var="ROUTE_TARGET")
    assert record.sticky_hit is True and record.operator_id == "op1"


def test_decision_via_varset_and_priority_is_not_the_queue_priority() -> None:
    evs = events("ami-direct-dial-noanswer-queue-priority")
    records = run(evs, target_var="ROUTE_TARGET")
    routed = next(r for r in records if r.fallback_cause == "NOANSWER")
    assert routed.queue == "fallback-q" and routed.sticky_hit is False


def test_stream_parser_banner_partial_reads_and_stray_cr() -> None:
    data = (b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: login-1\r\n"
            b"Message: Authentication accepted\r\n\r\nEvent: AGIExecEnd\r\nCommand: NOOP\r\r\n"
            b"Variable: A=1\r\nVariable: B=2\r\n\r\n")
    parser = AmiStreamParser()
    msgs = []
    for i in range(len(data)):  # one byte at a time
        msgs.extend(parser.feed(data[i:i + 1]))
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert [m.get("Response") or m.name for m in msgs] == ["Success", "AGIExecEnd"]
    assert msgs[1]["Command"] == "NOOP"
    assert msgs[1].getall("Variable") == ["A=1", "B=2"]
