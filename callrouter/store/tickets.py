"""The built-in ticket list: one caller's open issues, with tier and assignee."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callrouter.domain.model import Ticket, TicketStatus, Tier
from callrouter.ids import new_id
from callrouter.service.ports import ACTIVE_STATUSES, REOPEN_WINDOW
from callrouter.store.errors import Conflict, NotFound
from callrouter.store.models import TicketRow
from callrouter.store.records import UNSET, Unset
from callrouter.store.sql import utcnow


def current_ticket_filter(
    number: str, now: datetime, reopen_window: timedelta = REOPEN_WINDOW
) -> ColumnElement[bool]:
    """Tickets that count as the caller's current one: open, pending, or recently closed."""
    return and_(
        TicketRow.caller_number == number,
        or_(
            TicketRow.status.in_(ACTIVE_STATUSES),
            and_(
                TicketRow.status == TicketStatus.CLOSED.value,
                TicketRow.updated_at >= now - reopen_window,
            ),
        ),
    )


def to_ticket(row: TicketRow) -> Ticket:
    return Ticket(
        id=row.id,
        caller_number=row.caller_number,
        subject=row.subject,
        status=TicketStatus(row.status),
        tier=Tier(row.tier),
        assignee_id=row.assignee_id,
        external_ref=row.external_ref,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class TicketRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def create(
        self,
        caller_number: str,
        subject: str,
        *,
        status: TicketStatus = TicketStatus.OPEN,
        tier: Tier = Tier.FIRST_LINE,
        assignee_id: str | None = None,
        external_ref: str | None = None,
        ticket_id: str | None = None,
        now: datetime | None = None,
    ) -> Ticket:
        now = now or utcnow()
        ticket_id = ticket_id or new_id()
        if await self._session.get(TicketRow, ticket_id) is not None:
            raise Conflict(f"ticket {ticket_id!r} already exists")
        row = TicketRow(
            id=ticket_id,
            caller_number=caller_number,
            subject=subject,
            status=TicketStatus(status).value,
            tier=Tier(tier).value,
            assignee_id=assignee_id,
            external_ref=external_ref,
            created_at=now,
            updated_at=now,
        )
        self._session.add(row)
        await self._session.flush()
        return to_ticket(row)

    async def update(
        self,
        ticket_id: str,
        *,
        subject: str | Unset = UNSET,
        status: TicketStatus | Unset = UNSET,
        tier: Tier | Unset = UNSET,
        assignee_id: str | Unset | None = UNSET,
        external_ref: str | Unset | None = UNSET,
        now: datetime | None = None,
    ) -> Ticket:
        """Change the given fields and stamp ``updated_at`` (closing starts the reopen window)."""
        row = await self._session.get(TicketRow, ticket_id, populate_existing=True)
        if row is None:
            raise NotFound(f"no ticket {ticket_id!r}")
        if not isinstance(subject, Unset):
            row.subject = subject
        if not isinstance(status, Unset):
            row.status = TicketStatus(status).value
        if not isinstance(tier, Unset):
            row.tier = Tier(tier).value
        if not isinstance(assignee_id, Unset):
            row.assignee_id = assignee_id
        if not isinstance(external_ref, Unset):
            row.external_ref = external_ref
        row.updated_at = now or utcnow()
        await self._session.flush()
        return to_ticket(row)

    async def get(self, ticket_id: str) -> Ticket | None:
        row = await self._session.get(TicketRow, ticket_id, populate_existing=True)
        return to_ticket(row) if row is not None else None

    async def list_by_caller(self, caller_number: str, limit: int = 50) -> list[Ticket]:
        """The caller's tickets, newest first."""
        rows = await self._session.scalars(
            select(TicketRow)
            .where(TicketRow.caller_number == caller_number)
            .order_by(TicketRow.created_at.desc(), TicketRow.id.desc())
            .limit(limit)
        )
        return [to_ticket(r) for r in rows]

    async def current(self, caller_number: str, now: datetime) -> Ticket | None:
        """The newest open/pending ticket, or one closed within the reopen window."""
        row = await self._session.scalar(
            select(TicketRow)
            .where(current_ticket_filter(caller_number, now))
            .order_by(TicketRow.created_at.desc(), TicketRow.id.desc())
            .limit(1)
        )
        return to_ticket(row) if row is not None else None
