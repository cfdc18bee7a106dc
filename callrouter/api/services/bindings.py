"""Current sticky bindings: callers who would go back to an operator if they rang now.

Per caller, the newest answered call that counts under its queue's rules (sticky not off,
long enough, ended within the sticky window), as ``decide`` picks the sticky operator.
Read from the call log in three queries (calls, opt-outs, abusive flags).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from callrouter.api import schemas as s
from callrouter.api.deps import ApiDeps
from callrouter.domain.model import Outcome
from callrouter.domain.rules import StickyMode
from callrouter.numbers import mask
from callrouter.store.models import CallerFlagsRow, CallerOptOutRow, CallRow
from callrouter.store.store import Transaction

SCAN_LIMIT = 5000  # answered calls read at most; a window of calls, not the whole log


async def current_bindings(
    deps: ApiDeps, tx: Transaction, now: datetime, limit: int, pii: bool
) -> list[s.BindingListItem]:
    rules = deps.rules.rules
    widest = max([rules.defaults.sticky_window, *(q.sticky_window for q in rules.queues.values())])
    last = func.coalesce(CallRow.ended_at, CallRow.started_at)
    rows = await tx.session.execute(
        select(CallRow.id, CallRow.caller_number, CallRow.operator_id, CallRow.queue,
               # the last handler's own talk time after a transfer, as decide() counts it
               func.coalesce(CallRow.operator_talk_seconds, CallRow.talk_seconds),
               last.label("last"))
        .where(
            CallRow.outcome == Outcome.ANSWERED.value,
            CallRow.operator_id.is_not(None),
            CallRow.caller_number.is_not(None),
            last >= now - timedelta(seconds=widest),
            CallRow.started_at <= now,
        )
        .order_by(last.desc(), CallRow.id.desc())
        .limit(SCAN_LIMIT)
    )
    chosen: dict[str, s.BindingListItem] = {}
    for call_id, number, operator_id, queue, talk, ended in rows:
        if number in chosen or len(chosen) >= limit:
            continue
        qr = rules.for_queue(queue or rules.default_queue)
        until = ended + timedelta(seconds=qr.sticky_window)
        if qr.sticky_mode is StickyMode.OFF or talk < qr.min_talk_seconds or until <= now:
            continue
        chosen[number] = s.BindingListItem(
            caller_number=number, operator_id=operator_id, operator_name=None, call_id=call_id,
            queue=queue or "", mode=str(qr.sticky_mode), since=ended, until=until,
            seconds_left=int((until - now).total_seconds()), blocked=False,
        )
    if not chosen:
        return []
    blocked = await _blocked_pairs(tx, list(chosen))
    operators = await tx.operators.all()
    out = []
    for number, item in chosen.items():
        op = operators.get(item.operator_id)
        out.append(item.model_copy(update={
            "caller_number": number if pii else mask(number),
            "operator_name": op.name if op else None,
            "blocked": (number, item.operator_id) in blocked,
        }))
    return out


async def _blocked_pairs(tx: Transaction, numbers: list[str]) -> set[tuple[str, str]]:
    """(caller, operator) pairs where the operator opted out or flagged the caller abusive."""
    pairs: set[tuple[str, str]] = set()
    opted = await tx.session.execute(
        select(CallerOptOutRow.caller_number, CallerOptOutRow.operator_id)
        .where(CallerOptOutRow.caller_number.in_(numbers))
    )
    pairs.update((n, o) for n, o in opted)
    flagged = await tx.session.execute(
        select(CallerFlagsRow.caller_number, CallerFlagsRow.abusive_flagged_by)
        .where(CallerFlagsRow.caller_number.in_(numbers), CallerFlagsRow.abusive.is_(True))
    )
    pairs.update((n, o) for n, o in flagged if o)
    return pairs
