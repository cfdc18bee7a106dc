"""An in-memory replica of what routing reads about callers: the ``CallerSnapshot`` of any
caller, answered without a database round trip.

Why: reading a caller's history from PostgreSQL is the largest part of a routed call's
cost (a statement per call or per few calls: ~100 us of the daemon's CPU, 100-200 us of
the database's, and at load a wait for a free statement slot; docs/performance.md). The
daemon can instead hold the little that routing looks at (calls of the last day or so,
today's escalations, flags, opt-outs, current tickets) and keep it current from the
database's change notifications (``callrouter.store.pg_replica``).

This module is the state and the questions, with no I/O: rows go in (``put_call``,
``drop_call``, ``put_escalation``, ``set_caller``...), ``snapshot`` answers exactly what
``store.snapshot.load_snapshot`` answers for the same rows (a test compares the two on
random histories). Its one invariant is the **horizon**: every row whose time is at or
after ``horizon`` is here. A question that reaches before the horizon (a lookback longer
than the window kept, a ``now`` far in the past) cannot be answered from memory:
``answerable`` says so and the caller asks the database instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from callrouter.domain.model import (
    CallerFlags,
    Outcome,
    PastCall,
    Ticket,
    TicketStatus,
)
from callrouter.service.ports import (
    ACTIVE_STATUSES,
    RECENT_CALLS_LIMIT,
    REOPEN_WINDOW,
    CallerSnapshot,
)

_ACTIVE = frozenset(TicketStatus(s) for s in ACTIVE_STATUSES)
_DAY = timedelta(days=1)
_OUTCOMES = {o.value: o for o in Outcome}
_intern = sys.intern


def utc_day_start(now: datetime) -> datetime:
    """The start of ``now``'s UTC calendar day, in UTC (``now`` is timezone-aware; the
    local clock's day would be wrong on a daylight-saving change day)."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(slots=True)
class _Caller:
    calls: dict[str, PastCall] = field(default_factory=dict)
    escalations: dict[str, datetime] = field(default_factory=dict)  # decision id -> at
    flags: CallerFlags | None = None  # the caller_flags row, opted_out_operators empty
    opted_out: frozenset[str] = frozenset()
    tickets: tuple[Ticket, ...] = ()  # open, pending, or closed at/after the horizon

    def empty(self) -> bool:
        return not (self.calls or self.escalations or self.flags is not None
                    or self.opted_out or self.tickets)


def past_call(row: tuple[object, ...] | list[object]) -> tuple[str, PastCall]:
    """(caller number, PastCall) from a row of ``CALL_COLUMNS`` order: id, caller_number,
    queue, started_at, ended_at, operator_id, outcome, talk_seconds, resolved, escalated,
    operator_talk_seconds."""
    (id_, number, queue, started, ended, operator, outcome, talk, resolved, escalated,
     own_talk) = row
    return str(number), PastCall(
        id=str(id_), queue=_intern(str(queue)) if queue else "",
        started_at=started,  # type: ignore[arg-type]
        ended_at=ended,  # type: ignore[arg-type]
        operator_id=_intern(str(operator)) if operator is not None else None,
        outcome=_OUTCOMES[str(outcome)], talk_seconds=int(talk or 0),  # type: ignore[call-overload]
        resolved=resolved,  # type: ignore[arg-type]
        escalated=bool(escalated),
        operator_talk_seconds=own_talk,  # type: ignore[arg-type]
    )


