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
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from callrouter.domain.model import (
    CallerFlags,
    Outcome,
    PastCall,
    Ticket,
    TicketStatus,
    Tier,
)
from callrouter.service.ports import (
    ACTIVE_STATUSES,
    RECENT_CALLS_LIMIT,
    REOPEN_WINDOW,
    CallerSnapshot,
)

_ACTIVE = frozenset(ACTIVE_STATUSES)
_CLOSED = TicketStatus.CLOSED.value
_NO_FLAGS = CallerFlags()
_DAY = timedelta(days=1)
_OUTCOMES = {o.value: o for o in Outcome}
_intern = sys.intern


def utc_day_start(now: datetime) -> datetime:
    """The start of ``now``'s UTC calendar day, in UTC (``now`` is timezone-aware; the
    local clock's day would be wrong on a daylight-saving change day)."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


# What is held per caller is one flat tuple of atomic values (str, int, bool, None,
# datetime). The garbage collector stops tracking such a tuple at the first collection it
# meets, so a replica of a day of calls adds nothing to what later collections walk. Held
# as PastCall objects, ~150,000 calls cost a 17 ms full collection on the bench; held as
# nested tuples, each level took one more collection to drop, and the outer ones reached
# the oldest generation still tracked. The domain objects are built when a question is
# answered, for the few rows it returns.
#
# call: (id, queue, started_at, ended_at, operator_id, outcome, talk_seconds, resolved,
#        escalated, operator_talk_seconds)
_Call = tuple[Any, ...]
_CALL = 10
_Escalation = tuple[Any, ...]  # (decision id, decided_at)
_ESCALATION = 2
# flags: (vip_class, abusive, abusive_flagged_by, abusive_flagged_at, notes, name)
_Flags = tuple[Any, ...]
_FLAGS = 6
# ticket: (id, caller_number, subject, status, tier, assignee_id, external_ref,
#          created_at, updated_at)
_Ticket = tuple[Any, ...]
_TICKET = 9


class _Entry:
    """A caller's rows, unpacked from / packed into their flat tuple:
    (number of calls, of escalations, of flag rows (0 or 1), of opted-out operators, of
    tickets, then the fields of each in that order)."""

    __slots__ = ("calls", "escalations", "flags", "opted", "tickets")

    def __init__(self, flat: tuple[Any, ...] | None) -> None:
        if flat is None:
            self.calls: list[_Call] = []
            self.escalations: list[_Escalation] = []
            self.flags: _Flags | None = None
            self.opted: tuple[str, ...] = ()
            self.tickets: list[_Ticket] = []
            return
        nc, ne, nf, no, nt = flat[:5]
        i = 5
        self.calls = [flat[j:j + _CALL] for j in range(i, i + nc * _CALL, _CALL)]
        i += nc * _CALL
        self.escalations = [flat[j:j + _ESCALATION]
                            for j in range(i, i + ne * _ESCALATION, _ESCALATION)]
        i += ne * _ESCALATION
        self.flags = flat[i:i + _FLAGS] if nf else None
        i += nf * _FLAGS
        self.opted = flat[i:i + no]
        i += no
        self.tickets = [flat[j:j + _TICKET] for j in range(i, i + nt * _TICKET, _TICKET)]

    def pack(self) -> tuple[Any, ...] | None:
        """The flat tuple, or None when nothing is held."""
        if not (self.calls or self.escalations or self.flags is not None or self.opted
                or self.tickets):
            return None
        out: list[Any] = [len(self.calls), len(self.escalations),
                          0 if self.flags is None else 1, len(self.opted), len(self.tickets)]
        for c in self.calls:
            out += c
        for e in self.escalations:
            out += e
        if self.flags is not None:
            out += self.flags
        out += self.opted
        for t in self.tickets:
            out += t
        return tuple(out)


def _holds_older(flat: tuple[Any, ...], horizon: datetime) -> bool:
    """Whether a caller's flat tuple holds a call, escalation or closed ticket from before
    ``horizon`` (read in place: pruning skips most callers without allocating)."""
    nc, ne, nf, no, nt = flat[:5]
    i = 5
    for j in range(i + 2, i + nc * _CALL, _CALL):
        if flat[j] < horizon:
            return True
    i += nc * _CALL
    for j in range(i + 1, i + ne * _ESCALATION, _ESCALATION):
        if flat[j] < horizon:
            return True
    i += ne * _ESCALATION + nf * _FLAGS + no
    for j in range(i, i + nt * _TICKET, _TICKET):
        updated = flat[j + 8]
        if flat[j + 3] not in _ACTIVE and (updated is None or updated < horizon):
            return True
    return False


def call_row(row: tuple[object, ...] | list[object]) -> tuple[str, _Call]:
    """(caller number, the call as held) from a calls row in this order: id, caller_number,
    queue, started_at, ended_at, operator_id, outcome, talk_seconds, resolved, escalated,
    operator_talk_seconds (``pg_replica``'s load and its notifications)."""
    (id_, number, queue, started, ended, operator, outcome, talk, resolved, escalated,
     own_talk) = row
    return str(number), (
        str(id_), _intern(str(queue)) if queue else "", started, ended,
        _intern(str(operator)) if operator is not None else None, _intern(str(outcome)),
        int(talk or 0), resolved, bool(escalated), own_talk,  # type: ignore[call-overload]
    )


def _held_call(p: PastCall) -> _Call:
    return (p.id, p.queue, p.started_at, p.ended_at, p.operator_id, p.outcome.value,
            p.talk_seconds, p.resolved, p.escalated, p.operator_talk_seconds)


# The decoders of a caller snapshot's rows, shared by every source of one: the replica's
# held tuples and the database's rows (``pg_snapshot``, ``pg_replica``) have these orders.


def past_call_of(c: Any) -> PastCall:
    """(id, queue, started_at, ended_at, operator_id, outcome, talk_seconds, resolved,
    escalated, operator_talk_seconds) as a PastCall."""
    # _OUTCOMES, not Outcome(value): ~4 us a row against a tenth of that
    return PastCall(id=c[0], queue=c[1] or "", started_at=c[2], ended_at=c[3],
                    operator_id=c[4], outcome=_OUTCOMES[c[5]], talk_seconds=c[6],
                    resolved=c[7], escalated=c[8], operator_talk_seconds=c[9])


def flags_of(f: Any, opted_out: frozenset[str]) -> CallerFlags:
    """(vip_class, abusive, abusive_flagged_by, abusive_flagged_at, notes, name) and the
    caller's opt-outs as CallerFlags."""
    return CallerFlags(vip_class=f[0], abusive=bool(f[1]), abusive_flagged_by=f[2],
                       abusive_flagged_at=f[3], opted_out_operators=opted_out,
                       notes=f[4] or "", name=f[5])


def ticket_of(t: Any) -> Ticket:
    """(id, caller_number, subject, status, tier, assignee_id, external_ref, created_at,
    updated_at) as a Ticket."""
    return Ticket(id=t[0], caller_number=t[1], subject=t[2], status=TicketStatus(t[3]),
                  tier=Tier(t[4]), assignee_id=t[5], external_ref=t[6], created_at=t[7],
                  updated_at=t[8])


def _held_ticket(t: Ticket) -> _Ticket:
    return (t.id, t.caller_number, t.subject, t.status.value, t.tier.value, t.assignee_id,
            t.external_ref, t.created_at, t.updated_at)


def _ticket_current(t: _Ticket, closed_since: datetime) -> bool:
    return t[3] in _ACTIVE or (t[3] == _CLOSED and t[8] is not None and t[8] >= closed_since)


class CallerStates:
    """The replica's state. Not thread-safe; one event loop owns it."""

    def __init__(self, horizon: datetime) -> None:
        self._callers: dict[str, tuple[Any, ...]] = {}  # number -> flat tuple (_Entry)
        self._call_owner: dict[str, str] = {}  # call id -> caller number (untracked: str)
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
        flat = self._callers.get(number)
        if flat is None:
            return _EMPTY
        # read in place: one call's fields are sliced out only when it is in the window
        nc, ne, nf, no, nt = flat[:5]
        i = 5
        recent: tuple[PastCall, ...] = ()
        if nc:
            since = now - timedelta(seconds=lookback_seconds)
            within = [flat[j - 2:j + 8] for j in range(i + 2, i + nc * _CALL, _CALL)
                      if since <= flat[j] <= now]
            if within:
                within.sort(key=_newest_first, reverse=True)
                recent = tuple(past_call_of(c) for c in within[:RECENT_CALLS_LIMIT])
        i += nc * _CALL
        count = 0
        if ne:
            day = utc_day_start(now)
            end = day + _DAY
            count = sum(1 for j in range(i + 1, i + ne * _ESCALATION, _ESCALATION)
                        if day <= flat[j] < end)
        i += ne * _ESCALATION
        f = flat[i:i + _FLAGS] if nf else None
        i += nf * _FLAGS
        opted = flat[i:i + no]
        i += no
        ticket = None
        if nt:
            closed_since = now - REOPEN_WINDOW
            current = [t for t in (flat[j:j + _TICKET] for j in range(i, i + nt * _TICKET,
                                                                          _TICKET))
                       if _ticket_current(t, closed_since)]
            if current:
                ticket = ticket_of(max(current, key=_ticket_order))
        opted_out = frozenset(opted)
        if f is None:
            flags = CallerFlags(opted_out_operators=opted_out) if no else _NO_FLAGS
        else:
            flags = flags_of(f, opted_out)
        return CallerSnapshot(recent_calls=recent, open_ticket=ticket, flags=flags,
                              escalations_today=count)

    # -- changes ------------------------------------------------------------------------

    def put_call(self, number: str, call: PastCall) -> None:
        """A call row as it is now (inserted or updated); its caller may have changed."""
        self.put_call_row(number, _held_call(call))

    def put_call_row(self, number: str, call: _Call) -> None:
        """``put_call`` for a call as ``call_row`` gives it (the notifications' path)."""
        call_id = call[0]
        owner = self._call_owner.get(call_id)
        if owner is not None and owner != number:
            self.drop_call(call_id)
            owner = None
        if call[2] < self.horizon:
            # older than what is kept: a question never reaches it (and pruning would drop it)
            if owner is not None:
                self.drop_call(call_id)
            return
        flat = self._callers.get(number)
        if owner is None and flat is not None:
            # a new call of a known caller (the common change): spliced in place
            nc = flat[0]
            end = 5 + nc * _CALL
            self._callers[number] = (nc + 1, *flat[1:end], *call, *flat[end:])
        else:
            e = _Entry(flat)
            if owner is not None:
                e.calls = [c for c in e.calls if c[0] != call_id]
            e.calls.append(call)
            self._store(number, e)
        self._call_owner[call_id] = number

    def drop_call(self, call_id: str) -> None:
        number = self._call_owner.pop(call_id, None)
        if number is None:
            return
        flat = self._callers.get(number)
        if flat is not None:
            e = _Entry(flat)
            e.calls = [c for c in e.calls if c[0] != call_id]
            self._store(number, e)

    def put_escalation(self, number: str, decision_id: str, at: datetime) -> None:
        if at < self.horizon:
            return
        e = _Entry(self._callers.get(number))
        e.escalations = [x for x in e.escalations if x[0] != decision_id]
        e.escalations.append((decision_id, at))
        self._store(number, e)

    def drop_escalation(self, number: str, decision_id: str) -> None:
        flat = self._callers.get(number)
        if flat is not None:
            e = _Entry(flat)
            e.escalations = [x for x in e.escalations if x[0] != decision_id]
            self._store(number, e)

    def set_caller(self, number: str, *, flags: CallerFlags | None,
                   opted_out: Iterable[str], tickets: Iterable[Ticket]) -> None:
        """A caller's flags row (None: none), opt-outs and current tickets, as read now."""
        e = _Entry(self._callers.get(number))
        e.flags = None if flags is None else (
            flags.vip_class, flags.abusive, flags.abusive_flagged_by, flags.abusive_flagged_at,
            flags.notes, flags.name)
        e.opted = tuple(sorted(set(opted_out)))
        e.tickets = [_held_ticket(t) for t in tickets]
        self._store(number, e)

    def prune(self, horizon: datetime) -> int:
        """Move the horizon forward to ``horizon`` and drop what fell behind it; returns
        the number of calls dropped. (``pruning`` does the same a slice at a time.)"""
        return sum(self.pruning(horizon))

    def pruning(self, horizon: datetime, slice_size: int = 500) -> Iterator[int]:
        """``prune`` in slices: the horizon moves at once (questions never reach behind it,
        so what is not dropped yet is never read), then each step drops what fell behind
        among the next ``slice_size`` callers and yields the calls it dropped. Going
        through 100,000 callers in one go held the event loop ~200 ms."""
        if horizon <= self.horizon:
            return
        self.horizon = horizon
        numbers = tuple(self._callers)
        for first in range(0, len(numbers), slice_size):
            dropped = 0
            for number in numbers[first:first + slice_size]:
                flat = self._callers.get(number)
                if flat is not None and _holds_older(flat, horizon):
                    dropped += self._prune_one(number, flat, horizon)
            yield dropped

    def _prune_one(self, number: str, flat: tuple[Any, ...], horizon: datetime) -> int:
        e = _Entry(flat)
        before = len(e.calls)
        for c in e.calls:
            if c[2] < horizon:
                self._call_owner.pop(c[0], None)
        e.calls = [c for c in e.calls if c[2] >= horizon]
        e.escalations = [x for x in e.escalations if x[1] >= horizon]
        e.tickets = [t for t in e.tickets if t[3] in _ACTIVE or (
            t[8] is not None and t[8] >= horizon)]
        self._store(number, e)
        return before - len(e.calls)

    # -- sizes (metrics, status) ---------------------------------------------------------

    @property
    def callers(self) -> int:
        return len(self._callers)

    @property
    def calls(self) -> int:
        return len(self._call_owner)

    def held(self, number: str) -> tuple[set[str], set[str], set[str]]:
        """The ids of the calls, escalations and tickets held for a caller (tests, tools)."""
        e = _Entry(self._callers.get(number))
        return ({c[0] for c in e.calls}, {x[0] for x in e.escalations},
                {t[0] for t in e.tickets})

    # -- internals ----------------------------------------------------------------------

    def _store(self, number: str, e: _Entry) -> None:
        flat = e.pack()
        if flat is None:
            self._callers.pop(number, None)
        else:
            self._callers[number] = flat


_EMPTY = CallerSnapshot()


def _newest_first(c: _Call) -> tuple[datetime, str]:
    return c[2], c[0]


def _ticket_order(t: _Ticket) -> tuple[datetime, str]:
    return t[7], t[0]  # created_at is NOT NULL in the table
