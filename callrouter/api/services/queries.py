"""Two reads the store's repositories do not offer, written against the store's models."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import event, exists, or_, select

from callrouter.domain.model import Outcome
from callrouter.store.models import CallLegRow, CallRow
from callrouter.store.store import Transaction

# A call "in progress" for longer than this lost its end somewhere (AMI link down).
LIVE_CALL_HORIZON = timedelta(hours=6)


async def operator_talked_to(tx: Transaction, operator_id: str, number: str) -> bool:
    """Whether ``operator_id`` handled any call of ``number``: answered it, took it by a
    transfer or transferred it on (the caller's calls by index, then each call's legs by
    primary key)."""
    leg = exists().where(CallLegRow.call_id == CallRow.id, CallLegRow.operator_id == operator_id)
    handled = or_(CallRow.operator_id == operator_id, CallRow.transferred_from == operator_id, leg)
    stmt = select(exists().where(CallRow.caller_number == number, handled))
    return bool(await tx.session.scalar(stmt))


async def current_calls(tx: Transaction, now: datetime) -> dict[str, CallRow]:
    """Each operator's newest answered call that has not ended, by operator id."""
    stmt = (
        select(CallRow)
        .where(
            CallRow.operator_id.is_not(None),
            CallRow.answered_at.is_not(None),
            CallRow.ended_at.is_(None),
            CallRow.outcome.in_((Outcome.IN_PROGRESS.value, Outcome.ANSWERED.value)),
            CallRow.started_at >= now - LIVE_CALL_HORIZON,
        )
        .order_by(CallRow.answered_at.desc())
    )
    found: dict[str, CallRow] = {}
    for row in await tx.session.scalars(stmt):
        assert row.operator_id is not None
        found.setdefault(row.operator_id, row)
    return found


def after_commit(tx: Transaction, callback: Callable[[], None]) -> None:
    """Run ``callback`` once this transaction has committed (cache invalidation: before the
    commit, a concurrent call could re-read and cache the old rows)."""

    def fire(_session: object) -> None:
        callback()

    event.listen(tx.session.sync_session, "after_commit", fire, once=True)
