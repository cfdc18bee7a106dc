"""Mass-outage incidents: who hears the announcement, from when until when."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callrouter.domain.model import Incident
from callrouter.ids import new_id
from callrouter.store.errors import NotFound
from callrouter.store.models import IncidentRow
from callrouter.store.sql import utcnow


def to_incident(row: IncidentRow) -> Incident:
    return Incident(
        id=row.id,
        announcement=row.announcement,
        prefixes=tuple(row.prefixes or ()),
        started_at=row.started_at,
        ended_at=row.ended_at,
        title=row.title,
    )


class IncidentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def start(
        self,
        announcement: str,
        *,
        title: str = "",
        prefixes: Sequence[str] = (),
        started_by: str | None = None,
        incident_id: str | None = None,
        now: datetime | None = None,
    ) -> Incident:
        row = IncidentRow(
            id=incident_id or new_id(),
            title=title,
            announcement=announcement,
            prefixes=list(prefixes),
            started_at=now or utcnow(),
            ended_at=None,
            started_by=started_by,
        )
        self._session.add(row)
        await self._session.flush()
        return to_incident(row)

    async def end(self, incident_id: str, now: datetime | None = None) -> Incident:
        """End it now; ending an ended incident keeps its first end time."""
        row = await self._session.get(IncidentRow, incident_id, populate_existing=True)
        if row is None:
            raise NotFound(f"no incident {incident_id!r}")
        if row.ended_at is None:
            row.ended_at = now or utcnow()
            await self._session.flush()
        return to_incident(row)

    async def active(self, now: datetime) -> list[Incident]:
        """Incidents started at or before ``now`` and not ended by then, oldest first."""
        rows = await self._session.scalars(
            select(IncidentRow)
            .where(
                IncidentRow.started_at <= now,
                or_(IncidentRow.ended_at.is_(None), IncidentRow.ended_at > now),
            )
            .order_by(IncidentRow.started_at, IncidentRow.id)
        )
        return [to_incident(r) for r in rows]

    async def list(self, limit: int = 50) -> list[Incident]:
        """Recent incidents, newest first, ended or not."""
        rows = await self._session.scalars(
            select(IncidentRow).order_by(IncidentRow.started_at.desc()).limit(limit)
        )
        return [to_incident(r) for r in rows]
