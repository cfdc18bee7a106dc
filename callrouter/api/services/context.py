"""The caller's context as an operator needs it: who they are, what happened, what is next."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from callrouter.api import schemas as s
from callrouter.api.deps import ApiDeps
from callrouter.api.errors import Invalid
from callrouter.api.services.convert import call_out, decision_out, flags_out, ticket_out
from callrouter.domain.model import CallerFlags, Operator, Outcome, PastCall
from callrouter.domain.rules import HistoryScope, QueueRules, StickyMode
from callrouter.numbers import NumberError
from callrouter.store.store import Transaction


def normalise(deps: ApiDeps, raw: str, field: str = "number", location: str = "path") -> str:
    """E.164 of a number given in a request, or 422 naming the field."""
    try:
        return deps.numbers.normalise(raw)
    except NumberError as exc:
        raise Invalid(field, str(exc), location) from None


def sticky_binding(
    recent: Sequence[PastCall],
    queue: str,
    qr: QueueRules,
    flags: CallerFlags,
    operators: dict[str, Operator],
    now: datetime,
) -> s.BindingOut | None:
    """The operator the caller is bound to and until when, by the rule ``decide`` applies:
    the last answered call in scope, long enough, whose end is within the sticky window."""
    if qr.sticky_mode is StickyMode.OFF:
        return None
    window = timedelta(seconds=qr.sticky_window)
    calls = [c for c in recent if qr.history_scope is HistoryScope.ANY_QUEUE or c.queue == queue]
    for call in sorted(calls, key=lambda c: c.last_moment, reverse=True):
        if now - call.last_moment > window:
            return None
        if call.outcome is not Outcome.ANSWERED or call.operator_id is None:
            continue
        if call.handler_talk_seconds < qr.min_talk_seconds:
            continue
        until = call.last_moment + window
        op = operators.get(call.operator_id)
        blocked = call.operator_id in flags.opted_out_operators or (
            flags.abusive and flags.abusive_flagged_by == call.operator_id
        )
        return s.BindingOut(
            operator_id=call.operator_id,
            operator_name=op.name if op else None,
            call_id=call.id,
            queue=call.queue,
            mode=str(qr.sticky_mode),
            since=call.last_moment,
            until=until,
            seconds_left=max(0, int((until - now).total_seconds())),
            blocked=blocked,
        )
    return None


async def caller_context(
    deps: ApiDeps, tx: Transaction, number: str, queue: str | None, now: datetime
) -> s.CallerContextOut:
    """Flags, recent calls, current ticket, sticky binding and what routing would do now.

    ``queue`` defaults to the queue of the caller's newest call, else the default queue.
    The routing part goes through ``RoutingService.explain``: the same inputs and rule the
    FastAGI route uses, without logging a decision.
    """
    flags = await tx.flags.get(number)
    calls = await tx.calls.recent_by_caller(number, limit=deps.recent_calls_limit)
    ticket = await tx.tickets.current(number, now)
    operators = await tx.operators.all()
    rules = deps.rules.rules
    entry = queue or next((c.queue for c in calls if c.queue), None) or rules.default_queue
    ctx, decision = await deps.routing.explain(number, entry, now=now)
    binding = sticky_binding(
        ctx.recent_calls, ctx.queue, rules.for_queue(ctx.queue), flags, operators, now
    )
    return s.CallerContextOut(
        number=number,
        name=flags.name,
        vip_class=flags.vip_class,
        flags=flags_out(flags),
        recent_calls=[call_out(c, operators) for c in calls],
        open_ticket=ticket_out(ticket) if ticket else None,
        sticky=binding,
        routing_now=s.RoutingNowOut(queue=ctx.queue, decision=decision_out(decision)),
    )
