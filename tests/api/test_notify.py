"""EventPublisher: what each notification publishes, and to whom."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from callrouter.ami.tracker import CallAnswered, LegEnded
from callrouter.api import EventPublisher
from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.events import DASHBOARD, EventHub, operator_topic
from callrouter.service.ports import CallRecord, DecisionRecord
from tests.api.conftest import ANNA_CALLER, NOW, answered


def decision(decision_id: str, uniqueid: str = "u1") -> DecisionRecord:
    return DecisionRecord(
        id=decision_id, decided_at=NOW, caller_raw=ANNA_CALLER, caller_number=ANNA_CALLER,
        queue="support", latency_ms=1.0, uniqueid=uniqueid,
        decision=Decision(Action.OPERATOR, "support", 0,
                          (Reason(ReasonCode.STICKY_AVAILABLE, "spoke with Anna"),),
                          target_operator_id="op1", target_interface="PJSIP/1001"),
    )


def answered_call(decision_id: str | None, operator_id: str | None = "op1") -> dict[str, object]:
    return {"server_id": "default", "uniqueid": "u1", "operator_id": operator_id,
            "caller_number": ANNA_CALLER, "decision_id": decision_id, "queue": "support"}


async def test_answered_goes_to_the_operator_with_the_decision_it_remembers() -> None:
    hub = EventHub()
    publisher = EventPublisher(hub)
    anna, boris, wall = (hub.subscribe(operator_topic("op1")),
                         hub.subscribe(operator_topic("op2")), hub.subscribe(DASHBOARD))
    publisher.on_decision(decision("d1"))
    publisher.on_answered(answered_call("d1"))
    publisher.on_answered(answered_call("d-unknown"))
    publisher.on_answered(answered_call("d1", operator_id=None))  # nobody claims it
    first = await anna.get()
    assert first["event"] == "answered"
    assert first["data"]["uniqueid"] == "u1"
    assert first["data"]["decision"]["reasons"] == [
        {"code": "sticky_available", "text": "spoke with Anna"}]
    assert (await anna.get())["data"]["decision"] is None  # read from the log later
    assert anna.pending() == 0
    assert boris.pending() == 0
    assert wall.pending() == 1  # the decision


async def test_remembered_decisions_are_bounded() -> None:
    publisher = EventPublisher(EventHub(), remember=3)
    for i in range(5):
        publisher.on_decision(decision(f"d{i}"))
    hub_sub = publisher.hub.subscribe(operator_topic("op1"))
    publisher.on_answered(answered_call("d0"))
    publisher.on_answered(answered_call("d4"))
    assert (await hub_sub.get())["data"]["decision"] is None
    assert (await hub_sub.get())["data"]["decision"] is not None


async def test_call_record_with_an_end_tells_the_operator_who_answered() -> None:
    hub = EventHub()
    publisher = EventPublisher(hub)
    anna, boris = hub.subscribe(operator_topic("op1")), hub.subscribe(operator_topic("op2"))
    record = answered("u1", ANNA_CALLER, "op1", NOW, talk=95)
    publisher.on_call_record(record)
    publisher.on_call_record(CallRecord(uniqueid="u2", outcome="abandoned",
                                        ended_at=NOW, hangup_by="caller"))
    publisher.on_call_record(replace(record, uniqueid="u3", ended_at=None))
    assert anna.pending() == 1
    assert boris.pending() == 0
    envelope = await anna.get()
    assert envelope == {"event": "call_ended", "data": {
        "server_id": "default", "uniqueid": "u1", "operator_id": "op1", "queue": "support",
        "outcome": "answered", "talk_seconds": 95, "hold_seconds": 0, "hangup_by": "caller",
        "transferred": False, "ended_at": "2026-11-23T12:00:00Z",
    }}


async def test_decisions_are_remembered_but_not_serialised_without_a_dashboard() -> None:
    hub = EventHub()
    publisher = EventPublisher(hub)
    anna = hub.subscribe(operator_topic("op1"))
    publisher.on_decision(decision("d1"))
    assert hub.published == 0  # nobody watches the dashboard: no JSON built
    publisher.on_answered(answered_call("d1"))
    assert (await anna.get())["data"]["decision"]["target_operator_id"] == "op1"


async def test_a_transfer_tells_the_operator_who_left_that_their_part_ended() -> None:
    """``leg_ended`` (the AMI tracker's, when an operator transfers the call away):
    ``call_ended`` to that operator, for their part; the new operator's screen-pop as
    usual, or none while nobody has taken the call (a blind transfer still ringing)."""
    hub = EventHub()
    publisher = EventPublisher(hub)
    anna, boris = hub.subscribe(operator_topic("op1")), hub.subscribe(operator_topic("op2"))
    left = NOW + timedelta(minutes=2)
    leg = LegEnded(operator_id="op1", interface="PJSIP/1001", answered_at=NOW,
                   ended_at=left, hold_seconds=12, talk_seconds=120)
    publisher.on_answered(CallAnswered(
        server_id="default", uniqueid="u1", operator_id=None, interface=None,
        caller_number=ANNA_CALLER, caller_name=None, decision_id=None, queue="support",
        transferred_from="op1", leg_ended=leg))
    assert (await anna.get()) == {"event": "call_ended", "data": {
        "server_id": "default", "uniqueid": "u1", "operator_id": "op1", "queue": "support",
        "outcome": "answered", "talk_seconds": 120, "hold_seconds": 12, "hangup_by": None,
        "transferred": True, "ended_at": "2026-11-23T12:02:00Z",
    }}
    assert boris.pending() == 0  # nobody has the call yet: no screen-pop

    # An attended transfer: the part's end comes with the new operator's screen-pop.
    publisher.on_answered({**answered_call(None, operator_id="op2"), "transferred_from": "op1",
                           "leg_ended": {"operator_id": "op1", "talk_seconds": 60,
                                         "hold_seconds": 0, "ended_at": left}})
    ended = await anna.get()
    assert (ended["event"], ended["data"]["talk_seconds"], ended["data"]["transferred"]) == (
        "call_ended", 60, True)
    assert (await boris.get())["event"] == "answered"
    # Without a leg (op2 answering the blind transfer later) op1 hears nothing more.
    publisher.on_answered({**answered_call(None, operator_id="op2"), "transferred_from": "op1"})
    assert anna.pending() == 0 and boris.pending() == 1


def test_remembered_decisions_are_kept_in_a_form_the_collector_stops_tracking() -> None:
    """5,000 remembered decisions as objects were the bulk of what the daemon's young
    collections walked; as nested tuples of strings they are untracked after one."""
    import gc

    from callrouter.api.notify import compact, expand
    from callrouter.domain.model import Action, Decision
    from callrouter.domain.reasons import Reason, ReasonCode

    decision = Decision(
        action=Action.OPERATOR, queue="support", priority=5,
        reasons=(Reason(ReasonCode.STICKY_AVAILABLE, "back to Anna"),
                 Reason(ReasonCode.VIP, "gold")),
        target_operator_id="op1", target_interface="PJSIP/1001", wait_seconds=20,
        announcement="callrouter/your-operator", escalated=True,
    )
    kept = compact(decision)
    assert expand(kept) == decision
    gc.collect()
    assert not gc.is_tracked(kept)


async def _published(build: object) -> dict[str, list[dict[str, object]]]:
    """What the publisher sends each operator for a call the tracker follows from the
    recorded-trace transfer scenarios (``tests/ami/transfers.py``)."""
    from callrouter.ami.interfaces import InterfaceMap
    from callrouter.ami.tracker import CallTracker
    from tests.ami.conftest import OPERATORS
    from tests.ami.test_transfers import messages

    hub = EventHub()
    publisher = EventPublisher(hub)
    subs = {op: hub.subscribe(operator_topic(op)) for op in OPERATORS}
    tracker = CallTracker(InterfaceMap(OPERATORS), on_record=publisher.on_call_record,
                          on_answered=publisher.on_answered)
    for i, msg in enumerate(messages(build())):  # type: ignore[operator]
        tracker.feed(msg, float(i))
    tracker.tick(1e9)
    out: dict[str, list[dict[str, object]]] = {}
    for op, sub in subs.items():
        out[op] = []
        while sub.pending():
            out[op].append(await sub.get())
    return out


def _ends(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(e["data"]["transferred"], e["data"]["hangup_by"])  # type: ignore[index]
            for e in events if e["event"] == "call_ended"]


async def test_a_blind_transfer_nobody_takes_ends_the_call_once_for_its_operator() -> None:
    """op1 blind-transfers, nobody answers, the caller hangs up: op1 was told their part
    ended at the BlindTransfer; the call's end is not sent to them a second time."""
    from tests.ami.transfers import blind_transfer_nobody_takes

    sent = await _published(blind_transfer_nobody_takes)
    assert _ends(sent["op1"]) == [(True, None)]
    assert [e["event"] for e in sent["op1"]] == ["answered", "call_ended"]
    assert sent["op2"] == [] and sent["op3"] == []


async def test_each_operator_of_a_chain_gets_one_call_ended() -> None:
    from tests.ami.transfers import blind_transfer_chain

    sent = await _published(blind_transfer_chain)
    assert _ends(sent["op1"]) == [(True, None)]
    assert _ends(sent["op2"]) == [(True, None)]
    assert _ends(sent["op3"]) == [(True, "operator")]  # the call's end: it is theirs
    for op in ("op1", "op2", "op3"):
        assert [e["event"] for e in sent[op]] == ["answered", "call_ended"]
