"""Follows each inbound call through the AMI event stream and says how it ended.

Synchronous and I/O-free: fed one parsed event at a time with the receive time, it
calls ``on_answered`` when someone picks the call up (or a transfer takes it from the
operator who had it), ``on_progress`` with an ``in_progress`` record of the live call at
the same moments (so the call row knows who has the call while it lasts), and
``on_record`` with the final record when the call ends.

Asterisk does not keep a stable order between event types (``ami/rerun/`` traces):
AgentComplete may come before or after the caller's Hangup (during ``core stop now``
it comes after, without any caller header), QueueCallerAbandon before or after the
Hangup. So nothing is decided when an event arrives; facts are collected per call and
the outcome is computed when the call is complete, or after a short grace period.

Transfers: every party that takes the call over is kept in order (queue members from
AgentConnect, operators a direct Dial of the caller's channel reached, the target of an
attended transfer). The record names the last of them as the operator who handled the
call, so the next repeat call goes back to that operator, and keeps the first one in
``transferred_from``. The operator who transfers the call away is told their part ended
(``CallAnswered.leg_ended``) when they leave it. Every record carries the call's legs
(``callrouter.legs``): each party's part, how it ended and to whom it went.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from callrouter.ami.interfaces import InterfaceMap, channel_key
from callrouter.ami.message import AmiMessage, OnceLog, to_int
from callrouter.domain.model import Outcome
from callrouter.legs import CallLeg, LegEnd, LeggedCallRecord
from callrouter.service.ports import CallRecord

log = logging.getLogger(__name__)

DECISION_VAR = "CALLROUTER_DECISION"
TARGET_VAR = "CALLROUTER_TARGET"
_FAILED_DIAL = frozenset({"CHANUNAVAIL", "CONGESTION", "INVALIDARGS"})


@dataclass(frozen=True, slots=True)
class LegEnded:
    """One operator's part of a call that goes on without them: they transferred it."""

    operator_id: str | None
    interface: str | None
    answered_at: datetime | None
    ended_at: datetime | None
    hold_seconds: int
    talk_seconds: int


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """Someone picked the call up: the screen-pop fires on this.

    Also sent when a transfer takes the call from an operator before anyone else has
    answered it (a blind transfer still ringing): ``operator_id`` and ``interface`` are
    then None (as for a party no operator claims), ``leg_ended`` says whose part ended.
    """

    server_id: str
    uniqueid: str
    operator_id: str | None
    interface: str | None
    caller_number: str | None
    caller_name: str | None
    decision_id: str | None
    queue: str | None
    linkedid: str | None = None
    # Set when the call was handed over: the operator who had it until now.
    transferred_from: str | None = None
    # That operator's part, on the one notification sent when they left the call.
    leg_ended: LegEnded | None = None


@dataclass(slots=True)
class _Dial:
    dest_uniqueid: str
    dest_channel: str
    begun_at: float
    status: str | None = None
    ended_at: float | None = None


@dataclass(slots=True)
class _Handler:
    """One party that took the call: answered it, or got it by an attended transfer."""

    interface: str
    uid: str | None  # the operator's channel
    at: float
    via: str  # "queue" (AgentConnect) | "dial" (direct Dial) | "transfer" (attended)
    hold: int | None = None  # HoldTime of a queue connect
    talk: int | None = None  # TalkTime of its AgentComplete
    complete: bool = False  # its AgentComplete came (queue legs only)
    ended_by: str | None = None  # AgentComplete Reason: "caller" | "operator"
    left_at: float | None = None  # it transferred the call away
    left_how: LegEnd | None = None  # which transfer event said so (None: none did)
    left_to: str | None = None  # what that transfer named (Extension@Context, an interface)
    left_told: bool = False  # its part's end went out (CallAnswered.leg_ended)
    announced: bool = False
    announced_as: str | None = None  # the operator id the screen-pop named


@dataclass(slots=True)
class _Call:
    uniqueid: str
    started_at: float  # Asterisk's clock (Timestamp header) when it has one
    seen_at: float = 0.0  # our clock: expiry never mixes the two
    adopted: bool = False
    channel: str | None = None
    linkedid: str | None = None
    caller_number: str | None = None
    caller_name: str | None = None
    queue: str | None = None
    decision_id: str | None = None
    target_operator_id: str | None = None
    decided_at: float | None = None  # expect()'s time (our clock), when it gave one
    queue_joined: bool = False
    queue_left: bool = False
    abandoned: bool = False
    hold_seconds: int | None = None
    talk_seconds: int | None = None
    rung: list[str] = field(default_factory=list)
    ring_no_answer: list[tuple[str, float]] = field(default_factory=list)
    member_uids: set[str] = field(default_factory=set)  # legs app_queue rang
    dials: dict[str, _Dial] = field(default_factory=dict)
    connected_interface: str | None = None  # AgentConnect
    connected_member_uid: str | None = None
    completed: bool = False  # AgentComplete
    answered_at: float | None = None
    bridged_at: float | None = None
    unbridged_at: float | None = None
    first_leaver: str | None = None  # "caller" | "operator", for direct dials
    hangup_by: str | None = None
    transferred: bool = False
    hung_up_at: float | None = None
    pending_since: float | None = None
    answered_sent: bool = False
    handlers: list[_Handler] = field(default_factory=list)
    # Event order of each party's last exit (BridgeLeave, else Hangup); an exit followed
    # by a BridgeEnter was a move between bridges (a transfer), not a hangup.
    left_seq: dict[str, int] = field(default_factory=dict)
    transfers: set[tuple[str, ...]] = field(default_factory=set)  # the ones applied