class CallerStates:
    """The replica's state. Not thread-safe; one event loop owns it."""

    def __init__(self, horizon: datetime) -> None:
        self._callers: dict[str, _Caller] = {}
        self._call_owner: dict[str, str] = {}  # call id -> caller number
        self.horizon = horizon

    # -- questions ----------------------------------------------------------------------

    def answerable(self, now: datetime, lookback_seconds: int) -> bool:
        """Whether every row ``snapshot(now, lookback)`` looks at is at/after the horizon."""
        earliest = min(now - timedelta(seconds=lookback_seconds), utc_day_start(now),
                       now - REOPEN_WINDOW)
        return earliest >= self.horizon

    def snapshot(self, number: str, now: datetime, lookback_seconds: int) -> CallerSnapshot:
        """The caller's snapshot as ``load_snapshot`` reads it from the same rows. Only
        meaningful when ``answerable(now, lookback_seconds)``."""
        c = self._callers.get(number)
        if c is None:
            return _EMPTY
        since = now - timedelta(seconds=lookback_seconds)
        recent: tuple[PastCall, ...] = ()
        if c.calls:
            within = [p for p in c.calls.values() if since <= p.started_at <= now]
            within.sort(key=_newest_first, reverse=True)
            recent = tuple(within[:RECENT_CALLS_LIMIT])
        escalations = 0
        if c.escalations:
            day = utc_day_start(now)
            end = day + _DAY
            escalations = sum(1 for at in c.escalations.values() if day <= at < end)
        ticket = None
        if c.tickets:
            closed_since = now - REOPEN_WINDOW
            current = [t for t in c.tickets if t.status in _ACTIVE or (
                t.status is TicketStatus.CLOSED and t.updated_at is not None
                and t.updated_at >= closed_since)]
            if current:
                ticket = max(current, key=_ticket_order)
        flags = c.flags
        if flags is None:
            flags = CallerFlags(opted_out_operators=c.opted_out)
        elif c.opted_out:
            flags = CallerFlags(
                vip_class=flags.vip_class, abusive=flags.abusive,
                abusive_flagged_by=flags.abusive_flagged_by,
                abusive_flagged_at=flags.abusive_flagged_at, opted_out_operators=c.opted_out,
                notes=flags.notes, name=flags.name,
            )
        return CallerSnapshot(recent_calls=recent, open_ticket=ticket, flags=flags,
                              escalations_today=escalations)

    # -- changes ------------------------------------------------------------------------

    def put_call(self, number: str, call: PastCall) -> None:
        """A call row as it is now (inserted or updated); its caller may have changed."""
        owner = self._call_owner.get(call.id)
        if owner is not None and owner != number:
            self.drop_call(call.id)
        if call.started_at < self.horizon:
            # older than what is kept: a question never reaches it (and pruning would drop it)
            if owner == number:
                self.drop_call(call.id)
            return
        self._caller(number).calls[call.id] = call
        self._call_owner[call.id] = number

    def drop_call(self, call_id: str) -> None:
        number = self._call_owner.pop(call_id, None)
        if number is None:
            return
        c = self._callers.get(number)
        if c is not None:
            c.calls.pop(call_id, None)
            self._forget_if_empty(number, c)

    def put_escalation(self, number: str, decision_id: str, at: datetime) -> None:
        if at >= self.horizon:
            self._caller(number).escalations[decision_id] = at

    def drop_escalation(self, number: str, decision_id: str) -> None:
        c = self._callers.get(number)
        if c is not None and c.escalations.pop(decision_id, None) is not None:
            self._forget_if_empty(number, c)

    def set_caller(self, number: str, *, flags: CallerFlags | None,
                   opted_out: Iterable[str], tickets: Iterable[Ticket]) -> None:
        """A caller's flags row (None: none), opt-outs and current tickets, as read now."""
        c = self._caller(number)
        c.flags = flags
        c.opted_out = frozenset(opted_out)
        c.tickets = tuple(tickets)
        self._forget_if_empty(number, c)

    def prune(self, horizon: datetime) -> int:
        """Move the horizon forward to ``horizon`` and drop what fell behind it; returns
        the number of calls dropped."""
        if horizon <= self.horizon:
            return 0
        self.horizon = horizon
        dropped = 0
        for number in list(self._callers):
            c = self._callers[number]
            old = [i for i, p in c.calls.items() if p.started_at < horizon]
            for i in old:
                del c.calls[i]
                self._call_owner.pop(i, None)
            dropped += len(old)
            for i in [i for i, at in c.escalations.items() if at < horizon]:
                del c.escalations[i]
            if c.tickets:
                c.tickets = tuple(t for t in c.tickets if t.status in _ACTIVE or (
                    t.updated_at is not None and t.updated_at >= horizon))
            self._forget_if_empty(number, c)
        return dropped

    # -- sizes (metrics, status) ---------------------------------------------------------

    @property
    def callers(self) -> int:
        return len(self._callers)

    @property
    def calls(self) -> int:
        return len(self._call_owner)

    # -- internals ----------------------------------------------------------------------

    def _caller(self, number: str) -> _Caller:
        c = self._callers.get(number)
        if c is None:
            c = self._callers[number] = _Caller()
        return c

    def _forget_if_empty(self, number: str, c: _Caller) -> None:
        if c.empty():
            self._callers.pop(number, None)


_EMPTY = CallerSnapshot()


def _newest_first(p: PastCall) -> tuple[datetime, str]:
    return p.started_at, p.id


def _ticket_order(t: Ticket) -> tuple[datetime, str]:
    return t.created_at, t.id  # type: ignore[return-value]  # NOT NULL in the table
