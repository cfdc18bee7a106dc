"""What the routing service needs from the outside world, as typing Protocols.

The store (``callrouter.store``) implements the persistent ones, the AMI listener keeps
``Presence``. Tests use in-memory fakes of the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
    TicketStatus,
)

# What a caller snapshot holds, whoever answers it (the database or the in-memory replica).
# A caller who rings hundreds of times a day must not make the hot path slow; the rules
# only ever look at a handful of recent calls.
RECENT_CALLS_LIMIT = 100
# A closed ticket still counts as the caller's open issue for this long: a caller who
# rings back right after closing is usually about the same thing.
REOPEN_WINDOW = timedelta(hours=24)
ACTIVE_STATUSES = (TicketStatus.OPEN.value, TicketStatus.PENDING.value)


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


@dataclass(frozen=True, slots=True)
class InboundCall:
    """A call as the FastAGI adapter read it from the AGI environment."""

    caller_raw: str
    queue: str
    callingpres: int | None = None
    caller_name: str | None = None
    uniqueid: str | None = None
    linkedid: str | None = None
    channel: str | None = None
    server_id: str = "default"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What the AMI listener learned about one inbound call; upserted by (server_id, uniqueid).

    Written exactly once per change; the store merges it into the call row that the
    decision opened (or creates the row when the call never passed the FastAGI route).
    """

    uniqueid: str
    server_id: str = "default"
    linkedid: str | None = None
    caller_raw: str | None = None
    caller_number: str | None = None
    queue: str | None = None
    decision_id: str | None = None
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    operator_id: str | None = None
    answered_interface: str | None = None
    hold_seconds: int = 0
    talk_seconds: int = 0
    outcome: str = "in_progress"  # an Outcome value
    hangup_by: str | None = None  # "caller" | "operator" | None
    transferred: bool = False
    sticky_hit: bool | None = None  # the decision's target answered
    fallback_cause: str | None = None  # e.g. "NOANSWER", "BUSY", "CHANUNAVAIL"
    # The operator who answered first and transferred the call; ``operator_id`` is then
    # whoever handled it last (the next repeat call's sticky operator).
    transferred_from: str | None = None


class CallRecordSink(Protocol):
    async def write_call_records(self, records: Sequence[CallRecord]) -> None:
        """Apply records in order, in one transaction; idempotent for a repeated record.
        Raises ``RecordRejected`` (and writes nothing) when a record is refused for its
        data; any other error means the store could not be reached or failed."""
        ...


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
    """Where decisions go. A sink may also have ``record_many(records)`` (one transaction
    for a batch) and ``encode(record)`` + ``record_encoded(items)`` (each record turned into
    the sink's own form when it is submitted, so a batch costs the event loop no
    encoding at once); ``DecisionWriter`` uses what it finds."""

    async def record(self, record: DecisionRecord) -> None:
        """Store the decision and open the call row (outcome ``in_progress``)."""
        ...


class RecordRejected(Exception):
    """The store refused the data itself (not a connection or availability problem):
    writing the same record again would fail again. A batch that raises this is split
    until the record at fault is found; that one is dropped and logged."""


__all__ = [
    "ACTIVE_STATUSES",
    "RECENT_CALLS_LIMIT",
    "REOPEN_WINDOW",
    "CallRecord",
    "CallRecordSink",
    "CallerSnapshot",
    "CallerSnapshotSource",
    "DecisionLog",
    "DecisionRecord",
    "InboundCall",
    "IncidentSource",
    "OperatorDirectory",
    "Presence",
    "RecordRejected",
    "RoutingContext",
]
