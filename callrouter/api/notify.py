"""Observers that turn routing, presence and AMI notifications into EventHub events.

The composition root wires them (nothing here subscribes by itself)::

    publisher = EventPublisher(hub)
    routing.observers.append(publisher.on_decision)           # topic "dashboard"
    PresenceBook(..., on_change=publisher.on_operator_state)  # topic "dashboard"
    AmiListener(..., on_answered=publisher.on_answered,       # topic "operator:<id>"
                on_record=... publisher.on_call_record)       # topic "operator:<id>"

Every payload is a JSON-able envelope ``{"event": ..., "data": {...}}``; shapes are in
docs/api.md.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from callrouter.api.services.convert import decision_out, record_out
from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.events import DASHBOARD, EventHub, operator_topic
from callrouter.legs import legs_of
from callrouter.service.ports import CallRecord, DecisionRecord

# Decisions remembered for the screen-pop: a call is answered seconds to minutes after it
# was decided; older ones (or another daemon's) are read back from the decision log.
REMEMBERED_DECISIONS = 5000

# A remembered decision, as strings and numbers only.
Compact = tuple[Any, ...]


def compact(d: Decision) -> Compact:
    """A decision as one flat tuple of strings and numbers (the reasons' codes and texts
    last). The garbage collector stops tracking such a tuple at its first collection; as
    ``Decision`` objects, the 5,000 remembered decisions were ~15,000 objects (a Decision,
    its reasons tuple, a Reason each) walked by every young collection they survived, and
    the bulk of what reached the old generation."""
    head = (
        Action(d.action).value, d.queue, d.priority, d.target_operator_id,
        d.target_interface, d.wait_seconds, d.announcement, d.escalated,
    )
    reasons = tuple(part for r in d.reasons for part in (ReasonCode(r.code).value, r.text))
    return head + reasons


def expand(c: Compact) -> Decision:
    """The decision ``compact`` kept (equal to the original)."""
    parts = c[8:]
    return Decision(
        action=Action(c[0]), queue=c[1], priority=c[2], target_operator_id=c[3],
        target_interface=c[4], wait_seconds=c[5], announcement=c[6], escalated=c[7],
        reasons=tuple(Reason(ReasonCode(parts[i]), parts[i + 1])
                      for i in range(0, len(parts), 2)),
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EventPublisher:
    """Synchronous, non-blocking callbacks: safe inside the AMI and routing hot paths."""

    def __init__(
        self,
        hub: EventHub,
        clock: Callable[[], datetime] = _utcnow,
        remember: int = REMEMBERED_DECISIONS,
    ) -> None:
        self.hub = hub
        self.clock = clock
        self._remember = remember
        self._decisions: OrderedDict[str, Compact] = OrderedDict()

    def on_decision(self, record: DecisionRecord) -> None:
        """Remember the decision for its screen-pop; a ``decision`` event for the dashboard.

        Called for every routed call: the JSON is built only while a dashboard listens
        (building it costs more than the routing decision), remembering is a dict insert.
        """
        self._decisions[record.id] = compact(record.decision)
        if len(self._decisions) > self._remember:
            self._decisions.popitem(last=False)
        if self.hub.subscribers(DASHBOARD):
            data = record_out(record).model_dump(mode="json")
            self.hub.publish(DASHBOARD, {"event": "decision", "data": data})

    def on_operator_state(self, operator_id: str, state: object) -> None:
        data = {"operator_id": operator_id, "state": str(state), "at": self.clock().isoformat()}
        self.hub.publish(DASHBOARD, {"event": "operator_state", "data": data})

    def on_answered(self, answered: Any) -> None:
        """The AMI listener's "call answered" (``CallAnswered`` or a mapping of its fields).

        Published only to the answering operator's topic; calls nobody claims are dropped.
        The payload carries the decision (with its reasons) when this process made it, so
        the screen-pop need not wait for the decision writer.

        When it also says an operator's part ended (``leg_ended``: they transferred the
        call), that operator gets ``call_ended`` for their part first; the call itself goes
        on (``ended_at`` is when they left it, ``transferred`` is true).
        """
        leg = _get(answered, "leg_ended")
        if leg is not None:
            self._leg_ended(answered, leg)
        payload = answered_payload(answered)
        operator_id = payload.get("operator_id")
        if not operator_id:
            return
        kept = self._decisions.get(payload.get("decision_id") or "")
        payload["decision"] = (decision_out(expand(kept)).model_dump(mode="json")
                               if kept is not None else None)
        self.hub.publish(operator_topic(str(operator_id)), {"event": "answered", "data": payload})

    def _leg_ended(self, answered: Any, leg: Any) -> None:
        operator_id = _get(leg, "operator_id")
        if not operator_id:
            return
        ended_at = _get(leg, "ended_at")
        data = {
            "server_id": _get(answered, "server_id"),
            "uniqueid": _get(answered, "uniqueid"),
            "operator_id": operator_id,
            "queue": _get(answered, "queue"),
            "outcome": "answered",
            "talk_seconds": _get(leg, "talk_seconds") or 0,
            "hold_seconds": _get(leg, "hold_seconds") or 0,
            "hangup_by": None,
            "transferred": True,
            "ended_at": ended_at if isinstance(ended_at, str) else _iso(ended_at or self.clock()),
        }
        self.hub.publish(operator_topic(str(operator_id)), {"event": "call_ended", "data": data})

    def on_call_record(self, record: CallRecord) -> None:
        """The AMI listener's record of a finished call: a ``call_ended`` event for the
        operator who answered it. Calls nobody answered, or not ended, publish nothing.

        Nor does a call whose operator had already left it by a transfer nobody took (the
        caller gave up waiting): that operator got their ``call_ended`` at the transfer
        (``leg_ended``), and a second one would end their wrap-up card twice.
        """
        if not record.operator_id or record.ended_at is None:
            return
        legs = legs_of(record)
        if legs and legs[-1].transferred and legs[-1].operator_id == record.operator_id:
            return
        data = {
            "server_id": record.server_id,
            "uniqueid": record.uniqueid,
            "operator_id": record.operator_id,
            "queue": record.queue,
            "outcome": record.outcome,
            "talk_seconds": record.talk_seconds,
            "hold_seconds": record.hold_seconds,
            "hangup_by": record.hangup_by,
            "transferred": record.transferred,
            "ended_at": _iso(record.ended_at),
        }
        self.hub.publish(operator_topic(record.operator_id), {"event": "call_ended", "data": data})


def _iso(moment: datetime) -> str:
    """UTC with a Z, as the API writes every time."""
    if moment.tzinfo is None:  # the store's and tracker's naive times are UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


ANSWERED_FIELDS = (
    "server_id", "uniqueid", "linkedid", "operator_id", "interface", "caller_number",
    "caller_name", "decision_id", "queue",
)


def _get(source: Any, name: str) -> Any:
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, name, None)


def answered_payload(answered: Any) -> dict[str, Any]:
    return {k: _get(answered, k) for k in ANSWERED_FIELDS}
