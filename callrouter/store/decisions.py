"""The decision log: every routing decision with its reasons and inputs, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.service.ports import DecisionRecord
from callrouter.store.calls import CALL_KEY, call_from_decision, merge_into_ami_row
from callrouter.store.models import CallRow, DecisionRow
from callrouter.store.sql import upsert_insert


class DecisionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def insert(self, record: DecisionRecord) -> None:
        await self._session.execute(insert(DecisionRow).values(**decision_values(record)))

    async def insert_many(self, records: Sequence[DecisionRecord]) -> None:
        """Several decisions in one Core executemany: one compiled statement for the batch
        (an ORM ``values(...)`` per record is compiled anew each time)."""
        if records:
            conn = await self._session.connection()
            table = DecisionRow.__table__
            await conn.execute(insert(table), [decision_values(r) for r in records])  # type: ignore[arg-type]

    async def open_calls(self, records: Sequence[DecisionRecord]) -> None:
        """The call rows the decisions open, in one executemany, each merged into a row
        the AMI listener wrote first (``excluded`` holds exactly the decision's values)."""
        if not records:
            return
        stmt = upsert_insert(self._session, CallRow)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(CALL_KEY), set_=merge_into_ami_row(stmt)
        )
        conn = await self._session.connection()
        await conn.execute(stmt, [call_from_decision(decision_values(r)) for r in records])

    async def get(self, decision_id: str) -> DecisionRecord | None:
        row = await self._session.get(DecisionRow, decision_id)
        return _record(row) if row is not None else None

    async def list(
        self,
        *,
        caller_number: str | None = None,
        operator_id: str | None = None,
        reason_code: ReasonCode | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[DecisionRecord]:
        """Decisions matching every given filter, newest first.

        ``operator_id`` matches the decision's target operator; ``reason_code`` matches
        any of the decision's reasons, not just the first; the window is
        ``since <= decided_at < until``.
        """
        stmt = select(DecisionRow).order_by(DecisionRow.decided_at.desc(), DecisionRow.id.desc())
        if caller_number is not None:
            stmt = stmt.where(DecisionRow.caller_number == caller_number)
        if operator_id is not None:
            stmt = stmt.where(DecisionRow.target_operator_id == operator_id)
        if reason_code is not None:
            # Portable "list contains": reason codes are [a-z_] words, stored as a JSON
            # array of strings, so the quoted code matches exactly one element.
            code = ReasonCode(reason_code).value
            stmt = stmt.where(cast(DecisionRow.reason_codes, String).like(f'%"{code}"%'))
        if since is not None:
            stmt = stmt.where(DecisionRow.decided_at >= since)
        if until is not None:
            stmt = stmt.where(DecisionRow.decided_at < until)
        rows = await self._session.scalars(stmt.limit(limit))
        return [_record(r) for r in rows]


def decision_values(record: DecisionRecord) -> dict[str, Any]:
    """The decision row, one value per ``decisions`` column."""
    decision = record.decision
    return dict(
        id=record.id,
        decided_at=record.decided_at,
        caller_raw=record.caller_raw,
        caller_number=record.caller_number,
        queue=record.queue,
        action=Action(decision.action).value,
        target_operator_id=decision.target_operator_id,
        target_interface=decision.target_interface,
        target_queue=decision.queue,
        priority=decision.priority,
        wait_seconds=decision.wait_seconds,
        announcement=decision.announcement,
        escalated=decision.escalated,
        reason_code=str(decision.reasons[0].code) if decision.reasons else "",
        reason_codes=[str(r.code) for r in decision.reasons],
        reasons=[{"code": str(r.code), "text": r.text} for r in decision.reasons],
        inputs=dict(record.inputs),
        latency_ms=record.latency_ms,
        server_id=record.server_id,
        uniqueid=record.uniqueid,
        linkedid=record.linkedid,
        channel=record.channel,
    )


def _reasons(raw: list[Any]) -> tuple[Reason, ...]:
    return tuple(Reason(ReasonCode(item["code"]), str(item["text"])) for item in raw)


def _record(row: DecisionRow) -> DecisionRecord:
    return DecisionRecord(
        id=row.id,
        decided_at=row.decided_at,
        caller_raw=row.caller_raw,
        caller_number=row.caller_number,
        queue=row.queue,
        decision=Decision(
            action=Action(row.action),
            queue=row.target_queue,
            priority=row.priority,
            reasons=_reasons(row.reasons),
            target_operator_id=row.target_operator_id,
            target_interface=row.target_interface,
            wait_seconds=row.wait_seconds,
            announcement=row.announcement,
            escalated=row.escalated,
        ),
        latency_ms=row.latency_ms,
        uniqueid=row.uniqueid,
        linkedid=row.linkedid,
        channel=row.channel,
        server_id=row.server_id,
        inputs=dict(row.inputs or {}),
    )
