"""The routing rule: ``decide(context, rules, now) -> Decision``, pure and total."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from callrouter.domain.model import (
    Action,
    Decision,
    Incident,
    Operator,
    OperatorState,
    Outcome,
    PastCall,
    RoutingContext,
    Ticket,
    TicketStatus,
    Tier,
)
from callrouter.domain.reasons import Reason
from callrouter.domain.reasons import ReasonCode as R
from callrouter.domain.rules import HistoryScope, QueueRules, Rules, StickyMode

_WAITABLE = (OperatorState.IN_CALL, OperatorState.RINGING)
_ABUSIVE_NO_SPECIALIST = "abusive callers are not sent straight to specialists"


@dataclass(slots=True)
class _Draft:
    """The decision being built: where the call would go if nothing more applied."""

    queue: str
    priority: int
    reasons: list[Reason] = field(default_factory=list)
    notes: list[Reason] = field(default_factory=list)
    announcements: list[str] = field(default_factory=list)

    def note(self, code: R, text: str) -> None:
        # two rules may find the same thing (an opted-out specialist is also the sticky one)
        reason = Reason(code, text)
        if reason not in self.notes:
            self.notes.append(reason)

    def finish(
        self,
        action: Action,
        code: R,
        text: str,
        *,
        queue: str | None = None,
        operator: Operator | None = None,
        wait: int = 0,
        announce: str | None = None,
        escalated: bool = False,
    ) -> Decision:
        sounds = [*self.announcements, *([announce] if announce else [])]
        return Decision(
            action=action,
            queue=queue or self.queue,
            priority=self.priority,
            reasons=(Reason(code, text), *self.notes),
            target_operator_id=operator.id if operator else None,
            target_interface=operator.interface if operator else None,
            wait_seconds=wait if operator else 0,
            announcement="&".join(sounds) or None,
            escalated=escalated,
        )


def decide(ctx: RoutingContext, rules: Rules, now: datetime) -> Decision:
    """Decide where one inbound call goes, with the reasons, from its context alone.

    The order of the rules is the order of the business priorities:

    1. A withheld or unidentifiable number is never matched to history: normal queue.
    2. Continuity with a specialist: the open ticket's specialist, else the specialist of
       the last contact in the sticky window, goes first (never for abusive callers).
    3. Escalation: a ticket escalated to the second line, or the Nth call within the
       escalation window after an unresolved call, goes to the specialist queue (capped
       per caller per day, suppressed during an incident, skipped with no second line or
       when live presence shows everyone who takes that queue logged off).
    4. Sticky: the operator of the last answered call in the window, per the queue's mode.
    5. Otherwise the pool; a repeat caller keeps their place with a raised priority.

    An operator who opted out of the caller is never the target, whatever the rule.
    """
    qr = rules.for_queue(ctx.queue)
    # the queue the call came in on, as given: a queue without a table uses the defaults
    # (Rules.for_queue); default_queue only when the dialplan named none
    entry = ctx.queue or rules.default_queue
    draft = _Draft(queue=entry, priority=qr.base_priority)

    incident = _incident_for(ctx, now)
    if incident is not None:
        draft.announcements.append(incident.announcement)
        draft.note(R.INCIDENT, f"incident in progress: {incident.title or incident.id}")

    if ctx.caller.shared and ctx.caller.number is not None:
        return draft.finish(
            Action.QUEUE, R.SHARED_NUMBER, "shared number: never matched to anyone's history"
        )
    if not ctx.caller.identified:
        return draft.finish(
            Action.QUEUE, R.WITHHELD, "number withheld or unknown: routed as a new caller"
        )

    _apply_vip(ctx, qr, draft)
    history = _history(ctx, qr, now)
    repeat = any(now - c.last_moment <= timedelta(seconds=qr.sticky_window) for c in history)
    if repeat:
        _raise_priority(qr, draft)

    last_answered = _last_answered(ctx, history, qr, now, draft)

    decision = _specialist_continuity(ctx, qr, now, draft, last_answered)
    if decision is not None:
        return decision

    decision = _escalation(ctx, qr, now, draft, history, incident)
    if decision is not None:
        return decision

    decision = _sticky(ctx, qr, now, draft, last_answered)
    if decision is not None:
        return decision

    if repeat:
        return draft.finish(
            Action.QUEUE, R.DEFAULT_QUEUE, "repeat caller with no operator to go back to: pool"
        )
    return draft.finish(Action.QUEUE, R.NEW_CALLER, "no recent calls: pool")


# --- the caller ------------------------------------------------------------------------


def _incident_for(ctx: RoutingContext, now: datetime) -> Incident | None:
    for incident in ctx.incidents:
        if incident.covers(ctx.caller, now):
            return incident
    return None


def _apply_vip(ctx: RoutingContext, qr: QueueRules, draft: _Draft) -> None:
    vip_class = ctx.flags.vip_class
    if not vip_class or vip_class not in qr.vip_classes:
        return
    rule = qr.vip_classes[vip_class]
    if rule.queue:
        draft.queue = rule.queue
    if rule.priority is not None:
        draft.priority = max(draft.priority, rule.priority)
    draft.note(R.VIP, f"VIP class {vip_class}")


def _raise_priority(qr: QueueRules, draft: _Draft) -> None:
    raised = qr.base_priority + qr.repeat_priority_boost
    if raised > draft.priority:
        draft.priority = raised
        draft.note(R.REPEAT_PRIORITY, f"repeat caller keeps their place: priority {raised}")


def _history(ctx: RoutingContext, qr: QueueRules, now: datetime) -> list[PastCall]:
    """Earlier calls in scope, newest first; calls from the future (clock skew) are kept."""
    calls = [
        c
        for c in ctx.recent_calls
        if qr.history_scope is HistoryScope.ANY_QUEUE or c.queue == ctx.queue
    ]
    calls.sort(key=lambda c: c.last_moment, reverse=True)
    return calls


def _last_answered(
    ctx: RoutingContext, history: list[PastCall], qr: QueueRules, now: datetime, draft: _Draft
) -> PastCall | None:
    """The last answered call within the sticky window (measured from its end) whose
    operator talked with the caller for at least ``min_talk_seconds``: after a transfer,
    the time of the operator who had the call last, not the whole call's."""
    window = timedelta(seconds=qr.sticky_window)
    skipped_short = False
    for call in history:
        if now - call.last_moment > window:
            break
        if call.outcome is not Outcome.ANSWERED or call.operator_id is None:
            continue
        if call.handler_talk_seconds < qr.min_talk_seconds:
            skipped_short = True
            continue
        if skipped_short:
            _note_short(qr, draft)
        return call
    if skipped_short:
        _note_short(qr, draft)
    return None


