"""Domain and store values to response models (and masking for roles without PII)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from callrouter.api import schemas as s
from callrouter.domain.model import Caller, CallerFlags, Decision, Incident, Operator, Ticket
from callrouter.legs import CallLeg
from callrouter.numbers import mask
from callrouter.service.ports import DecisionRecord
from callrouter.store.records import StoredCall, TokenInfo


def decision_out(decision: Decision) -> s.DecisionOut:
    return s.DecisionOut(
        action=decision.action,
        queue=decision.queue,
        priority=decision.priority,
        target_operator_id=decision.target_operator_id,
        target_interface=decision.target_interface,
        wait_seconds=decision.wait_seconds,
        announcement=decision.announcement,
        escalated=decision.escalated,
        reasons=[s.ReasonOut(code=str(r.code), text=r.text) for r in decision.reasons],
    )


def caller_out(caller: Caller) -> s.CallerOut:
    return s.CallerOut(
        raw=caller.raw, number=caller.number, identified=caller.identified,
        withheld=caller.withheld, shared=caller.shared,
    )


def record_out(record: DecisionRecord, *, pii: bool = True) -> s.DecisionRecordOut:
    return s.DecisionRecordOut(
        id=record.id,
        decided_at=record.decided_at,
        caller_raw=record.caller_raw if pii else mask(record.caller_raw),
        caller_number=record.caller_number if pii else _masked(record.caller_number),
        queue=record.queue,
        decision=decision_out(record.decision),
        latency_ms=record.latency_ms,
        uniqueid=record.uniqueid,
        server_id=record.server_id,
        inputs=_jsonable(record.inputs),
    )


def flags_out(flags: CallerFlags) -> s.FlagsOut:
    return s.FlagsOut(
        name=flags.name,
        vip_class=flags.vip_class,
        abusive=flags.abusive,
        abusive_flagged_by=flags.abusive_flagged_by,
        abusive_flagged_at=flags.abusive_flagged_at,
        opted_out_operators=sorted(flags.opted_out_operators),
        notes=flags.notes,
    )


def _name(operators: Mapping[str, Operator], operator_id: str | None) -> str | None:
    who = operators.get(operator_id) if operator_id else None
    return who.name if who else None


def leg_out(leg: CallLeg, operators: Mapping[str, Operator]) -> s.CallLegOut:
    return s.CallLegOut(
        seq=leg.seq, operator_id=leg.operator_id, operator_name=_name(operators, leg.operator_id),
        interface=leg.interface, via=leg.via, answered_at=leg.answered_at,
        ended_at=leg.ended_at, hold_seconds=leg.hold_seconds, talk_seconds=leg.talk_seconds,
        ended_how=leg.end, hangup_by=leg.hangup_by, transferred_to=leg.transferred_to,
        transferred_to_name=_name(operators, leg.transferred_to),
        transfer_target=leg.transfer_target,
    )


def call_out(call: StoredCall, operators: Mapping[str, Operator]) -> s.CallOut:
    who = operators.get(call.operator_id) if call.operator_id else None
    handlers = call.handlers
    # Handlers' notes in the order they had the call, then any other (a handler the legs
    # no longer name) by time.
    rank = {op: i for i, op in enumerate(handlers)}
    notes = sorted(call.notes, key=lambda n: (rank.get(n.operator_id, len(rank)), n.updated_at))
    return s.CallOut(
        id=call.id,
        started_at=call.started_at,
        answered_at=call.answered_at,
        ended_at=call.ended_at,
        queue=call.queue,
        operator_id=call.operator_id,
        operator_name=who.name if who else None,
        outcome=call.outcome,
        talk_seconds=call.talk_seconds,
        hold_seconds=call.hold_seconds,
        resolved=call.resolved,
        note=call.note,
        escalated=call.escalated,
        transferred=call.transferred,
        transferred_from=call.transferred_from,
        handled_by=list(handlers),
        legs=[leg_out(leg, operators) for leg in call.legs],
        notes=[
            s.CallNoteOut(operator_id=n.operator_id, operator_name=_name(operators, n.operator_id),
                          note=n.note, resolved=n.resolved, updated_at=n.updated_at)
            for n in notes
        ],
    )


def ticket_out(ticket: Ticket) -> s.TicketOut:
    return s.TicketOut(
        id=ticket.id,
        caller_number=ticket.caller_number,
        subject=ticket.subject,
        status=ticket.status,
        tier=ticket.tier,
        assignee_id=ticket.assignee_id,
        external_ref=ticket.external_ref,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
    )


def incident_out(incident: Incident, now: datetime) -> s.IncidentOut:
    active = (incident.started_at is None or incident.started_at <= now) and (
        incident.ended_at is None or incident.ended_at > now
    )
    return s.IncidentOut(
        id=incident.id,
        title=incident.title,
        announcement=incident.announcement,
        prefixes=list(incident.prefixes),
        started_at=incident.started_at,
        ended_at=incident.ended_at,
        active=active,
    )


def token_out(info: TokenInfo) -> s.TokenOut:
    return s.TokenOut(
        id=info.id, name=info.name, role=info.role, operator_id=info.operator_id,
        created_at=info.created_at, revoked_at=info.revoked_at,
    )


def _masked(number: str | None) -> str | None:
    return mask(number) if number else number


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
