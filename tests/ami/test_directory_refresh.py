"""The listener's operator directory follows changes while it runs, without a restart.

Periodic reloads through the ``directory`` source, an on-demand reload when an event
names an interface nobody claims (rate-limited), and a failing source that leaves the
old map in force. Events are the recorded Asterisk 22 sessions, replayed over TCP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import pytest

from callrouter.ami.directory import DirectoryWatch
from callrouter.ami.interfaces import InterfaceMap
from callrouter.domain.model import Operator, OperatorState
from callrouter.simulator.ami import FakeAmiServer
from callrouter.simulator.ami_traces import asterisk_events
from tests.ami.conftest import OPERATORS, trace, until
from tests.ami.transfers import rewrite, value


class Directory:
    """Stands in for ``Store.operators``: counts reads, can fail."""

    def __init__(self, operators: Mapping[str, Operator]) -> None:
        self.operators = dict(operators)
        self.loads = 0
        self.failing: Exception | None = None

    async def __call__(self) -> Mapping[str, Operator]:
        self.loads += 1
        if self.failing is not None:
            raise self.failing
        return dict(self.operators)


def op(n: int, interface: str | None = None, active: bool = True) -> Operator:
    return Operator(id=f"op{n}", name=f"Operator {n}",
                    interfaces=(interface or f"Local/op{n}@operators/n",),
                    queues=("support-q",), active=active)


FAST = {"directory_interval": 3600.0, "directory_miss_interval": 0.05}


async def test_an_operator_added_after_start_is_known_at_its_first_call(
        make_listener, ami_server: FakeAmiServer) -> None:
    """op2 is a queue member Asterisk knows, added to the directory after the listener
    started. Its first call (op1 rings and does not answer, op2 answers) names op2: the
    AgentCalled for an unknown interface reloads the directory at once."""
    directory = Directory({"op1": op(1)})
    listener, rec = await make_listener(operators=directory.operators, directory=directory,
                                        **FAST)
    # The QueueStatus list at login names op2's interface: one reload, op2 still unknown.
    await until(lambda: directory.loads == 1)
    assert [u.interface for u in listener.presence.unmapped()] == ["Local/op2@operators/n"]
    assert "op2" not in listener.presence.states()

    directory.operators["op2"] = op(2)  # added by an admin; the periodic reload is 1 h off
    raws = [m.raw for m in asterisk_events(trace("ami-queue-ringnoanswer-then-other"))]
    connect = next(i for i, r in enumerate(raws) if r.startswith(b"Event: AgentConnect\r\n"))
    await ami_server.replay(raws[: connect + 1])
    # The screen-pop reaches op2 while the call is up (sent again if the AgentConnect
    # beat the reload).
    await until(lambda: "op2" in [a.operator_id for a in rec.answered])
    # ...and the call row names op2 while the call is up (the live record is written again
    # once the reload names the operator, if it went out without one).
    assert rec.live[-1].operator_id == "op2" and rec.live[-1].ended_at is None
    await ami_server.replay(raws[connect + 1:])
    [record] = await rec.wait_records(1)
    assert record.operator_id == "op2" and record.answered_interface == "Local/op2@operators/n"
    assert listener.presence.unmapped() == []
    assert listener.presence.states()["op2"] == OperatorState.AVAILABLE
    assert directory.loads == 2
    assert listener.status.directory_reloads == 2


async def test_periodic_reload_rebinds_interfaces_and_drops_removed_operators(
        make_listener, ami_server: FakeAmiServer) -> None:
    directory = Directory(OPERATORS)
    listener, rec = await make_listener(operators=OPERATORS, directory=directory,
                                        directory_interval=0.1)
    changes: list[tuple[str, OperatorState]] = []
    listener.presence.on_change = lambda o, s: changes.append((o, s))
    assert listener.presence.states()["op1"] == OperatorState.AVAILABLE

    # op1 leaves; its phone goes to the new op4; op2 is deactivated (still listed).
    directory.operators = {"op2": op(2, active=False), "op3": op(3),
                           "op4": op(4, "Local/op1@operators/n")}
    await until(lambda: "op4" in listener.presence.states())
    states = listener.presence.states()
    assert "op1" not in states and states["op4"] == OperatorState.AVAILABLE
    assert ("op1", OperatorState.LOGGED_OFF) in changes
    assert ("op4", OperatorState.AVAILABLE) in changes
    assert listener.interfaces.operators["op2"].active is False

    await ami_server.replay(trace("ami-queue-answered-caller-hangup"))
    [record] = await rec.wait_records(1)
    assert record.operator_id == "op4"  # op1's old interface, answered by its new owner


async def test_a_failing_directory_keeps_the_map_in_force(
        make_listener, ami_server: FakeAmiServer, caplog: pytest.LogCaptureFixture) -> None:
    directory = Directory(OPERATORS)
    directory.failing = ConnectionRefusedError("database is down")
    listener, rec = await make_listener(operators=OPERATORS, directory=directory,
                                        directory_interval=0.05)
    with caplog.at_level(logging.WARNING, logger="callrouter.ami.directory"):
        await until(lambda: directory.loads >= 3)
    assert "keeping the current interface map" in caplog.text
    assert "database is down" in caplog.text
    assert listener.status.directory_failures >= 3
    assert set(listener.presence.states()) == {"op1", "op2", "op3"}
    await ami_server.replay(trace("ami-queue-answered-agent-hangup"))
    [record] = await rec.wait_records(1)
    assert record.operator_id == "op1"

    directory.failing = None  # the database is back, with a change
    directory.operators = {**OPERATORS, "op5": op(5)}
    await until(lambda: "op5" in listener.presence.states())
    assert listener.status.directory_loaded_at is not None


def _member_status(interface: str) -> bytes:
    """A recorded QueueMemberStatus (support-q, op1) about another interface."""
    raw = next(m.raw for m in asterisk_events(trace("ami-queue-answered-agent-hangup"))
               if m.raw.startswith(b"Event: QueueMemberStatus\r\n"))
    assert value(raw, "Interface") == "Local/op1@operators/n"
    return rewrite(raw, {"Local/op1@operators/n": interface, "Operator One": interface})


async def test_a_call_that_ends_before_the_reload_still_names_the_new_operator(
        make_listener, ami_server: FakeAmiServer) -> None:
    """The whole call arrives at once (it ends before the reload it triggered): its
    record waits for that reload instead of being written without an operator."""
    directory = Directory({"op1": op(1)})
    _listener, rec = await make_listener(operators=directory.operators, directory=directory,
                                         **FAST)
    await until(lambda: directory.loads == 1)
    directory.operators["op2"] = op(2)
    await ami_server.replay(trace("ami-queue-ringnoanswer-then-other"))
    [record] = await rec.wait_records(1)
    assert record.operator_id == "op2" and record.talk_seconds == 4


async def test_unknown_interfaces_cannot_hammer_the_directory(
        make_listener, ami_server: FakeAmiServer) -> None:
    """300 events about 100 interfaces no operator has, over 0.6 s: the directory is read
    at most once per miss interval, and an interface a reload did not find costs nothing
    more afterwards."""
    directory = Directory(OPERATORS)
    listener, _rec = await make_listener(operators=OPERATORS, directory=directory,
                                         directory_interval=3600.0,
                                         directory_miss_interval=0.2)
    junk = [_member_status(f"PJSIP/trunk{i:03d}") for i in range(100)]
    for _ in range(3):
        await ami_server.send(b"".join(junk))
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.3)
    assert 1 <= directory.loads <= 4  # one per 0.2 s at most
    assert len(listener.presence.unmapped()) == 100
    settled = directory.loads
    for _ in range(3):  # the same junk again, well past the miss interval
        await ami_server.send(b"".join(junk))
        await asyncio.sleep(0.25)
    assert directory.loads == settled


async def test_refresh_operators_applies_a_directory_at_once(
        make_listener, ami_server: FakeAmiServer) -> None:
    """Without a ``directory`` source (the constructor call the app made so far), an
    owner can still hand the listener a new directory."""
    listener, _rec = await make_listener(operators={"op1": op(1)})
    assert listener.directory is None
    assert [u.interface for u in listener.presence.unmapped()] == ["Local/op2@operators/n"]
    assert listener.refresh_operators(OPERATORS) is True
    assert listener.presence.unmapped() == []
    assert listener.presence.states()["op2"] == OperatorState.AVAILABLE
    assert listener.refresh_operators(dict(OPERATORS)) is False  # nothing changed


async def test_urgent_misses_skip_the_memory_but_not_the_rate_limit() -> None:
    """A call ringing an interface a reload already missed asks again; many at once share
    one reload."""
    interfaces = InterfaceMap({"op1": op(1)})
    directory = Directory({"op1": op(1)})
    watch = DirectoryWatch(directory, interfaces.replace,
                           lambda k: interfaces.operator_for_interface(k) is not None,
                           interval=3600.0, miss_interval=0.1, miss_ttl=3600.0)
    watch.start()
    try:
        watch.unknown("Local/op2@operators/n")
        await until(lambda: directory.loads == 1)
        watch.unknown("Local/op2@operators/n")  # remembered as missing: no reload
        await asyncio.sleep(0.15)
        assert directory.loads == 1
        directory.operators["op2"] = op(2)
        for _ in range(20):
            watch.unknown("Local/op2@operators/n", urgent=True)
        await until(lambda: interfaces.operator_for_interface("Local/op2@operators/n") == "op2")
        assert directory.loads == 2
    finally:
        await watch.stop()


def test_a_held_record_is_written_after_the_wait_even_without_a_reload() -> None:
    """The reload never reports back (its task is gone): the record still comes out."""
    from callrouter.ami.tracker import CallTracker
    from callrouter.service.ports import CallRecord
    from tests.ami.test_tracker import events

    records: list[CallRecord] = []
    tracker = CallTracker(InterfaceMap({"op1": op(1)}), on_record=records.append,
                          hold_for_directory=lambda interface: True,
                          directory_wait_seconds=15.0)
    for i, ev in enumerate(events("ami-queue-ringnoanswer-then-other")):
        tracker.feed(ev, 100.0 + i * 0.01)
    tracker.tick(105.0)
    assert records == []  # op2's interface is unknown and a reload is said to be coming
    tracker.tick(130.0)
    [record] = records
    assert record.operator_id is None and record.answered_interface == "Local/op2@operators/n"


async def test_reload_soon_reloads_at_once_outside_the_schedule() -> None:
    """For an owner that knows the directory just changed (an admin edit)."""
    interfaces = InterfaceMap({"op1": op(1)})
    directory = Directory({"op1": op(1), "op2": op(2)})
    watch = DirectoryWatch(directory, interfaces.replace, lambda k: False, interval=3600.0)
    watch.start()
    try:
        await asyncio.sleep(0.05)
        assert directory.loads == 0
        watch.reload_soon()
        await until(lambda: "op2" in interfaces.operators)
        assert directory.loads == 1
    finally:
        await watch.stop()