def _note_short(qr: QueueRules, draft: _Draft) -> None:
    draft.note(R.SHORT_CALL_IGNORED, f"calls under {qr.min_talk_seconds} s of talk are not counted")


# --- targets ---------------------------------------------------------------------------


def _blocked(ctx: RoutingContext, operator_id: str, draft: _Draft) -> bool:
    """An operator's "do not route this caller to me" and abusive-caller protection."""
    if operator_id in ctx.flags.opted_out_operators:
        draft.note(R.OPTED_OUT, f"operator {operator_id} asked not to get this caller")
        return True
    if ctx.flags.abusive and ctx.flags.abusive_flagged_by == operator_id:
        draft.note(R.ABUSIVE_PROTECTED, f"caller was flagged abusive by {operator_id}")
        return True
    return False


def _usable(ctx: RoutingContext, operator_id: str) -> Operator | None:
    op = ctx.operators.get(operator_id)
    if op is None or not op.active or op.interface is None:
        return None
    return op


def _all_logged_off(ctx: RoutingContext, queue: str) -> bool:
    """Live presence shows everyone who takes ``queue`` logged off (or unregistered).

    Who takes it: operators who list it in their queues, and specialists who list no
    queue (their membership is not recorded). Only proof counts: with nobody like that in
    the directory, or anyone of them paused, busy, available or ``unknown`` (no AMI
    listener, or its link down), this is False and routing goes on as it would.
    """
    takers = 0
    for op in ctx.operators.values():
        if queue in op.queues or (not op.queues and op.tier is Tier.SPECIALIST):
            if ctx.state_of(op.id) is not OperatorState.LOGGED_OFF:
                return False
            takers += 1
    return takers > 0