def _epoch(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class CallTracker:
    """State machine over AMI events, keyed by the caller channel's Uniqueid."""

    def __init__(
        self,
        interfaces: InterfaceMap,
        *,
        server_id: str = "default",
        on_record: Callable[[CallRecord], None] | None = None,
        on_answered: Callable[[CallAnswered], None] | None = None,
        on_progress: Callable[[CallRecord], None] | None = None,
        on_unmapped: Callable[[str], None] | None = None,
        hold_for_directory: Callable[[str], bool] | None = None,
        directory_wait_seconds: float = 15.0,
        decision_var: str = DECISION_VAR,
        target_var: str = TARGET_VAR,
        grace_seconds: float = 1.0,
        max_call_seconds: float = 6 * 3600,
        remember_finished: int = 20_000,
    ) -> None:
        self.interfaces = interfaces
        self.server_id = server_id
        self.on_record = on_record or (lambda r: None)
        self.on_answered = on_answered or (lambda a: None)
        # The live call's record (outcome in_progress) each time someone takes the call.
        self.on_progress = on_progress
        # A call rang or reached an interface no operator claims: the listener may reload
        # the directory before the record is written.
        self.on_unmapped = on_unmapped or (lambda interface: None)
        # Is a reload under way that may name this interface's operator? Then a finished
        # call's record waits for it (at most ``directory_wait_seconds``).
        self.hold_for_directory = hold_for_directory or (lambda interface: False)
        self.directory_wait_seconds = directory_wait_seconds
        self._held: dict[str, tuple[_Call, float]] = {}
        self.decision_var = decision_var
        self.target_var = target_var
        self.grace_seconds = grace_seconds
        self.max_call_seconds = max_call_seconds
        self._remember = remember_finished
        self.calls: dict[str, _Call] = {}
        self._member_of: dict[str, str] = {}  # member leg uniqueid -> caller uniqueid
        # uniqueid -> (decision id, target operator, when decided) told by expect()
        self._expected: dict[str, tuple[str | None, str | None, float | None]] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._pending: set[str] = set()
        self.anomaly = OnceLog(log)
        self.events_applied = 0
        self.records_emitted = 0
        self.progress_emitted = 0
        self._seq = 0
        self.handlers: dict[str, Callable[[AmiMessage, float], None]] = {
            "VarSet": self.on_var_set,
            "QueueCallerJoin": self.on_queue_caller_join,
            "AgentCalled": self.on_agent_called,
            "AgentRingNoAnswer": self.on_agent_ring_no_answer,
            "AgentConnect": self.on_agent_connect,
            "AgentComplete": self.on_agent_complete,
            "QueueCallerAbandon": self.on_queue_caller_abandon,
            "QueueCallerLeave": self.on_queue_caller_leave,
            "DialBegin": self.on_dial_begin,
            "DialEnd": self.on_dial_end,
            "BridgeEnter": self.on_bridge_enter,
            "BridgeLeave": self.on_bridge_leave,
            "Hangup": self.on_hangup,
            "BlindTransfer": self.on_blind_transfer,
            "AttendedTransfer": self.on_attended_transfer,
        }

    # -- entry points ---------------------------------------------------------------

    def feed(self, msg: AmiMessage, now: float) -> None:
        handler = self.handlers.get(msg.name or "")
        if handler is not None:
            handler(msg, now)

    def expect(self, uniqueid: str, decision_id: str | None,
               target_operator_id: str | None, now: float | None = None) -> None:
        """The FastAGI side tells which decision a channel carries (no VarSet needed).

        ``now``: when the decision was made (our clock). A caller who hangs up before
        any Dial or Queue (during the announcement or the busy-operator wait) sends no
        event the tracker follows but its Hangup; the call then started no later than
        this, and the time until the Hangup is how long the caller waited.
        """
        call = self.calls.get(uniqueid)
        if call is not None:
            call.adopted = True
            call.decision_id = decision_id or call.decision_id
            call.target_operator_id = target_operator_id or call.target_operator_id
        elif uniqueid not in self._finished:
            self._expected[uniqueid] = (decision_id, target_operator_id, now)
            if len(self._expected) > self._remember:
                self._expected.pop(next(iter(self._expected)))

    @property
    def expected(self) -> int:
        """Routed channels announced by ``expect()`` that no event has named yet."""
        return len(self._expected)

    def tick(self, now: float) -> None:
        """Close calls whose grace period ran out, and calls far too old to be alive."""
        for uid, (held, since) in list(self._held.items()):
            if now - since >= self.directory_wait_seconds:
                del self._held[uid]
                self._emit(held)
        for uid in list(self._pending):
            call = self.calls.get(uid)
            if call is None:
                self._pending.discard(uid)
            elif call.pending_since is not None and now - call.pending_since >= self.grace_seconds:
                self._finish(call, now)
        if self.max_call_seconds:
            for call in list(self.calls.values()):
                if now - call.seen_at > self.max_call_seconds:
                    self.anomaly("call without Hangup expired", call.uniqueid)
                    if call.hung_up_at is None:
                        call.hung_up_at = now
                    self._finish(call, now)

    def flush_all(self, now: float) -> None:
        """Asterisk went away (Shutdown): every call it had is over."""
        for call in list(self.calls.values()):
            if call.hung_up_at is None:
                call.hung_up_at = now
            self._finish(call, now)
        self._member_of.clear()

    def directory_changed(self) -> None:
        """The interface map was reloaded: a live call whose screen-pop went out without an
        operator (the interface was unknown then) gets it again, now naming the operator,
        and its call row learns who has it."""
        for call in list(self.calls.values()):
            current = self._current(call)
            if (current is None or not current.announced or current.announced_as is not None
                    or current.left_at is not None):
                continue
            if self._op(current) is not None:
                self._announce(call, current, None)
                self._progress(call)

    # -- helpers --------------------------------------------------------------------

    def _ts(self, msg: AmiMessage, now: float) -> float:
        # timestampevents=yes is not the default: fall back to the receive time.
        ts = msg.headers.get("Timestamp")
        if ts:
            try:
                return float(ts)
            except ValueError:
                self.anomaly("unparseable Timestamp", ts)
        return now

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _call(self, msg: AmiMessage, now: float, adopt: bool) -> _Call | None:
        h = msg.headers
        uid = h.get("Uniqueid")
        if not uid:
            return None
        call = self.calls.get(uid)
        if call is None:
            if uid in self._finished:
                self.anomaly("event for a call already ended", f"{msg.name} {uid}")
                return None
            if uid in self._member_of:  # a member leg, not a caller
                return None
            call = _Call(uniqueid=uid, started_at=self._ts(msg, now), seen_at=now)
            expected = self._expected.pop(uid, None)
            if expected is not None:
                call.adopted = True
                call.decision_id, call.target_operator_id, call.decided_at = expected
            self.calls[uid] = call
        if adopt:
            call.adopted = True
        if call.channel is None:
            call.channel = h.get("Channel")
            call.linkedid = h.get("Linkedid")
            num = h.get("CallerIDNum")
            call.caller_number = None if num in (None, "", "<unknown>") else num
            name = h.get("CallerIDName")
            call.caller_name = None if name in (None, "", "<unknown>") else name
        return call

    def _tracked(self, msg: AmiMessage) -> _Call | None:
        uid = msg.headers.get("Uniqueid")
        return self.calls.get(uid) if uid else None

    def _link_member(self, call: _Call, member_uid: str | None) -> None:
        if member_uid:
            call.member_uids.add(member_uid)
            self._member_of[member_uid] = call.uniqueid

    def _check_mapped(self, interface: str | None) -> None:
        if interface and self.interfaces.operator_for_interface(interface) is None:
            self.on_unmapped(interface)

    # -- who has the call -----------------------------------------------------------

    def _op(self, handler: _Handler) -> str | None:
        return self.interfaces.operator_for_interface(handler.interface)

    def _handlers(self, call: _Call) -> list[_Handler]:
        # A Dial that turned out to be a queue member's leg (AgentCalled came late) is the
        # queue's answer, not a handler of its own.
        return [h for h in call.handlers if not (h.via == "dial" and h.uid in call.member_uids)]

    def _current(self, call: _Call) -> _Handler | None:
        handlers = self._handlers(call)
        return handlers[-1] if handlers else None

    def _handler_by_uid(self, call: _Call, uid: str | None) -> _Handler | None:
        if not uid:
            return None
        return next((h for h in call.handlers if h.uid == uid), None)

    def _take(self, call: _Call, handler: _Handler) -> None:
        """Someone took the call: its first answer, or a handover after a transfer."""
        previous = self._current(call)
        call.handlers.append(handler)
        if not call.adopted:  # an operator's own outgoing call: nothing to screen-pop or record
            return
        self._check_mapped(handler.interface)
        if previous is None:
            if not call.answered_sent:
                self._announce(call, handler, None)
        else:
            if previous.left_at is None:  # no transfer event said so: it left as this one took
                previous.left_at = handler.at
            self._announce(call, handler, self._named(previous), self._leg_of(call, previous))
        self._progress(call)

    def _named(self, handler: _Handler) -> str | None:
        """The operator a handler was announced as (else the one the directory says now)."""
        return handler.announced_as if handler.announced else self._op(handler)

    def _leg_of(self, call: _Call, handler: _Handler) -> LegEnded | None:
        """The part of a handler that left the call, once (None when already told)."""
        if handler.left_told:
            return None
        handler.left_told = True
        if handler.hold is not None:
            hold = handler.hold
        else:
            dial = call.dials.get(handler.uid or "")
            hold = _span(dial.begun_at, dial.ended_at) if dial is not None else 0
        return LegEnded(
            operator_id=self._named(handler), interface=self._spelled(handler) or None,
            answered_at=_epoch(handler.at), ended_at=_epoch(handler.left_at),
            hold_seconds=hold, talk_seconds=_span(handler.at, handler.left_at))

    def _tell_left(self, call: _Call) -> None:
        """The current handler transferred the call and nobody has taken it yet: tell
        them their part ended now, not when the next party answers."""
        current = self._current(call)
        if current is None or current.left_at is None or not call.adopted:
            return
        leg = self._leg_of(call, current)
        if leg is None:
            return
        self.on_answered(CallAnswered(
            server_id=self.server_id, uniqueid=call.uniqueid, operator_id=None, interface=None,
            caller_number=call.caller_number, caller_name=call.caller_name,
            decision_id=call.decision_id, queue=call.queue, linkedid=call.linkedid,
            transferred_from=leg.operator_id, leg_ended=leg))

    def _announce(self, call: _Call, handler: _Handler, transferred_from: str | None,
                  leg: LegEnded | None = None) -> None:
        if not call.adopted:
            return
        call.answered_sent = True
        operator_id = self._op(handler)
        handler.announced, handler.announced_as = True, operator_id
        self.on_answered(CallAnswered(
            server_id=self.server_id, uniqueid=call.uniqueid,
            operator_id=operator_id, interface=handler.interface or None,
            caller_number=call.caller_number, caller_name=call.caller_name,
            decision_id=call.decision_id, queue=call.queue, linkedid=call.linkedid,
            transferred_from=transferred_from, leg_ended=leg))

    def _progress(self, call: _Call) -> None:
        """The live call's record: who has it now (written while the call lasts)."""
        if self.on_progress is None or not call.adopted:
            return
        self.progress_emitted += 1
        self.on_progress(self.record_of(call, live=True))

    # -- handlers (the event table) -------------------------------------------------

    def on_var_set(self, msg: AmiMessage, now: float) -> None:
        var = msg.headers.get("Variable")
        if not var:
            return
        if var[0] == "_":
            var = var.lstrip("_")
        if var != self.decision_var and var != self.target_var:
            return
        uid = msg.headers.get("Uniqueid")
        if uid in self._member_of:  # inherited by a member leg
            return
        call = self._call(msg, now, adopt=True)
        if call is None:
            return
        value = msg.headers.get("Value") or None
        if var == self.decision_var:
            call.decision_id = value
        else:
            call.target_operator_id = value
        self.events_applied += 1

    def on_queue_caller_join(self, msg: AmiMessage, now: float) -> None:
        call = self._call(msg, now, adopt=True)
        if call is None:
            self.anomaly("QueueCallerJoin without Uniqueid")
            return
        # "Priority" here is the dialplan priority, not the queue priority: not read.
        call.queue_joined = True
        call.queue = msg.headers.get("Queue") or call.queue
        self.events_applied += 1

    def on_agent_called(self, msg: AmiMessage, now: float) -> None:
        call = self._call(msg, now, adopt=True)
        if call is None:
            return
        interface = msg.headers.get("Interface")
        call.rung.append(interface or msg.headers.get("MemberName") or "?")
        self._link_member(call, msg.headers.get("DestUniqueid"))
        self._check_mapped(interface)
        self.events_applied += 1

    def on_agent_ring_no_answer(self, msg: AmiMessage, now: float) -> None:
        call = self._call(msg, now, adopt=True)
        if call is None:
            return
        # RingTime is milliseconds here, seconds in AgentConnect.
        ring_s = to_int(msg.headers.get("RingTime")) / 1000.0
        call.ring_no_answer.append((msg.headers.get("Interface") or "?", ring_s))
        self._link_member(call, msg.headers.get("DestUniqueid"))
        self.events_applied += 1

    def on_agent_connect(self, msg: AmiMessage, now: float) -> None:
        call = self._call(msg, now, adopt=True)
        if call is None:
            self.anomaly("AgentConnect without caller Uniqueid")
            return
        h = msg.headers
        ts = self._ts(msg, now)
        interface, member_uid = h.get("Interface"), h.get("DestUniqueid")
        call.queue = h.get("Queue") or call.queue
        self._link_member(call, member_uid)
        if call.answered_at is None:
            call.answered_at = ts
        self.events_applied += 1
        known = (self._handler_by_uid(call, member_uid) if member_uid else next(
            (x for x in call.handlers if x.via == "queue" and x.interface == interface
             and not x.complete), None))
        if known is not None:  # a repeated event, or its AgentComplete came first
            return
        hold = to_int(h.get("HoldTime"))
        if self._current(call) is None:
            call.hold_seconds = hold
        # A second AgentConnect: the call was transferred back into a queue.
        call.connected_interface = interface
        call.connected_member_uid = member_uid
        call.completed = False
        self._take(call, _Handler(interface or "", member_uid, ts, "queue", hold=hold))

    def on_agent_complete(self, msg: AmiMessage, now: float) -> None:
        h = msg.headers
        call = self._tracked(msg)
        if call is None and "Uniqueid" in h:
            call = self._call(msg, now, adopt=True)  # a call that began before we listened
        if call is None:
            # During "core stop now" the caller channel is gone: no caller headers at all.
            owner = self._member_of.get(h.get("DestUniqueid") or "")
            call = self.calls.get(owner) if owner else None
        if call is None:
            call = self._by_interface_and_queue(h.get("Interface"), h.get("Queue"))
        if call is None:
            self.anomaly("AgentComplete for an unknown call", h.get("DestUniqueid") or "")
            return
        ts = self._ts(msg, now)
        interface, member_uid = h.get("Interface"), h.get("DestUniqueid")
        talk = to_int(h.get("TalkTime"))
        if call.connected_interface is None:
            call.connected_interface = interface
            call.connected_member_uid = member_uid
            call.queue = h.get("Queue") or call.queue
        if call.hold_seconds is None:
            call.hold_seconds = to_int(h.get("HoldTime"))
        call.talk_seconds = talk
        handler = self._handler_by_uid(call, member_uid) or next(
            (x for x in reversed(call.handlers)
             if x.via == "queue" and x.interface == interface and not x.complete), None)
        if handler is None:  # no AgentConnect seen (began before we listened, or reordered)
            handler = _Handler(interface or "", member_uid, ts - talk, "queue",
                               hold=to_int(h.get("HoldTime")))
            call.handlers.append(handler)
            call.handlers.sort(key=lambda x: x.at)
            self._link_member(call, member_uid)
        handler.talk, handler.complete = talk, True
        reason = (h.get("Reason") or "").lower()
        if reason == "caller":
            call.hangup_by = handler.ended_by = "caller"
        elif reason == "agent":
            call.hangup_by = handler.ended_by = "operator"
        elif reason == "transfer":
            call.transferred = True
            if handler.left_at is None:
                handler.left_at = ts
        call.completed = all(x.complete for x in call.handlers if x.via == "queue")
        self.events_applied += 1
        self._maybe_finish(call, now)

    def _by_interface_and_queue(self, interface: str | None, queue: str | None) -> _Call | None:
        if not interface:
            return None
        for call in self.calls.values():
            if (call.connected_interface == interface and not call.completed
                    and (queue is None or call.queue == queue)):
                return call
        return None

    def on_queue_caller_abandon(self, msg: AmiMessage, now: float) -> None:
        call = self._call(msg, now, adopt=True)
        if call is None:
            return
        call.abandoned = True
        call.queue_joined = True
        call.queue = msg.headers.get("Queue") or call.queue
        if not call.handlers:  # else: given up in a queue it was transferred to
            call.hold_seconds = to_int(msg.headers.get("HoldTime"))
        self.events_applied += 1
        self._maybe_finish(call, now)

    def on_queue_caller_leave(self, msg: AmiMessage, now: float) -> None:
        call = self._tracked(msg)
        if call is None:
            return
        call.queue_left = True
        self.events_applied += 1
        self._maybe_finish(call, now)

    def on_dial_begin(self, msg: AmiMessage, now: float) -> None:
        h = msg.headers
        if "Uniqueid" not in h:  # an Originate's own dial: no calling channel
            return
        dest_uid = h.get("DestUniqueid")
        if not dest_uid:
            return
        # Not adopted: a dial from an untracked channel (an operator calling out) is
        # only kept if the channel turns out to be a routed or queued call.
        call = self._call(msg, now, adopt=False)
        if call is None:
            return
        call.dials[dest_uid] = _Dial(dest_uid, h.get("DestChannel") or "", self._ts(msg, now))
        self._member_of[dest_uid] = call.uniqueid
        self.events_applied += 1

    def on_dial_end(self, msg: AmiMessage, now: float) -> None:
        h = msg.headers
        call = self._tracked(msg)
        if call is None:
            return
        dest_uid = h.get("DestUniqueid") or ""
        dial = call.dials.get(dest_uid)
        if dial is None:
            dial = _Dial(dest_uid, h.get("DestChannel") or "", self._ts(msg, now))
            call.dials[dest_uid] = dial
            self._member_of[dest_uid] = call.uniqueid
        status = (h.get("DialStatus") or "").upper()
        if not status:
            self.anomaly("DialEnd without DialStatus")
        dial.status = status or None
        dial.ended_at = self._ts(msg, now)
        self.events_applied += 1
        # After a blind transfer the caller's own channel dials the new operator, also
        # when it first came through a queue.
        if (status == "ANSWER" and dest_uid not in call.member_uids
                and (not call.queue_joined or call.transferred)):
            if call.answered_at is None:
                call.answered_at = dial.ended_at
            if self._handler_by_uid(call, dest_uid) is None:
                self._take(call, _Handler(self.interfaces.interface_of_channel(dial.dest_channel),
                                          dest_uid, dial.ended_at, "dial"))

    def on_bridge_enter(self, msg: AmiMessage, now: float) -> None:
        uid = msg.headers.get("Uniqueid") or ""
        call = self.calls.get(uid)
        if call is None:
            owner = self._member_of.get(uid)
            member_call = self.calls.get(owner) if owner else None
            if member_call is not None:
                member_call.left_seq.pop(uid, None)  # moved into another bridge
            return
        call.left_seq.pop(uid, None)
        if call.bridged_at is None:
            call.bridged_at = self._ts(msg, now)
            self.events_applied += 1

    def on_bridge_leave(self, msg: AmiMessage, now: float) -> None:
        uid = msg.headers.get("Uniqueid") or ""
        call = self.calls.get(uid)
        if call is not None:
            call.unbridged_at = self._ts(msg, now)
            call.left_seq[uid] = self._next_seq()
            if call.first_leaver is None and call.bridged_at is not None:
                call.first_leaver = "caller"
            self.events_applied += 1
            return
        owner = self._member_of.get(uid)
        if owner is not None:
            call = self.calls.get(owner)
            if call is not None:
                call.left_seq[uid] = self._next_seq()
                if call.first_leaver is None and call.bridged_at is not None:
                    call.first_leaver = "operator"

    def on_hangup(self, msg: AmiMessage, now: float) -> None:
        uid = msg.headers.get("Uniqueid") or ""
        call = self.calls.get(uid)
        if call is None:
            owner = self._member_of.get(uid)
            if owner is not None:
                member_call = self.calls.get(owner)
                if member_call is not None:
                    member_call.left_seq.setdefault(uid, self._next_seq())
                if (member_call is not None and member_call.first_leaver is None
                        and member_call.bridged_at is not None and member_call.unbridged_at is None
                        and uid in member_call.dials
                        and member_call.dials[uid].status == "ANSWER"):
                    member_call.first_leaver = "operator"
                return
            if uid not in self._expected:
                return  # a channel that is no routed call (an operator's, an outgoing one)
            # A routed caller who hung up before any Dial or Queue (during the
            # announcement or the busy-operator wait, e.g. a SIP CANCEL): the Hangup is
            # the first event the tracker follows for it. It ends the call now, and no
            # expectation is left behind.
            call = self._call(msg, now, adopt=True)
            if call is None:
                return
            if call.decided_at is not None and call.decided_at < call.started_at:
                call.started_at = call.decided_at
        if call.hung_up_at is None:
            call.hung_up_at = self._ts(msg, now)
        call.left_seq.setdefault(uid, self._next_seq())
        self.events_applied += 1
        if not call.adopted:
            self._drop(call)
            return
        self._maybe_finish(call, now)

    def _transfer_call(self, h: Mapping[str, str], direct: tuple[str, ...],
                       via_leg: tuple[str, ...]) -> tuple[_Call | None, str | None]:
        """The tracked call a transfer event is about, and the header prefix that found it:
        a party that *is* the caller's channel first (adopted calls before others), else a
        party that is one of its legs (the operator's channel)."""
        found: list[tuple[_Call, str]] = []
        for prefix in direct:
            call = self.calls.get(h.get(f"{prefix}Uniqueid") or "")
            if call is not None:
                found.append((call, prefix))
        for call, prefix in sorted(found, key=lambda f: not f[0].adopted):
            return call, prefix
        for prefix in via_leg:
            owner = self._member_of.get(h.get(f"{prefix}Uniqueid") or "")
            call = self.calls.get(owner) if owner else None
            if call is not None:
                return call, prefix
        return None, None

    def _hand_off(self, call: _Call, ts: float, key: tuple[str, ...], how: LegEnd,
                  target: str | None) -> bool:
        """The operator who has the call transfers it away (to whom shows later, or now).
        False for a transfer already applied: a transferer channel transfers once."""
        if key in call.transfers:
            return False
        call.transfers.add(key)
        call.transferred = True
        current = self._current(call)
        if current is not None and current.left_how is None:
            if current.left_at is None:
                current.left_at = ts
            current.left_how, current.left_to = how, target
        return True

    def on_blind_transfer(self, msg: AmiMessage, now: float) -> None:
        """BlindTransfer (main/stasis_bridges.c ``blind_transfer_to_ami``): Result,
        Transferer*, Transferee*, Bridge*, IsExternal, Context, Extension.

        The transferee (the caller) leaves the bridge and runs Context/Extension; whoever
        answers it there (a Dial from its channel, or a queue's AgentConnect) takes over.
        """
        h = msg.headers
        if h.get("Result") != "Success":  # Fail / Invalid / Not Permitted: nothing moved
            return
        call, _prefix = self._transfer_call(h, ("Transferee", "Transferer"),
                                            ("Transferer", "Transferee"))
        if call is None:
            return
        key = ("blind", h.get("TransfererUniqueid") or "", h.get("TransfereeUniqueid") or "")
        exten, context = h.get("Extension"), h.get("Context")
        target = f"{exten}@{context}" if exten and context else exten or None
        if self._hand_off(call, self._ts(msg, now), key, LegEnd.BLIND_TRANSFER, target):
            self.events_applied += 1
            self._tell_left(call)
            # The row learns at once that this leg ended (the caller may wait a while).
            self._progress(call)

    def on_attended_transfer(self, msg: AmiMessage, now: float) -> None:
        """AttendedTransfer (main/stasis_bridges.c ``attended_transfer_to_ami``): Result,
        OrigTransferer*, OrigBridge*, SecondTransferer*, SecondBridge*, Transferee*,
        TransferTarget*, IsExternal, DestType (Bridge, App, Link, Threeway, Fail), ...

        Transferee is the party the first transferer leg talked to, TransferTarget the
        party of the second leg. Which one is the caller depends on which dialog the phone
        sent its REFER on, so either may be; the other one takes the call over.
        """
        h = msg.headers
        if h.get("Result") != "Success":
            return
        if h.get("DestType") in ("Threeway", "Fail"):  # the transferer stays on the call
            return
        call, prefix = self._transfer_call(
            h, ("Transferee", "TransferTarget"), ("OrigTransferer", "SecondTransferer"))
        if call is None:
            return
        ts = self._ts(msg, now)
        key = ("attended", h.get("OrigTransfererUniqueid") or "",
               h.get("SecondTransfererUniqueid") or "")
        other = {"Transferee": "TransferTarget", "TransferTarget": "Transferee",
                 "OrigTransferer": "TransferTarget", "SecondTransferer": "Transferee"}[prefix or ""]
        channel, uid = h.get(f"{other}Channel"), h.get(f"{other}Uniqueid")
        takes = bool(channel and uid and uid != call.uniqueid
                     and self._handler_by_uid(call, uid) is None)
        target = (self.interfaces.interface_of_channel(channel or "") if takes
                  else h.get("DestApp") or None)
        if not self._hand_off(call, ts, key, LegEnd.ATTENDED_TRANSFER, target):
            return
        self.events_applied += 1
        if takes:
            assert channel is not None and uid is not None
            self._member_of[uid] = call.uniqueid
            self._take(call, _Handler(self.interfaces.interface_of_channel(channel), uid, ts,
                                      "transfer"))
        else:  # DestType App: the caller went to an application, nobody took it
            self._tell_left(call)
            self._progress(call)

    # -- ending ---------------------------------------------------------------------

    def _maybe_finish(self, call: _Call, now: float) -> None:
        if call.hung_up_at is None:
            return
        waiting_for_complete = call.connected_interface is not None and not call.completed
        # An unanswered queue call may still get its QueueCallerAbandon after the Hangup.
        waiting_for_queue = call.queue_joined and not (call.abandoned or call.connected_interface)
        if waiting_for_complete or waiting_for_queue:
            if call.pending_since is None:
                call.pending_since = now
                self._pending.add(call.uniqueid)
            return
        self._finish(call, now)

    def _drop(self, call: _Call) -> None:
        self.calls.pop(call.uniqueid, None)
        self._pending.discard(call.uniqueid)
        # Only legs still ours: an operator's consult call (an untracked channel that dialled
        # the transfer target) must not take the target away from the caller's call.
        legs = call.member_uids | call.dials.keys() | {h.uid for h in call.handlers if h.uid}
        for uid in legs:
            if self._member_of.get(uid) == call.uniqueid:
                del self._member_of[uid]
        self._finished[call.uniqueid] = None
        while len(self._finished) > self._remember:
            self._finished.popitem(last=False)

    def _finish(self, call: _Call, now: float) -> None:
        self._drop(call)
        if not call.adopted:
            return
        if any(self._op(h) is None and h.interface and self.hold_for_directory(h.interface)
               for h in self._handlers(call)):
            # Someone no operator claims took the call and the directory is being reloaded
            # for that interface: the record waits for it (release_held()).
            self._held[call.uniqueid] = (call, now)
            return
        self._emit(call)

    def _emit(self, call: _Call) -> None:
        self.records_emitted += 1
        self.on_record(self.record_of(call))

    def release_held(self) -> None:
        """A directory reload finished (or failed): write the records that waited for it."""
        held, self._held = self._held, {}
        for call, _since in held.values():
            self._emit(call)

    def record_of(self, call: _Call, *, live: bool = False) -> LeggedCallRecord:
        """The call's record; ``live``: while it lasts (outcome ``in_progress``, no end, no
        talk time or hangup side yet), naming who has it now and who answered first.
        Either way with every leg so far (the live leg without an end)."""
        direct = [d for uid, d in call.dials.items() if uid not in call.member_uids]
        answered_direct = next((d for d in direct if d.status == "ANSWER"), None)
        # Dials after the first answer were a transferred caller's, not the routing's.
        failed_direct = [d for d in direct if d.status and d.status != "ANSWER"
                         and (call.answered_at is None or d.begun_at <= call.answered_at)]
        fallback_cause = failed_direct[-1].status if failed_direct else None

        interface: str | None
        operator_id: str | None
        hold: int
        talk: int | None
        hangup_by: str | None
        transferred_from: str | None = None
        first_operator: str | None = None
        handlers = self._handlers(call)
        handed_over = len(handlers) > 1 or bool(handlers and handlers[-1].via == "transfer")
        if handed_over:  # transferred: the last operator handled it
            operator_id, interface, hold, talk, hangup_by, first_operator, transferred_from = \
                self._handed_over(call, handlers)
        elif call.connected_interface is not None:
            interface = call.connected_interface
            operator_id = self.interfaces.operator_for_interface(interface)
            hold = call.hold_seconds or 0
            talk = call.talk_seconds
            if talk is None:  # AgentComplete never came (shutdown): use the bridge times
                talk = _span(call.bridged_at, call.unbridged_at or call.hung_up_at)
            hangup_by = call.hangup_by
        elif answered_direct is not None:
            operator_id = self.interfaces.operator_for_channel(answered_direct.dest_channel)
            interface = self.interfaces.interface_of_channel(answered_direct.dest_channel)
            hold = _span(answered_direct.begun_at, answered_direct.ended_at)
            talk = _span(call.bridged_at or answered_direct.ended_at,
                         call.unbridged_at or call.hung_up_at)
            hangup_by = call.first_leaver or "caller"
        else:
            interface = operator_id = None
            hold = call.hold_seconds if call.hold_seconds is not None else _span(
                call.started_at, call.hung_up_at)
            talk = 0
            hangup_by = "caller" if call.abandoned else None

        if interface is not None:
            outcome = Outcome.ANSWERED
        elif call.abandoned:
            outcome = Outcome.ABANDONED
        elif failed_direct and all(d.status in _FAILED_DIAL for d in failed_direct) \
                and not call.queue_joined:
            outcome = Outcome.FAILED
        elif failed_direct and failed_direct[-1].status == "CANCEL":
            outcome = Outcome.ABANDONED  # the caller hung up while the target rang
            hangup_by = "caller"
        elif failed_direct or call.rung or call.queue_joined:
            outcome = Outcome.NO_ANSWER
        else:
            outcome = Outcome.ABANDONED  # hung up before anyone was tried
            hangup_by = "caller"
        tried = bool(interface is not None or answered_direct is not None or failed_direct
                     or call.rung or call.queue_joined)

        # The decision's target answered (it may have transferred the call on since). A
        # target never tried (the caller hung up during the announcement or the busy
        # wait) is neither a hit nor a miss: the sticky hit rate is about the operators.
        answered_by = first_operator if handed_over else operator_id
        sticky_hit: bool | None = None
        if call.target_operator_id and tried:
            sticky_hit = answered_by is not None and answered_by == call.target_operator_id
        ended_at = _epoch(call.hung_up_at)
        legs = self._legs(call, handlers, live=live, hold=hold, talk=talk or 0,
                          hangup_by=hangup_by)
        if live:  # the store keeps what it knows for the fields left empty here
            outcome, ended_at, hangup_by, talk = Outcome.IN_PROGRESS, None, None, 0
        return LeggedCallRecord(
            uniqueid=call.uniqueid, server_id=self.server_id, linkedid=call.linkedid,
            caller_raw=call.caller_number, caller_number=call.caller_number,
            queue=call.queue, decision_id=call.decision_id,
            started_at=_epoch(call.started_at), answered_at=_epoch(call.answered_at),
            ended_at=ended_at, operator_id=operator_id,
            answered_interface=interface, hold_seconds=hold, talk_seconds=talk or 0,
            outcome=outcome.value, hangup_by=hangup_by, transferred=call.transferred,
            sticky_hit=sticky_hit, fallback_cause=fallback_cause,
            transferred_from=transferred_from, legs=legs)

    def _legs(self, call: _Call, handlers: list[_Handler], *, live: bool, hold: int,
              talk: int, hangup_by: str | None) -> tuple[CallLeg, ...]:
        """Each party's part: from when they took the call to when they left it (a
        transfer, the next party taking over, or the end of the call).

        Times are those the record adds up (``_handed_over``): a queue leg's talk is its
        AgentComplete ``TalkTime``, others run from taking the call to leaving it. A call
        one party handled has one leg with the record's own hold and talk.
        """
        legs: list[CallLeg] = []
        for i, h in enumerate(handlers):
            nxt = handlers[i + 1] if i + 1 < len(handlers) else None
            end: float | None
            if h.left_at is not None:
                end = h.left_at
            elif nxt is not None:
                end = nxt.at
            elif live:
                end = None
            elif call.unbridged_at is not None and call.unbridged_at >= h.at:
                end = call.unbridged_at
            else:
                end = call.hung_up_at
            how: LegEnd | None
            if h.left_at is not None or nxt is not None:
                how = h.left_how or LegEnd.TRANSFER
            else:
                how = None if live else LegEnd.HUNG_UP
            if i == 0:
                leg_hold = hold
            elif h.hold is not None:
                leg_hold = h.hold
            else:
                dial = call.dials.get(h.uid or "")
                leg_hold = _span(dial.begun_at, dial.ended_at) if dial is not None else 0
            if end is None:
                leg_talk = 0
            elif len(handlers) == 1 and not live:
                leg_talk = talk  # the record's own figure
            else:
                leg_talk = h.talk if h.talk is not None else _span(h.at, end)
            legs.append(CallLeg(
                seq=i, operator_id=self._op(h), interface=self._spelled(h) or None,
                via=h.via, answered_at=_epoch(h.at), ended_at=_epoch(end),
                hold_seconds=leg_hold, talk_seconds=leg_talk, end=how,
                hangup_by=hangup_by if how is LegEnd.HUNG_UP else None,
                transferred_to=self._op(nxt) if nxt is not None else None,
                transfer_target=h.left_to))
        return tuple(legs)

    def _handed_over(self, call: _Call, handlers: list[_Handler]) -> tuple[
            str | None, str, int, int, str, str | None, str | None]:
        """operator, interface, hold, talk, hangup_by, first operator, transferred_from of
        a call more than one party took.

        The handler is the last party that is an operator (a transfer out to a number no
        operator owns leaves the call with the operator who made it); ``transferred_from``
        is the first one, when that is someone else. Hold is the wait before the first
        answer; talk adds up each party's time with the caller.
        """
        first, last = handlers[0], handlers[-1]
        final = next((h for h in reversed(handlers) if self._op(h) is not None), last)
        operator_id, first_operator = self._op(final), self._op(first)
        interface = self._spelled(final)
        if first.hold is not None:
            hold = first.hold
        else:
            dial = call.dials.get(first.uid or "")
            hold = _span(dial.begun_at, dial.ended_at) if dial is not None else (
                call.hold_seconds or 0)
        talk = 0
        end: float | None
        for i, h in enumerate(handlers):
            if h.talk is not None:
                talk += h.talk
                continue
            if h.left_at is not None:
                end = h.left_at
            elif i + 1 < len(handlers):
                end = handlers[i + 1].at
            elif call.unbridged_at is not None and call.unbridged_at >= h.at:
                end = call.unbridged_at
            else:
                end = call.hung_up_at
            talk += _span(h.at, end)
        if last.via == "queue" and last.ended_by is not None:
            hangup_by = last.ended_by
        else:  # who left the last bridge first (earlier exits were moves between bridges)
            caller_left = call.left_seq.get(call.uniqueid)
            operator_left = call.left_seq.get(last.uid or "")
            hangup_by = "operator" if operator_left is not None and (
                caller_left is None or operator_left < caller_left) else "caller"
        transferred_from = first_operator if first_operator != operator_id else None
        return operator_id, interface, hold, talk, hangup_by, first_operator, transferred_from

    def _spelled(self, handler: _Handler) -> str:
        """The interface as the directory spells it (the map may have changed since)."""
        if handler.via == "queue":
            return handler.interface
        return self.interfaces.interface_of_channel(handler.interface)


def _span(start: float | None, end: float | None) -> int:
    if start is None or end is None or end < start:
        return 0
    return int(end - start + 0.5)


__all__ = ["DECISION_VAR", "TARGET_VAR", "CallAnswered", "CallTracker", "LegEnded", "channel_key"]
