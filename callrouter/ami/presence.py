"""Each operator's live state on one Asterisk server, from queue-member and device events.

Rebuilt from a ``QueueStatus`` list on every (re)connect, then kept by events. Member
events say ``MemberName``/``Interface``; the ``QueueMember`` list event says
``Name``/``Location``. ``QueueMemberStatus`` comes once per queue the interface is in,
and each queue reads busy/free from the member's *state interface*: with a
``Custom:`` state interface (which survives Asterisk restarts) one queue may say
"not in use" while another says "in use". The busiest evidence wins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from callrouter.ami.interfaces import InterfaceMap, interface_key
from callrouter.ami.message import AmiMessage, OnceLog, to_int
from callrouter.domain.model import OperatorState

log = logging.getLogger(__name__)

# QueueMemberStatus / QueueMember "Status" (AST_DEVICE_*).
_BUSY = frozenset({2, 3, 8})  # in use, busy, on hold
_RINGING = frozenset({6, 7})  # ringing, ring-in-use
_GONE = frozenset({4, 5})  # invalid, unavailable
_DEVICE_STATE = {
    "NOT_INUSE": 1, "INUSE": 2, "BUSY": 3, "INVALID": 4, "UNAVAILABLE": 5,
    "RINGING": 6, "RINGINUSE": 7, "ONHOLD": 8, "UNKNOWN": 0,
}


@dataclass(slots=True)
class Membership:
    queue: str
    status: int = 0
    paused: bool = False
    paused_reason: str = ""
    in_call: bool = False
    state_interface: str | None = None


@dataclass(slots=True)
class MemberView:
    """What is known about one interface (mapped to an operator or not)."""

    interface: str
    name: str | None = None
    queues: dict[str, Membership] = field(default_factory=dict)
    device_status: int | None = None  # from DeviceStateChange of the interface
    last_seen: float = 0.0


@dataclass(frozen=True, slots=True)
class OperatorPresence:
    operator_id: str
    state: OperatorState
    since: float | None
    paused_reason: str | None
    call_uniqueid: str | None
    queues: tuple[str, ...]
    paused_queues: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnmappedInterface:
    interface: str
    member_name: str | None
    state: OperatorState
    queues: tuple[str, ...]
    last_seen: float


def _state_of(view: MemberView, device_states: Mapping[str, int],
              only_queues: tuple[str, ...] = ()) -> OperatorState:
    members = [m for m in view.queues.values() if not only_queues or m.queue in only_queues]
    if view.queues and not members:
        members = list(view.queues.values())
    statuses = [m.status for m in members]
    for m in members:
        if m.state_interface:
            s = device_states.get(interface_key(m.state_interface))
            if s is not None:
                statuses.append(s)
    if view.device_status is not None:
        statuses.append(view.device_status)
    if any(m.in_call for m in members) or any(s in _BUSY for s in statuses):
        return OperatorState.IN_CALL
    if any(s in _RINGING for s in statuses):
        return OperatorState.RINGING
    # A QueuePause without a queue pauses every queue; paused in any (entry) queue counts.
    if any(m.paused for m in members):
        return OperatorState.PAUSED
    if not view.queues and view.device_status is None:
        return OperatorState.LOGGED_OFF
    if 1 in statuses:
        return OperatorState.AVAILABLE
    if statuses and all(s in _GONE for s in statuses):
        return OperatorState.LOGGED_OFF
    return OperatorState.UNKNOWN


class PresenceBook:
    """Implements the ``Presence`` port for one Asterisk server."""

    def __init__(self, interfaces: InterfaceMap, *, server_id: str = "default",
                 on_change: Callable[[str, OperatorState], None] | None = None,
                 on_unmapped: Callable[[str], None] | None = None) -> None:
        self.interfaces = interfaces
        self.server_id = server_id
        self.on_change = on_change or (lambda op, st: None)
        # A queue member no operator claims: the listener may reload the directory.
        self.on_unmapped = on_unmapped or (lambda interface: None)
        self.members: dict[str, MemberView] = {}  # interface key -> view
        self.device_states: dict[str, int] = {}  # device key -> status code
        self.connected = False
        self._snapshot: dict[str, MemberView] | None = None
        self._states: dict[str, OperatorState] = {}
        # states() is read on every routed call: its mapping is rebuilt only after a change.
        self._states_view: Mapping[str, OperatorState] | None = None
        self._states_view_connected = False
        self._since: dict[str, float] = {}
        self._calls: dict[str, str] = {}  # operator id -> uniqueid of the call it is in
        self.anomaly = OnceLog(log)
        self.handlers: dict[str, Callable[[AmiMessage, float], None]] = {
            "QueueMemberStatus": self.on_member_event,
            "QueueMemberPause": self.on_member_event,
            "QueueMemberAdded": self.on_member_event,
            "QueueMemberPenalty": self.on_member_event,
            "QueueMemberRinginuse": self.on_member_event,
            "QueueMemberRemoved": self.on_member_removed,
            "DeviceStateChange": self.on_device_state,
            "QueueMember": self.on_list_member,
        }

    def feed(self, msg: AmiMessage, now: float) -> None:
        handler = self.handlers.get(msg.name or "")
        if handler is not None:
            handler(msg, now)

    # -- the Presence port ------------------------------------------------------------

    def states(self) -> Mapping[str, OperatorState]:
        """Every known operator's state; all ``unknown`` while the AMI link is down."""
        if self._states_view is None or self._states_view_connected != self.connected:
            if self.connected:
                view = {op_id: self._states.get(op_id, OperatorState.UNKNOWN)
                        for op_id in self.interfaces.operators}
            else:
                view = dict.fromkeys(self.interfaces.operators, OperatorState.UNKNOWN)
            self._states_view = MappingProxyType(view)
            self._states_view_connected = self.connected
        return self._states_view

    def state_in(self, operator_id: str, queue: str) -> OperatorState:
        """State as the given (entry) queue sees it."""
        views = [self.members[k] for k in self.interfaces.keys_of(operator_id) if k in self.members]
        if not self.connected or not views:
            return OperatorState.UNKNOWN
        return _combine([_state_of(v, self.device_states, (queue,)) for v in views])

    def details(self) -> dict[str, OperatorPresence]:
        out: dict[str, OperatorPresence] = {}
        states = self.states()
        for op_id in self.interfaces.operators:
            views = [self.members[k] for k in self.interfaces.keys_of(op_id) if k in self.members]
            paused = [m for v in views for m in v.queues.values() if m.paused]
            out[op_id] = OperatorPresence(
                operator_id=op_id, state=states[op_id], since=self._since.get(op_id),
                paused_reason=next((m.paused_reason for m in paused if m.paused_reason), None),
                call_uniqueid=self._calls.get(op_id),
                queues=tuple(sorted({q for v in views for q in v.queues})),
                paused_queues=tuple(sorted({m.queue for m in paused})))
        return out

    def unmapped(self) -> list[UnmappedInterface]:
        """Interfaces Asterisk reports that no operator claims, for an admin to map."""
        out = []
        for key, view in self.members.items():
            if self.interfaces.operator_for_interface(key) is None:
                out.append(UnmappedInterface(
                    interface=view.interface, member_name=view.name,
                    state=_state_of(view, self.device_states),
                    queues=tuple(sorted(view.queues)), last_seen=view.last_seen))
        return sorted(out, key=lambda u: u.interface)

    # -- link and calls ---------------------------------------------------------------

    def directory_changed(self, now: float) -> None:
        """The interface map was reloaded: operators may have come, gone or moved."""
        self._states_view = None
        for op_id in [op for op in self._states if op not in self.interfaces.operators]:
            del self._states[op_id]
            self._since.pop(op_id, None)
            self._calls.pop(op_id, None)
            self.on_change(op_id, OperatorState.LOGGED_OFF)  # gone from the directory
        if self.connected:
            self._recompute_all(now)
        else:
            for op_id in self.interfaces.operators:
                self._set(op_id, OperatorState.UNKNOWN, now)

    def link_down(self, now: float) -> None:
        self.connected = False
        self._snapshot = None
        for op_id in self.interfaces.operators:
            self._set(op_id, OperatorState.UNKNOWN, now)

    def begin_snapshot(self) -> None:
        self._snapshot = {}

    def end_snapshot(self, now: float) -> None:
        """A complete QueueStatus list replaces everything queue-related."""
        if self._snapshot is None:
            return
        fresh = self._snapshot
        self._snapshot = None
        for key, old in self.members.items():
            if key not in fresh and old.device_status is not None:
                fresh[key] = MemberView(old.interface, old.name, {}, old.device_status,
                                        old.last_seen)
        for key, view in fresh.items():
            prev = self.members.get(key)
            if prev is not None and view.device_status is None:
                view.device_status = prev.device_status
        self.members = fresh
        self.connected = True
        self._recompute_all(now)

    def call_started(self, operator_id: str | None, uniqueid: str, now: float) -> None:
        if operator_id:
            self._calls[operator_id] = uniqueid

    def call_ended(self, operator_id: str | None, uniqueid: str, now: float) -> None:
        if operator_id and self._calls.get(operator_id) == uniqueid:
            del self._calls[operator_id]

    # -- handlers ----------------------------------------------------------------------

    def _view(self, table: dict[str, MemberView], interface: str, name: str | None,
              now: float) -> MemberView:
        key = interface_key(interface)
        found = table.get(key)
        if found is None:
            view = table[key] = MemberView(interface=interface)
            if self.interfaces.operator_for_interface(interface) is None:
                log.info("AMI: queue member %s (%s) is not mapped to any operator",
                         interface, name or "-")
        else:
            view = found
        if name:
            view.name = name
        view.last_seen = now
        return view

    def _apply(self, table: dict[str, MemberView], msg: AmiMessage, interface: str | None,
               name: str | None, now: float) -> str | None:
        h = msg.headers
        queue = h.get("Queue")
        if not interface or not queue:
            self.anomaly(f"{msg.name} without Interface/Queue")
            return None
        view = self._view(table, interface, name, now)
        if self.interfaces.operator_for_interface(interface) is None:
            self.on_unmapped(interface)
        m = view.queues.get(queue)
        if m is None:
            m = view.queues[queue] = Membership(queue=queue)
        if "Status" in h:
            m.status = to_int(h.get("Status"))
        if "Paused" in h:
            m.paused = h.get("Paused") == "1"
            m.paused_reason = (h.get("PausedReason") or "") if m.paused else ""
        if "InCall" in h:
            m.in_call = h.get("InCall") == "1"
        m.state_interface = h.get("StateInterface") or m.state_interface
        return interface_key(interface)

    def on_member_event(self, msg: AmiMessage, now: float) -> None:
        h = msg.headers
        key = self._apply(self.members, msg, h.get("Interface"), h.get("MemberName"), now)
        if key is not None:
            self._recompute_key(key, now)

    def on_member_removed(self, msg: AmiMessage, now: float) -> None:
        h = msg.headers
        interface, queue = h.get("Interface"), h.get("Queue")
        if not interface or not queue:
            self.anomaly("QueueMemberRemoved without Interface/Queue")
            return
        key = interface_key(interface)
        view = self.members.get(key)
        if view is not None:
            view.queues.pop(queue, None)  # removed from all queues -> logged off
            view.last_seen = now
            self._recompute_key(key, now)

    def on_list_member(self, msg: AmiMessage, now: float) -> None:
        # QueueStatus list: Name/Location instead of MemberName/Interface.
        if self._snapshot is None:
            self.begin_snapshot()
        assert self._snapshot is not None
        h = msg.headers
        self._apply(self._snapshot, msg, h.get("Location"), h.get("Name"), now)

    def on_device_state(self, msg: AmiMessage, now: float) -> None:
        device, state = msg.headers.get("Device"), msg.headers.get("State")
        if not device or state is None:
            self.anomaly("DeviceStateChange without Device/State")
            return
        if device.startswith("Queue:"):
            return
        code = _DEVICE_STATE.get(state.upper(), 0)
        key = interface_key(device)
        self.device_states[key] = code
        view = self.members.get(key)
        if view is not None:
            view.device_status = code
            view.last_seen = now
        elif self.interfaces.operator_for_interface(device) is not None:
            self.members[key] = MemberView(interface=device, device_status=code, last_seen=now)
        # A Custom: state interface changes the operators whose memberships use it.
        for k, v in self.members.items():
            if k == key or any(m.state_interface and interface_key(m.state_interface) == key
                               for m in v.queues.values()):
                self._recompute_key(k, now)

    # -- derived state -----------------------------------------------------------------

    def _recompute_key(self, key: str, now: float) -> None:
        op_id = self.interfaces.operator_for_interface(key)
        if op_id is not None:
            self._recompute(op_id, now)

    def _recompute_all(self, now: float) -> None:
        for op_id in self.interfaces.operators:
            self._recompute(op_id, now)

    def _recompute(self, op_id: str, now: float) -> None:
        views = [self.members[k] for k in self.interfaces.keys_of(op_id) if k in self.members]
        op = self.interfaces.operators.get(op_id)
        queues = op.queues if op else ()
        state = (_combine([_state_of(v, self.device_states, queues) for v in views])
                 if views else OperatorState.LOGGED_OFF)
        self._set(op_id, state, now)

    def _set(self, op_id: str, state: OperatorState, now: float) -> None:
        if self._states.get(op_id) != state:
            self._states[op_id] = state
            self._states_view = None
            self._since[op_id] = now
            self.on_change(op_id, state)


_ORDER = (OperatorState.IN_CALL, OperatorState.RINGING, OperatorState.PAUSED,
          OperatorState.AVAILABLE, OperatorState.UNKNOWN, OperatorState.LOGGED_OFF)


def _combine(states: list[OperatorState]) -> OperatorState:
    """An operator with several interfaces is as busy as the busiest one."""
    if not states:
        return OperatorState.UNKNOWN
    return min(states, key=_ORDER.index)
