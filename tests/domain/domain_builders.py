"""Small builders for routing contexts, so each table row reads as the case it describes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from callrouter.domain.model import (
    Caller,
    CallerFlags,
    Incident,
    Operator,
    OperatorState,
    Outcome,
    PastCall,
    RoutingContext,
    Ticket,
    TicketStatus,
    Tier,
)
from callrouter.domain.rules import QueueRules, Rules

NOW = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
NUMBER = "+79123456789"

ANNA = Operator("anna", "Anna", ("PJSIP/1001", "PJSIP/1001-mobile"), queues=("support",))
BORIS = Operator("boris", "Boris", ("PJSIP/1002",), queues=("support", "billing"))
SVETA = Operator("sveta", "Sveta", ("PJSIP/2001",), tier=Tier.SPECIALIST, queues=("second-line",))
OLEG = Operator("oleg", "Oleg", ("PJSIP/2002",), tier=Tier.SPECIALIST, queues=("second-line",))
DIRECTORY = {op.id: op for op in (ANNA, BORIS, SVETA, OLEG)}

AVAILABLE = OperatorState.AVAILABLE
EVERYONE_AVAILABLE = {op_id: AVAILABLE for op_id in DIRECTORY}


def ago(*, hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    return NOW - timedelta(hours=hours, minutes=minutes, seconds=seconds)


def call(
    operator_id: str | None,
    *,
    ended: datetime,
    talk: int = 180,
    queue: str = "support",
    outcome: Outcome = Outcome.ANSWERED,
    resolved: bool | None = None,
    started: datetime | None = None,
    id: str | None = None,
    own_talk: int | None = None,
) -> PastCall:
    """An earlier call; it started ``talk`` seconds (plus a minute of queueing) before it ended.
    ``own_talk``: after a transfer, the last operator's own part of ``talk``."""
    start = started or ended - timedelta(seconds=talk + 60)
    return PastCall(
        id=id or f"call-{operator_id}-{ended:%H%M%S}",
        queue=queue,
        started_at=start,
        ended_at=ended,
        operator_id=operator_id if outcome is Outcome.ANSWERED else None,
        outcome=outcome,
        talk_seconds=talk if outcome is Outcome.ANSWERED else 0,
        resolved=resolved,
        operator_talk_seconds=own_talk,
    )


def ticket(
    assignee: str | None,
    *,
    status: TicketStatus = TicketStatus.OPEN,
    tier: Tier = Tier.SPECIALIST,
    updated: datetime | None = None,
) -> Ticket:
    return Ticket(
        id="T-42",
        caller_number=NUMBER,
        subject="internet drops every evening",
        status=status,
        tier=tier,
        assignee_id=assignee,
        created_at=ago(hours=72),
        updated_at=updated or ago(hours=1),
    )


def incident(
    *,
    prefixes: tuple[str, ...] = (),
    started: datetime | None = None,
    ended: datetime | None = None,
) -> Incident:
    return Incident(
        id="INC-7",
        announcement="incident/outage-north",
        prefixes=prefixes,
        started_at=started if started is not None else ago(hours=1),
        ended_at=ended,
        title="fibre cut in the north",
    )


def unresolved_calls(n: int, *, resolved_last: bool | None = False) -> tuple[PastCall, ...]:
    """``n`` earlier calls 3-10 h ago (outside the sticky window, inside the escalation window)."""
    calls = [
        call(
            "boris",
            ended=ago(hours=3 + 2 * i),
            resolved=resolved_last if i == 0 else False,
            id=f"esc-{i}",
        )
        for i in range(n)
    ]
    return tuple(calls)


def context(
    *,
    calls: Iterable[PastCall] = (),
    number: str | None = NUMBER,
    withheld: bool = False,
    queue: str = "support",
    open_ticket: Ticket | None = None,
    flags: CallerFlags | None = None,
    operators: Mapping[str, Operator] | None = None,
    states: Mapping[str, OperatorState] | None = None,
    incidents: Iterable[Incident] = (),
    escalations_today: int = 0,
) -> RoutingContext:
    return RoutingContext(
        caller=Caller(raw=number or "anonymous", number=number, withheld=withheld),
        queue=queue,
        recent_calls=tuple(calls),
        open_ticket=open_ticket,
        flags=flags or CallerFlags(),
        operators=DIRECTORY if operators is None else operators,
        operator_states=EVERYONE_AVAILABLE if states is None else states,
        incidents=tuple(incidents),
        escalations_today=escalations_today,
    )


BASE_RULES = QueueRules(specialist_queue="second-line")


def rules(queues: Mapping[str, QueueRules] | None = None, **overrides: Any) -> Rules:
    """Default rules (with a second line) for every queue, changed by ``overrides``."""
    return Rules(defaults=replace(BASE_RULES, **overrides), queues=queues or {})


def without(mapping: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in keys}


def states(**changes: OperatorState) -> dict[str, OperatorState]:
    return {**EVERYONE_AVAILABLE, **changes}
