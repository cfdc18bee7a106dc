"""What the routing service needs from the outside world, as typing Protocols.

The store (``callrouter.store``) implements the persistent ones, the AMI listener keeps
``Presence``. Tests use in-memory fakes of the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from callrouter.domain.model import (
    CallerFlags,
    Decision,
    Incident,
    Operator,
    OperatorState,
    PastCall,
    RoutingContext,
    Ticket,
)


@dataclass(frozen=True, slots=True)
class CallerSnapshot:
    """Everything stored about one caller that a decision needs, loaded in one go."""

    recent_calls: tuple[PastCall, ...] = ()
    open_ticket: Ticket | None = None
    flags: CallerFlags = CallerFlags()
    escalations_today: int = 0


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One row of the audit log: a decision, the call it was for, and what it was based on."""

    id: str
    decided_at: datetime
    caller_raw: str
    caller_number: str | None
    queue: str
    decision: Decision
    latency_ms: float
    uniqueid: str | None = None
    linkedid: str | None = None
    channel: str | None = None
    server_id: str = "default"
    inputs: Mapping[str, object] = field(default_factory=dict)


class CallerSnapshotSource(Protocol):
    async def snapshot(self, number: str, now: datetime, lookback_seconds: int) -> CallerSnapshot:
        """Calls since ``now - lookback``, open (or recently closed) ticket, flags, and
        the count of escalations since the start of ``now``'s day."""
        ...


class OperatorDirectory(Protocol):
    async def operators(self) -> Mapping[str, Operator]: ...


class Presence(Protocol):
    def states(self) -> Mapping[str, OperatorState]: ...


class IncidentSource(Protocol):
    async def active_incidents(self, now: datetime) -> Sequence[Incident]: ...


class DecisionLog(Protocol):
    async def record(self, record: DecisionRecord) -> None:
        """Store the decision and open the call row (outcome ``in_progress``)."""
        ...


__all__ = [
    "CallerSnapshot",
    "CallerSnapshotSource",
    "DecisionLog",
    "DecisionRecord",
    "IncidentSource",
    "OperatorDirectory",
    "Presence",
    "RoutingContext",
]
