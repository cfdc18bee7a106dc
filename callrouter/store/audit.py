"""The admin audit log: rules reloads, flag and operator changes, token changes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callrouter.store.models import AuditRow
from callrouter.store.records import AuditEntry
from callrouter.store.sql import utcnow


def to_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        details=dict(row.details or {}),
    )


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def append(
        self,
        actor: str,
        action: str,
        *,
        subject: str | None = None,
        details: Mapping[str, object] | None = None,
        now: datetime | None = None,
    ) -> AuditEntry:
        """Record that ``actor`` did ``action`` (e.g. ``flags.abusive``) to ``subject``."""
        row = AuditRow(
            at=now or utcnow(),
            actor=actor,
            action=action,
            subject=subject,
            details=dict(details or {}),
        )
        self._session.add(row)
        await self._session.flush()
        return to_entry(row)

    async def list(
        self,
        *,
        action: str | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Entries newest first, optionally only one action or one subject."""
        stmt = select(AuditRow).order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
        if action is not None:
            stmt = stmt.where(AuditRow.action == action)
        if subject is not None:
            stmt = stmt.where(AuditRow.subject == subject)
        return [to_entry(r) for r in await self._session.scalars(stmt)]