def _to_target(
    ctx: RoutingContext,
    qr: QueueRules,
    draft: _Draft,
    op: Operator,
    *,
    action: Action,
    available: tuple[R, str],
    busy: tuple[R, str],
    fallback_queue: str,
    announcement: str,
) -> Decision | None:
    """Ring ``op`` if available, wait for them if busy; ``None`` when they cannot take calls."""
    state = ctx.state_of(op.id)
    ring = max(1, min(qr.ring_seconds, qr.max_wait_seconds))
    if state is OperatorState.AVAILABLE:
        code, text = available
        return draft.finish(
            action, code, text, queue=fallback_queue, operator=op, wait=ring, announce=announcement
        )
    if state in _WAITABLE:
        code, text = busy
        wait = max(1, min(qr.busy_wait_seconds, qr.max_wait_seconds))
        return draft.finish(
            action, code, f"{text} ({state}): wait up to {wait} s", queue=fallback_queue,
            operator=op, wait=wait,
        )
    return None


def _ticket_counts(ticket: Ticket | None, qr: QueueRules, now: datetime) -> bool:
    """Closed within the reopen window still counts: intermittent faults get closed early."""
    if ticket is None:
        return False
    if ticket.status is not TicketStatus.CLOSED:
        return True
    closed_at = ticket.updated_at or ticket.created_at
    return closed_at is not None and now - closed_at <= timedelta(seconds=qr.reopen_window)


def _specialist_continuity(
    ctx: RoutingContext, qr: QueueRules, now: datetime, draft: _Draft, last: PastCall | None
) -> Decision | None:
    if not qr.specialist_routing:
        return None
    candidates: list[tuple[str, R, str]] = []
    ticket = ctx.open_ticket
    if _ticket_counts(ticket, qr, now) and ticket is not None and ticket.assignee_id:
        candidates.append(
            (ticket.assignee_id, R.SPECIALIST_TICKET, f"open ticket {ticket.id} is with them")
        )
    if last is not None and last.operator_id is not None:
        candidates.append((last.operator_id, R.SPECIALIST_LAST_CONTACT, "last contact"))
    for operator_id, code, why in candidates:
        known = ctx.operators.get(operator_id)
        if known is None or known.tier is not Tier.SPECIALIST:
            continue
        if ctx.flags.abusive:
            draft.note(R.ABUSIVE_PROTECTED, _ABUSIVE_NO_SPECIALIST)
            return None
        if _blocked(ctx, operator_id, draft):
            continue
        op = _usable(ctx, operator_id)
        fallback = qr.specialist_queue or draft.queue
        if op is None:
            draft.note(R.SPECIALIST_UNAVAILABLE, f"specialist {operator_id} is not active")
            continue
        if qr.specialist_queue and _all_logged_off(ctx, qr.specialist_queue):
            # as with escalation: never leave the caller in a queue nobody is logged in to
            fallback = draft.queue
            draft.note(
                R.NO_SPECIALIST_AVAILABLE,
                f"everyone who takes {qr.specialist_queue} is logged off: {fallback} instead",
            )
        decision = _to_target(
            ctx, qr, draft, op, action=Action.SPECIALIST,
            available=(code, f"{why}: specialist {op.name}"),
            busy=(R.SPECIALIST_BUSY_WAIT, f"{why}: specialist {op.name} is busy"),
            fallback_queue=fallback,
            announcement=qr.specialist_announcement,
        )
        if decision is not None:
            return decision
        state = ctx.state_of(op.id)
        return draft.finish(
            Action.QUEUE, R.SPECIALIST_UNAVAILABLE,
            f"{why}: specialist {op.name} is {state}: {fallback}", queue=fallback,
        )
    return None


