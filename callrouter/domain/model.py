"""Value types of the routing core: callers, operators, calls, tickets, flags, decisions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from callrouter.domain.reasons import Reason, ReasonCode


class OperatorState(StrEnum):
    """Live state of an operator as the AMI listener last saw it."""

    AVAILABLE = "available"
    IN_CALL = "in_call"
    RINGING = "ringing"
    PAUSED = "paused"
    LOGGED_OFF = "logged_off"
    UNKNOWN = "unknown"


class Tier(StrEnum):
    FIRST_LINE = "first_line"
    SPECIALIST = "specialist"


class Action(StrEnum):
    """What the dialplan does with the call: ring an operator, a specialist, or queue it."""

    OPERATOR = "operator"
    SPECIALIST = "specialist"
    QUEUE = "queue"


class TicketStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"
    CLOSED = "closed"


class Outcome(StrEnum):
    """How an inbound call ended (``in_progress`` until the AMI listener sees its end)."""

    IN_PROGRESS = "in_progress"
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    NO_ANSWER = "no_answer"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Caller:
    """The calling party as the adapter normalised it.

    ``number`` is E.164 (``+79123456789``) or ``None`` when the number is withheld,
    anonymous, unknown or unparseable. A caller with ``number is None`` is never
    matched to any history.
    """

    raw: str
    number: str | None
    withheld: bool = False
    shared: bool = False  # a switchboard or family line: never matched to history

    @property
    def identified(self) -> bool:
        return self.number is not None and not self.withheld and not self.shared


@dataclass(frozen=True, slots=True)
class Operator:
    id: str
    name: str
    interfaces: tuple[str, ...]
    tier: Tier = Tier.FIRST_LINE
    queues: tuple[str, ...] = ()
    active: bool = True

    @property
    def interface(self) -> str | None:
        """The interface the dialplan rings first (the first one listed)."""
        return self.interfaces[0] if self.interfaces else None


@dataclass(frozen=True, slots=True)
class PastCall:
    """One earlier inbound call of the same caller, as history for the next decision.

    ``operator_id`` is who handled the call last; ``talk_seconds`` is everyone's time with
    the caller added up, ``operator_talk_seconds`` that operator's own part of it after a
    transfer (None for a call that was not transferred, or recorded before it was kept).
    """

    id: str
    queue: str
    started_at: datetime
    ended_at: datetime | None = None
    operator_id: str | None = None
    outcome: Outcome = Outcome.ANSWERED
    talk_seconds: int = 0
    resolved: bool | None = None
    escalated: bool = False
    operator_talk_seconds: int | None = None

    @property
    def last_moment(self) -> datetime:
        """End of the call, or its start when the end is not known yet."""
        return self.ended_at or self.started_at

    @property
    def handler_talk_seconds(self) -> int:
        """How long ``operator_id`` talked with the caller: their own part after a
        transfer, else (one operator, or not known) the whole call's talk time."""
        own = self.operator_talk_seconds
        return self.talk_seconds if own is None else own


@dataclass(frozen=True, slots=True)
class Ticket:
    id: str
    caller_number: str
    subject: str
    status: TicketStatus
    tier: Tier = Tier.FIRST_LINE
    assignee_id: str | None = None
    external_ref: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CallerFlags:
    """What the team has said about a caller."""

    vip_class: str | None = None
    abusive: bool = False
    abusive_flagged_by: str | None = None
    abusive_flagged_at: datetime | None = None
    opted_out_operators: frozenset[str] = frozenset()
    notes: str = ""
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    """A mass outage: callers in scope hear the announcement and are not escalated by count."""

    id: str
    announcement: str
    prefixes: tuple[str, ...] = ()
    started_at: datetime | None = None
    ended_at: datetime | None = None
    title: str = ""

    def covers(self, caller: Caller, now: datetime) -> bool:
        if self.started_at is not None and now < self.started_at:
            return False
        if self.ended_at is not None and now >= self.ended_at:
            return False
        if not self.prefixes:
            return True
        if caller.number is None:
            return False
        return any(caller.number.startswith(p) for p in self.prefixes)


@dataclass(frozen=True, slots=True)
class RoutingContext:
    """Everything ``decide`` may look at for one call. Gathered by the service layer."""

    caller: Caller
    queue: str
    recent_calls: tuple[PastCall, ...] = ()
    open_ticket: Ticket | None = None
    flags: CallerFlags = CallerFlags()
    operators: Mapping[str, Operator] = field(default_factory=dict)
    operator_states: Mapping[str, OperatorState] = field(default_factory=dict)
    incidents: tuple[Incident, ...] = ()
    escalations_today: int = 0

    def state_of(self, operator_id: str) -> OperatorState:
        return self.operator_states.get(operator_id, OperatorState.UNKNOWN)


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a call goes and why.

    ``wait_seconds`` is how long the dialplan tries ``target_interface`` before it
    joins ``queue``; it is positive whenever there is a target and 0 otherwise.
    """

    action: Action
    queue: str
    priority: int
    reasons: tuple[Reason, ...]
    target_operator_id: str | None = None
    target_interface: str | None = None
    wait_seconds: int = 0
    announcement: str | None = None
    escalated: bool = False

    @property
    def reason_code(self) -> ReasonCode:
        return self.reasons[0].code

    @property
    def codes(self) -> tuple[ReasonCode, ...]:
        return tuple(r.code for r in self.reasons)
