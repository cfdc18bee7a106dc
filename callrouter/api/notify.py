"""Observers that turn routing, presence and AMI notifications into EventHub events.

The composition root wires them (nothing here subscribes by itself)::

    publisher = EventPublisher(hub)
    routing.observers.append(publisher.on_decision)           # topic "dashboard"
    PresenceBook(..., on_change=publisher.on_operator_state)  # topic "dashboard"
    AmiListener(..., on_answered=publisher.on_answered)       # topic "operator:<id>"

Every payload is a JSON-able dict; shapes are in docs/api.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from callrouter.api.services.convert import record_out
from callrouter.events import DASHBOARD, EventHub, operator_topic
from callrouter.service.ports import DecisionRecord


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EventPublisher:
    """Synchronous, non-blocking callbacks: safe inside the AMI and routing hot paths."""

    def __init__(self, hub: EventHub, clock: Callable[[], datetime] = _utcnow) -> None:
        self.hub = hub
        self.clock = clock

    def on_decision(self, record: DecisionRecord) -> None:
        data = record_out(record).model_dump(mode="json")
        self.hub.publish(DASHBOARD, {"event": "decision", "data": data})

    def on_operator_state(self, operator_id: str, state: object) -> None:
        data = {"operator_id": operator_id, "state": str(state), "at": self.clock().isoformat()}
        self.hub.publish(DASHBOARD, {"event": "operator_state", "data": data})

    def on_answered(self, answered: Any) -> None:
        """The AMI listener's "call answered" (``CallAnswered`` or a mapping of its fields).

        Published only to the answering operator's topic; calls nobody claims are dropped.
        """
        payload = answered_payload(answered)
        operator_id = payload.get("operator_id")
        if operator_id:
            self.hub.publish(operator_topic(str(operator_id)), payload)


ANSWERED_FIELDS = (
    "server_id", "uniqueid", "linkedid", "operator_id", "interface", "caller_number",
    "caller_name", "decision_id", "queue",
)


def answered_payload(answered: Any) -> dict[str, Any]:
    if isinstance(answered, dict):
        return {k: answered.get(k) for k in ANSWERED_FIELDS}
    return {k: getattr(answered, k, None) for k in ANSWERED_FIELDS}