def _escalation(
    ctx: RoutingContext,
    qr: QueueRules,
    now: datetime,
    draft: _Draft,
    history: list[PastCall],
    incident: Incident | None,
) -> Decision | None:
    ticket = ctx.open_ticket
    by_ticket = (
        _ticket_counts(ticket, qr, now)
        and ticket is not None
        and ticket.tier is Tier.SPECIALIST
        and ticket.assignee_id is None
    )
    window = timedelta(seconds=qr.escalation_window)
    in_window = [c for c in ctx.recent_calls if now - c.started_at <= window]
    last = max(in_window, key=lambda c: c.last_moment, default=None)
    by_count = (
        len(in_window) + 1 >= qr.escalation_threshold
        and last is not None
        and last.resolved is not True
    )
    if not (by_ticket or by_count):
        return None
    if by_count and not by_ticket and incident is not None:
        draft.note(
            R.ESCALATION_SUPPRESSED_INCIDENT, "repeat calls during an incident are not escalated"
        )
        return None
    if ctx.flags.abusive:
        draft.note(R.ABUSIVE_PROTECTED, "abusive callers are not escalated to specialists")
        return None
    if not qr.specialist_queue or not qr.specialist_routing:
        draft.note(R.NO_SECOND_LINE, "escalation due, but no specialist queue is configured")
        return None
    if ctx.escalations_today >= qr.max_escalations_per_day:
        draft.note(
            R.ESCALATION_CAPPED,
            f"already escalated {ctx.escalations_today} times today "
            f"(cap {qr.max_escalations_per_day})",
        )
        return None
    if _all_logged_off(ctx, qr.specialist_queue):
        # the queue would hold the caller for nobody: the first line can at least answer
        draft.note(
            R.NO_SPECIALIST_AVAILABLE,
            f"escalation due, but everyone who takes {qr.specialist_queue} is logged off",
        )
        return None
    if by_ticket and ticket is not None:
        code, text = R.TICKET_ESCALATED, f"ticket {ticket.id} is escalated to the second line"
    else:
        code, text = (
            R.ESCALATED_REPEAT,
            f"call {len(in_window) + 1} within {qr.escalation_window // 3600} h "
            "and the last one was not resolved",
        )
    return draft.finish(
        Action.QUEUE, code, text, queue=qr.specialist_queue, escalated=True
    )


def _sticky(
    ctx: RoutingContext, qr: QueueRules, now: datetime, draft: _Draft, last: PastCall | None
) -> Decision | None:
    if last is None or last.operator_id is None:
        return None
    if qr.sticky_mode is StickyMode.OFF:
        draft.note(R.STICKY_OFF, "sticky routing is off for this queue")
        return None
    if _blocked(ctx, last.operator_id, draft):
        return None
    known = ctx.operators.get(last.operator_id)
    if ctx.flags.abusive and known is not None and known.tier is Tier.SPECIALIST:
        # specialist continuity already refused them; sticky must not let them in sideways
        draft.note(R.ABUSIVE_PROTECTED, _ABUSIVE_NO_SPECIALIST)
        return None
    strict = qr.sticky_mode is StickyMode.STRICT
    fallback = (qr.strict_fallback_queue or draft.queue) if strict else draft.queue
    op = _usable(ctx, last.operator_id)
    if op is None:
        code, text = R.STICKY_OPERATOR_INACTIVE, f"last operator {last.operator_id} is not active"
    else:
        decision = _to_target(
            ctx, qr, draft, op, action=Action.OPERATOR,
            available=(R.STICKY_AVAILABLE, f"spoke with {op.name} {_ago(last, now)}"),
            busy=(R.STICKY_BUSY_WAIT, f"spoke with {op.name} {_ago(last, now)}, who is busy"),
            fallback_queue=fallback,
            announcement=qr.announcement,
        )
        if decision is not None:
            return decision
        code = R.STICKY_UNAVAILABLE
        text = f"last operator {op.name} is {ctx.state_of(op.id)}"
    if strict:
        draft.note(code, text)
        return draft.finish(
            Action.QUEUE, R.STICKY_STRICT_FALLBACK, f"strict mode: {fallback}", queue=fallback
        )
    return draft.finish(Action.QUEUE, code, f"{text}: pool")


def _ago(call: PastCall, now: datetime) -> str:
    """Relative time: operators and callers live in time zones the core does not know."""
    minutes = max(0, int((now - call.last_moment).total_seconds() // 60))
    if minutes < 90:
        return f"{minutes} min ago"
    return f"{minutes // 60} h {minutes % 60} min ago"
