"""Who handled each call (its legs) and what each of them said about it (their notes).

The AMI listener's records carry the call's legs (``callrouter.legs``); the store keeps
the list of the latest record that has one, replacing what was there: a live record's
list (the current leg still open) until the final record's complete one. A live record
that arrives after the final one (a journal replay) does not undo it.

Every operator who handled a call keeps their own note and verdict (``call_notes``). The
call's verdict (``calls.resolved``, which escalation counts) follows the verdicts of the
handlers: see ``call_verdict``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from callrouter.domain.model import Outcome
from callrouter.legs import CallLeg, LegEnd, legs_of
from callrouter.service.ports import CallRecord
from callrouter.store.models import CallLegRow, CallNoteRow, CallRow
from callrouter.store.records import CallNote

_LEGS: Table = CallLegRow.__table__  # type: ignore[assignment]
_NOTES: Table = CallNoteRow.__table__  # type: ignore[assignment]


async def apply_legs(session: AsyncSession, records: Sequence[CallRecord]) -> None:
    """Store the legs of ``records`` (already merged into their call rows, in order)."""
    chosen: dict[tuple[str, str], CallRecord] = {}
    for record in records:
        if not legs_of(record):
            continue
        key = (record.server_id, record.uniqueid)
        kept = chosen.get(key)
        # The last record of a call wins, except that a final one is never undone by a
        # live one behind it.
        if kept is None or _final(record) or not _final(kept):
            chosen[key] = record
    if not chosen:
        return
    # One lookup per server (a listener's batch has one), by the unique (server_id,
    # uniqueid) index.
    found: list[Any] = []
    for server in {server_id for server_id, _ in chosen}:
        found.extend(await session.execute(
            select(CallRow.id, CallRow.server_id, CallRow.uniqueid, CallRow.outcome)
            .where(CallRow.server_id == server,
                   CallRow.uniqueid.in_([u for s, u in chosen if s == server]))))
    call_ids: list[str] = []
    values: list[dict[str, Any]] = []
    for call_id, server_id, uniqueid, outcome in found:
        record = chosen[(server_id, uniqueid)]
        if not _final(record) and outcome != Outcome.IN_PROGRESS.value:
            continue  # the call's final legs are stored already
        call_ids.append(call_id)
        values.extend(_leg_values(call_id, leg) for leg in legs_of(record))
    if not call_ids:
        return
    await session.execute(delete(_LEGS).where(_LEGS.c.call_id.in_(call_ids)))
    await session.execute(insert(_LEGS), values)


def _final(record: CallRecord) -> bool:
    return record.outcome != Outcome.IN_PROGRESS.value


_VIA = frozenset({"queue", "dial", "transfer"})
_HANGUP_BY = frozenset({"caller", "operator"})


def _leg_values(call_id: str, leg: CallLeg) -> dict[str, Any]:
    """A leg's row (ValueError for a leg the table's checks would refuse)."""
    if leg.via not in _VIA:
        raise ValueError(f"leg via must be one of {sorted(_VIA)}, not {leg.via!r}")
    if leg.hangup_by is not None and leg.hangup_by not in _HANGUP_BY:
        raise ValueError(f"leg hangup_by must be 'caller' or 'operator', not {leg.hangup_by!r}")
    return {
        "call_id": call_id, "seq": leg.seq, "operator_id": leg.operator_id,
        "interface": leg.interface, "via": leg.via, "answered_at": leg.answered_at,
        "ended_at": leg.ended_at, "hold_seconds": leg.hold_seconds,
        "talk_seconds": leg.talk_seconds,
        "ended_how": leg.end.value if leg.end is not None else None,
        "hangup_by": leg.hangup_by, "transferred_to": leg.transferred_to,
        "transfer_target": leg.transfer_target,
    }


async def legs_for(
    session: AsyncSession, call_ids: Iterable[str]
) -> dict[str, tuple[CallLeg, ...]]:
    """The legs of each call, in order (calls without legs are left out)."""
    ids = list(call_ids)
    if not ids:
        return {}
    found: dict[str, list[CallLeg]] = {}
    rows = await session.execute(
        select(CallLegRow).where(CallLegRow.call_id.in_(ids))
        .order_by(CallLegRow.call_id, CallLegRow.seq)
    )
    for (row,) in rows:
        found.setdefault(row.call_id, []).append(CallLeg(
            seq=row.seq, operator_id=row.operator_id, interface=row.interface, via=row.via,
            answered_at=row.answered_at, ended_at=row.ended_at,
            hold_seconds=row.hold_seconds, talk_seconds=row.talk_seconds,
            end=LegEnd(row.ended_how) if row.ended_how else None, hangup_by=row.hangup_by,
            transferred_to=row.transferred_to, transfer_target=row.transfer_target))
    return {k: tuple(v) for k, v in found.items()}


async def notes_for(
    session: AsyncSession, call_ids: Iterable[str]
) -> dict[str, tuple[CallNote, ...]]:
    """Each call's operator notes, oldest change first."""
    ids = list(call_ids)
    if not ids:
        return {}
    found: dict[str, list[CallNote]] = {}
    rows = await session.execute(
        select(CallNoteRow).where(CallNoteRow.call_id.in_(ids))
        .order_by(CallNoteRow.call_id, CallNoteRow.updated_at, CallNoteRow.operator_id)
        .execution_options(populate_existing=True)
    )
    for (row,) in rows:
        found.setdefault(row.call_id, []).append(CallNote(
            operator_id=row.operator_id, note=row.note, resolved=row.resolved,
            updated_at=row.updated_at))
    return {k: tuple(v) for k, v in found.items()}


async def write_note(
    session: AsyncSession, call_id: str, operator_id: str, now: datetime, **changes: Any
) -> None:
    """Set ``note`` and/or ``resolved`` of one operator's follow-up on a call (the row is
    made on first use; two first writes at once do not collide)."""
    dialect = session.get_bind().dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    await session.execute(
        make(_NOTES)
        .values(call_id=call_id, operator_id=operator_id, note=None, resolved=None,
                updated_at=now)
        .on_conflict_do_nothing(index_elements=["call_id", "operator_id"])
    )
    await session.execute(
        update(_NOTES)
        .where(_NOTES.c.call_id == call_id, _NOTES.c.operator_id == operator_id)
        .values(**changes, updated_at=now)
    )


def call_verdict(
    legs: Sequence[CallLeg],
    first: str | None,
    last: str | None,
    notes: Iterable[CallNote],
) -> bool | None:
    """The call's verdict from its handlers' verdicts: that of the handler who had the
    caller latest among those who gave one.

    Who had the caller last knows how the call ended: the first-line operator's "not
    resolved, sent to a specialist" must not undo the specialist's "resolved", whichever
    of them writes first. None when no handler gave a verdict. ``first`` and ``last``
    (``transferred_from``, ``operator_id``) order the handlers of a call without legs.
    """
    order = [leg.operator_id for leg in legs] or [first, last]
    given = {n.operator_id: n.resolved for n in notes if n.resolved is not None}
    for operator_id in reversed(order):
        if operator_id in given:
            return given[operator_id]
    return None


__all__ = ["apply_legs", "call_verdict", "legs_for", "notes_for", "write_note"]
