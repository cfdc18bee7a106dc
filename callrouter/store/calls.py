"""The call log: opened by the routing decision, completed from AMI call records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from callrouter.domain.model import Action, Outcome, PastCall
from callrouter.ids import new_id
from callrouter.legs import CallLeg, operator_talk_seconds
from callrouter.service.ports import RECENT_CALLS_LIMIT, CallRecord
from callrouter.store.call_legs import apply_legs, call_verdict, legs_for, notes_for, write_note
from callrouter.store.errors import NotFound
from callrouter.store.models import CallRow
from callrouter.store.records import CallNote, StoredCall
from callrouter.store.sql import utcnow
from callrouter.store.types import UTCDateTime

HANGUP_BY = frozenset({"caller", "operator"})

_PAST_CALL_COLUMNS = (
    CallRow.id,
    CallRow.queue,
    CallRow.started_at,
    CallRow.ended_at,
    CallRow.operator_id,
    CallRow.outcome,
    CallRow.talk_seconds,
    CallRow.resolved,
    CallRow.escalated,
    CallRow.operator_talk_seconds,
)


def new_call_id() -> str:
    return new_id()


# How a decision's call row merges into a row the AMI listener wrote first (same key):
# the decision's own fields replace AMI's, what AMI learned first is kept. Shared by
# DecisionRepository.open_calls and the PostgreSQL hot path.
CALL_KEY = ("server_id", "uniqueid")
CALL_TAKEN_FROM_DECISION = (
    "decision_id", "action", "target_operator_id", "escalated", "caller_raw",
    "caller_number", "queue",
)
CALL_KEPT_FROM_AMI = ("linkedid", "channel")


def merge_into_ami_row(stmt: Any) -> dict[str, Any]:
    """The ON CONFLICT set of an upsert of ``call_values`` rows (SQLAlchemy form)."""
    existing, ex = CallRow.__table__.c, stmt.excluded
    merge: dict[str, Any] = {c: ex[c] for c in CALL_TAKEN_FROM_DECISION}
    merge.update({c: func.coalesce(existing[c], ex[c]) for c in CALL_KEPT_FROM_AMI})
    return merge


# The call row a decision opens: these call columns are copied from the decision row's
# columns (call column -> decisions column), the others start as CALL_OPENED_AS. The
# SQLAlchemy path (``call_from_decision``) and the PostgreSQL hot path's one statement
# (``pg_hot``) are both generated from these two tables.
CALL_COPIED_FROM_DECISION = {
    "caller_raw": "caller_raw", "caller_number": "caller_number", "queue": "queue",
    "server_id": "server_id", "uniqueid": "uniqueid", "linkedid": "linkedid",
    "channel": "channel", "decision_id": "id", "action": "action",
    "target_operator_id": "target_operator_id", "started_at": "decided_at",
    "escalated": "escalated",
}
CALL_OPENED_AS: dict[str, Any] = {
    "outcome": Outcome.IN_PROGRESS.value, "hold_seconds": 0, "talk_seconds": 0,
    "transferred": False,
}


def call_from_decision(decision_row: Mapping[str, Any]) -> dict[str, Any]:
    """The call row (outcome ``in_progress``) a decision row (``decision_values``) opens."""
    row: dict[str, Any] = {"id": new_call_id()}
    row.update({c: decision_row[src] for c, src in CALL_COPIED_FROM_DECISION.items()})
    row.update(CALL_OPENED_AS)
    return row


class CallRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # --- hot path -------------------------------------------------------------------

    async def past_calls(
        self, number: str, now: datetime, lookback_seconds: int, limit: int = RECENT_CALLS_LIMIT
    ) -> tuple[PastCall, ...]:
        """The caller's calls started in ``[now - lookback, now]``, newest first."""
        stmt = (
            select(*_PAST_CALL_COLUMNS)
            .where(
                CallRow.caller_number == number,
                CallRow.started_at >= now - timedelta(seconds=lookback_seconds),
                CallRow.started_at <= now,
            )
            .order_by(CallRow.started_at.desc(), CallRow.id.desc())
            .limit(limit)
        )
        return tuple(
            PastCall(
                id=r.id,
                queue=r.queue or "",
                started_at=r.started_at,
                ended_at=r.ended_at,
                operator_id=r.operator_id,
                outcome=Outcome(r.outcome),
                talk_seconds=r.talk_seconds,
                resolved=r.resolved,
                escalated=r.escalated,
                operator_talk_seconds=r.operator_talk_seconds,
            )
            for r in await self._session.execute(stmt)
        )

    async def apply_record(self, record: CallRecord) -> None:
        """Merge one AMI call record into the row keyed by (server_id, uniqueid)."""
        await self.apply_records([record])

    async def apply_records(self, records: Sequence[CallRecord]) -> None:
        """Merge AMI call records, in order, into the rows keyed by (server_id, uniqueid).

        Fields a record does not know are left alone: ``None`` and empty strings, zero
        hold/talk seconds, ``transferred=False`` and ``outcome=in_progress`` (the
        dataclass defaults) never overwrite what is stored. So a record applied twice
        leaves the same row, and a late "in progress" record cannot undo a final outcome.

        The listener writes a live call's record (in progress: who has the call now)
        before the final one, in order. Who handled the call and whom it was transferred
        from go together: a record naming an operator without a transfer source clears a
        stored source that is that same operator (A -> B -> A: B's live record said
        "from A", A's final record says nothing of a transfer source).

        One statement of one shape for every record, executed for all of them at once: a
        statement built per record cost ~2 ms of CPU each, mostly compiling it (SQLAlchemy
        does not cache the dialects' ON CONFLICT inserts), which held the writer to a few
        hundred records a second. Nothing is written when any record is invalid.
        """
        if not records:
            return
        params = [_record_params(r) for r in records]
        await self._session.execute(_UPSERT_RECORD, params)
        await apply_legs(self._session, records)

    # --- display and follow-up ------------------------------------------------------

    async def get(self, call_id: str) -> StoredCall | None:
        """The call with its legs and operator notes."""
        row = await self._session.get(CallRow, call_id, populate_existing=True)
        return (await self._detailed([row]))[0] if row is not None else None

    async def get_by_uniqueid(self, uniqueid: str, server_id: str = "default") -> StoredCall | None:
        row = await self._session.scalar(
            select(CallRow)
            .where(CallRow.server_id == server_id, CallRow.uniqueid == uniqueid)
            .execution_options(populate_existing=True)
        )
        return (await self._detailed([row]))[0] if row is not None else None

    async def recent_by_caller(self, number: str, limit: int = 20) -> list[StoredCall]:
        """The caller's calls, newest first, with their legs and operator notes."""
        rows = await self._session.scalars(
            select(CallRow)
            .where(CallRow.caller_number == number)
            .order_by(CallRow.started_at.desc(), CallRow.id.desc())
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        return await self._detailed(list(rows))

    async def recent(self, *, operator_id: str | None = None, limit: int = 50) -> list[StoredCall]:
        """The newest calls overall, or those answered by one operator."""
        stmt = select(CallRow).order_by(CallRow.started_at.desc(), CallRow.id.desc()).limit(limit)
        if operator_id is not None:
            stmt = stmt.where(CallRow.operator_id == operator_id)
        return await self._detailed(list(await self._session.scalars(stmt)))

    async def mark_resolved(self, call_id: str, resolved: bool | None) -> StoredCall:
        """The call's own verdict, set directly (a supervisor's): resolved, not resolved,
        or unknown (None). It stands until a handler changes their own verdict."""
        row = await self._row(call_id)
        row.resolved = resolved
        await self._session.flush()
        return (await self._detailed([row]))[0]

    async def set_note(self, call_id: str, note: str | None) -> StoredCall:
        """The call's own note (a supervisor's); operators write ``set_operator_note``."""
        row = await self._row(call_id)
        row.note = note
        await self._session.flush()
        return (await self._detailed([row]))[0]

    async def set_operator_note(
        self, call_id: str, operator_id: str, note: str | None, now: datetime
    ) -> StoredCall:
        """One handler's own note on the call (others' notes are left alone)."""
        row = await self._row(call_id)
        await write_note(self._session, call_id, operator_id, now, note=note)
        return (await self._detailed([row]))[0]

    async def set_operator_verdict(
        self, call_id: str, operator_id: str, resolved: bool | None, now: datetime
    ) -> StoredCall:
        """One handler's own verdict; the call's verdict becomes that of the handler who
        had the caller latest among those who gave one (``call_verdict``)."""
        row = await self._row(call_id)
        await write_note(self._session, call_id, operator_id, now, resolved=resolved)
        call = (await self._detailed([row]))[0]
        verdict = call_verdict(call.legs, call.transferred_from, call.operator_id, call.notes)
        if verdict != row.resolved:
            row.resolved = verdict
            await self._session.flush()
            call = (await self._detailed([row]))[0]
        return call

    async def _detailed(self, rows: Sequence[CallRow]) -> list[StoredCall]:
        """Rows as StoredCall values with their legs and notes (two queries for all)."""
        ids = [r.id for r in rows]
        legs = await legs_for(self._session, ids)
        notes = await notes_for(self._session, ids)
        return [_stored(r, legs.get(r.id, ()), notes.get(r.id, ())) for r in rows]

    async def _row(self, call_id: str) -> CallRow:
        row = await self._session.get(CallRow, call_id, populate_existing=True)
        if row is None:
            raise NotFound(f"no call {call_id!r}")
        return row


# The upsert of an AMI call record. What a record does not know arrives as NULL, or as the
# NOT NULL columns' "nothing" ('', 0, 'in_progress', false), and leaves the stored value.
_KEPT_UNLESS_KNOWN = (
    "linkedid", "caller_number", "queue", "decision_id", "answered_at", "ended_at",
    "operator_id", "answered_interface", "hangup_by", "sticky_hit", "fallback_cause",
)
_RECORD_COLUMNS = (
    "id", "server_id", "uniqueid", "caller_raw", "started_at", "hold_seconds",
    "talk_seconds", "outcome", "transferred", "transferred_from", "escalated",
    "operator_talk_seconds", *_KEPT_UNLESS_KNOWN,
)
_UNLESS_NOTHING = "{c} = CASE WHEN excluded.{c} = {nothing} THEN calls.{c} ELSE excluded.{c} END"
_ON_CONFLICT_SET = (
    *(f"{c} = COALESCE(excluded.{c}, calls.{c})" for c in _KEPT_UNLESS_KNOWN),
    # Known from a final record's legs only (NULL otherwise): a live record replayed after
    # the final one leaves it.
    "operator_talk_seconds = COALESCE(excluded.operator_talk_seconds,"
    " calls.operator_talk_seconds)",
    _UNLESS_NOTHING.format(c="caller_raw", nothing="''"),
    _UNLESS_NOTHING.format(c="hold_seconds", nothing="0"),
    _UNLESS_NOTHING.format(c="talk_seconds", nothing="0"),
    _UNLESS_NOTHING.format(c="outcome", nothing=f"'{Outcome.IN_PROGRESS.value}'"),
    # The row's start stays unless the record knows it (a new row takes a stand-in).
    "started_at = COALESCE(:known_started_at, calls.started_at)",
    "transferred = (calls.transferred OR excluded.transferred)",
    "transferred_from = CASE WHEN excluded.transferred_from IS NOT NULL"
    " THEN excluded.transferred_from"
    " WHEN excluded.operator_id = calls.transferred_from THEN NULL"
    " ELSE calls.transferred_from END",
)
_UPSERT_RECORD = text(
    f"INSERT INTO calls ({', '.join(_RECORD_COLUMNS)})"
    f" VALUES ({', '.join(':' + c for c in _RECORD_COLUMNS)})"
    f" ON CONFLICT ({', '.join(CALL_KEY)}) DO UPDATE SET {', '.join(_ON_CONFLICT_SET)}"
).bindparams(*(bindparam(c, type_=UTCDateTime())
               for c in ("started_at", "known_started_at", "answered_at", "ended_at")))


def _known(value: Any) -> Any:
    return None if value == "" else value


def _record_params(record: CallRecord) -> dict[str, Any]:
    """The statement's parameters for one record (ValueError for an invalid one)."""
    outcome = Outcome(record.outcome)
    if record.hangup_by is not None and record.hangup_by not in HANGUP_BY:
        raise ValueError(f"hangup_by must be 'caller' or 'operator', not {record.hangup_by!r}")
    params = {c: _known(getattr(record, c)) for c in _KEPT_UNLESS_KNOWN}
    params.update(
        id=new_call_id(), server_id=record.server_id, uniqueid=record.uniqueid,
        caller_raw=record.caller_raw or "",
        started_at=record.started_at or record.answered_at or record.ended_at or utcnow(),
        known_started_at=record.started_at, hold_seconds=record.hold_seconds or 0,
        talk_seconds=record.talk_seconds or 0, outcome=outcome.value,
        transferred=bool(record.transferred), transferred_from=_known(record.transferred_from),
        escalated=False, operator_talk_seconds=operator_talk_seconds(record),
    )
    return params


def _stored(row: CallRow, legs: tuple[CallLeg, ...] = (),
            notes: tuple[CallNote, ...] = ()) -> StoredCall:
    return StoredCall(
        id=row.id,
        caller_raw=row.caller_raw,
        caller_number=row.caller_number,
        queue=row.queue,
        server_id=row.server_id,
        uniqueid=row.uniqueid,
        started_at=row.started_at,
        outcome=Outcome(row.outcome),
        linkedid=row.linkedid,
        channel=row.channel,
        decision_id=row.decision_id,
        action=Action(row.action) if row.action else None,
        target_operator_id=row.target_operator_id,
        operator_id=row.operator_id,
        answered_interface=row.answered_interface,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        hold_seconds=row.hold_seconds,
        talk_seconds=row.talk_seconds,
        hangup_by=row.hangup_by,
        transferred=row.transferred,
        sticky_hit=row.sticky_hit,
        fallback_cause=row.fallback_cause,
        escalated=row.escalated,
        resolved=row.resolved,
        note=row.note,
        transferred_from=row.transferred_from,
        legs=legs,
        notes=notes,
    )
