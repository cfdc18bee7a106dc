"""What the team says about a caller: VIP class, abusive flag, notes, operator opt-outs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from callrouter.domain.model import CallerFlags
from callrouter.store.models import CallerFlagsRow, CallerOptOutRow
from callrouter.store.sql import upsert_insert, utcnow


def to_flags(row: CallerFlagsRow | None, opted_out: frozenset[str]) -> CallerFlags:
    if row is None:
        return CallerFlags(opted_out_operators=opted_out)
    return CallerFlags(
        vip_class=row.vip_class,
        abusive=row.abusive,
        abusive_flagged_by=row.abusive_flagged_by,
        abusive_flagged_at=row.abusive_flagged_at,
        opted_out_operators=opted_out,
        notes=row.notes,
        name=row.name,
    )


class CallerFlagsRepository:
    """Every setter returns the caller's flags as they are after the change."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, number: str) -> CallerFlags:
        row = await self._session.get(CallerFlagsRow, number, populate_existing=True)
        return to_flags(row, await self.opted_out(number))

    async def opted_out(self, number: str) -> frozenset[str]:
        ids = await self._session.scalars(
            select(CallerOptOutRow.operator_id).where(CallerOptOutRow.caller_number == number)
        )
        return frozenset(ids)

    async def set_vip_class(
        self, number: str, vip_class: str | None, now: datetime | None = None
    ) -> CallerFlags:
        row = await self._row(number, now)
        row.vip_class = vip_class
        return await self._saved(row)

    async def set_abusive(
        self, number: str, abusive: bool, by: str, now: datetime | None = None
    ) -> CallerFlags:
        """Flag or unflag; remembers who did it and when (also when clearing)."""
        now = now or utcnow()
        row = await self._row(number, now)
        row.abusive = abusive
        row.abusive_flagged_by = by
        row.abusive_flagged_at = now
        return await self._saved(row)

    async def set_notes(self, number: str, notes: str, now: datetime | None = None) -> CallerFlags:
        row = await self._row(number, now)
        row.notes = notes
        return await self._saved(row)

    async def set_name(
        self, number: str, name: str | None, now: datetime | None = None
    ) -> CallerFlags:
        row = await self._row(number, now)
        row.name = name
        return await self._saved(row)

    async def add_opt_out(self, number: str, operator_id: str, now: datetime | None = None) -> bool:
        """Operator asks not to be routed this caller again. False if it was already so."""
        stmt = (
            upsert_insert(self._session, CallerOptOutRow)
            .values(caller_number=number, operator_id=operator_id, created_at=now or utcnow())
            .on_conflict_do_nothing(index_elements=["caller_number", "operator_id"])
        )
        result = await self._session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def remove_opt_out(self, number: str, operator_id: str) -> bool:
        """False if there was no such opt-out."""
        result = await self._session.execute(
            delete(CallerOptOutRow).where(
                CallerOptOutRow.caller_number == number,
                CallerOptOutRow.operator_id == operator_id,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _row(self, number: str, now: datetime | None) -> CallerFlagsRow:
        # Insert-if-missing first so two admins flagging a new caller at once do not collide.
        now = now or utcnow()
        await self._session.execute(
            upsert_insert(self._session, CallerFlagsRow)
            .values(caller_number=number, abusive=False, notes="", updated_at=now)
            .on_conflict_do_nothing(index_elements=["caller_number"])
        )
        row = await self._session.get(CallerFlagsRow, number, populate_existing=True)
        assert row is not None
        row.updated_at = now
        return row

    async def _saved(self, row: CallerFlagsRow) -> CallerFlags:
        await self._session.flush()
        return to_flags(row, await self.opted_out(row.caller_number))
