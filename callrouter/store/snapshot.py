"""The caller snapshot for one routing decision, in two queries (the FastAGI hot path)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, literal, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from callrouter.domain.model import CallerFlags, Ticket, TicketStatus, Tier
from callrouter.service.ports import CallerSnapshot
from callrouter.store.calls import CallRepository
from callrouter.store.models import CallerFlagsRow, CallerOptOutRow, DecisionRow, TicketRow
from callrouter.store.tickets import current_ticket_filter

# Operator ids are short identifiers; the unit separator cannot appear in one.
_SEP = "\x1f"


def utc_day(now: datetime) -> tuple[datetime, datetime]:
    """Start and end of ``now``'s UTC calendar day."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


async def load_snapshot(
    session: AsyncSession, number: str, now: datetime, lookback_seconds: int
) -> CallerSnapshot:
    """Recent calls (query 1); then flags, opt-outs, current ticket and today's
    escalation count together (query 2), each part an index lookup by caller number."""
    recent = await CallRepository(session).past_calls(number, now, lookback_seconds)

    day_start, day_end = utc_day(now)
    escalations = (
        select(func.count())
        .select_from(DecisionRow)
        .where(
            DecisionRow.caller_number == number,
            DecisionRow.escalated.is_(True),
            DecisionRow.decided_at >= day_start,
            DecisionRow.decided_at < day_end,
        )
        .scalar_subquery()
    )
    opted_out = (
        select(func.aggregate_strings(CallerOptOutRow.operator_id, _SEP))
        .where(CallerOptOutRow.caller_number == number)
        .scalar_subquery()
    )
    ticket = (
        select(TicketRow)
        .where(current_ticket_filter(number, now))
        .order_by(TicketRow.created_at.desc(), TicketRow.id.desc())
        .limit(1)
        .subquery("ticket")
    )
    one_row = select(literal(1).label("one")).subquery("one_row")
    stmt = select(
        escalations.label("escalations"),
        opted_out.label("opted_out"),
        CallerFlagsRow.vip_class,
        CallerFlagsRow.abusive,
        CallerFlagsRow.abusive_flagged_by,
        CallerFlagsRow.abusive_flagged_at,
        CallerFlagsRow.notes,
        CallerFlagsRow.name,
        CallerFlagsRow.caller_number.label("flags_number"),
        ticket,
    ).select_from(
        one_row.outerjoin(CallerFlagsRow, CallerFlagsRow.caller_number == number).outerjoin(
            ticket, true()
        )
    )
    r = (await session.execute(stmt)).one()

    flags = CallerFlags(
        opted_out_operators=frozenset(r.opted_out.split(_SEP)) if r.opted_out else frozenset()
    )
    if r.flags_number is not None:
        flags = CallerFlags(
            vip_class=r.vip_class,
            abusive=bool(r.abusive),
            abusive_flagged_by=r.abusive_flagged_by,
            abusive_flagged_at=r.abusive_flagged_at,
            opted_out_operators=flags.opted_out_operators,
            notes=r.notes or "",
            name=r.name,
        )
    open_ticket = None
    if r.id is not None:
        open_ticket = Ticket(
            id=r.id,
            caller_number=r.caller_number,
            subject=r.subject,
            status=TicketStatus(r.status),
            tier=Tier(r.tier),
            assignee_id=r.assignee_id,
            external_ref=r.external_ref,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
    return CallerSnapshot(
        recent_calls=recent,
        open_ticket=open_ticket,
        flags=flags,
        escalations_today=int(r.escalations or 0),
    )
