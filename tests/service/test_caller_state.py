"""CallerStates: the routing-state replica's in-memory rows and its answers (no I/O).

The replica must answer exactly what ``store.snapshot.load_snapshot`` answers for the same
rows, and only questions that reach no row older than its horizon.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from callrouter.domain.model import CallerFlags, Outcome, PastCall, Ticket, TicketStatus, Tier
from callrouter.service.caller_state import CallerStates, call_row, utc_day_start
from callrouter.service.ports import RECENT_CALLS_LIMIT, REOPEN_WINDOW, CallerSnapshot
from callrouter.store.snapshot import utc_day

NOW = datetime(2025, 3, 14, 12, 0, 0, 123456, tzinfo=UTC)
HORIZON = NOW - timedelta(hours=25)
A = "+79123456789"
B = "+79990000000"
HOUR = 3600


def call(id_: str, started: datetime, **kw: object) -> PastCall:
    return PastCall(id=id_, queue="support", started_at=started, **kw)  # type: ignore[arg-type]


def ticket(id_: str, status: TicketStatus, created: datetime, updated: datetime | None = None,
           number: str = A) -> Ticket:
    return Ticket(id=id_, caller_number=number, subject=f"subject {id_}", status=status,
                  tier=Tier.FIRST_LINE, created_at=created, updated_at=updated or created)


def states(horizon: datetime = HORIZON) -> CallerStates:
    return CallerStates(horizon)


# -- horizon and answerable -------------------------------------------------------------


def test_answerable_within_the_horizon() -> None:
    s = states()
    assert s.answerable(NOW, HOUR)
    assert s.answerable(NOW, 24 * HOUR)
    # exactly at the horizon is still held
    assert s.answerable(NOW, 25 * HOUR)


def test_lookback_beyond_the_horizon_is_not_answerable() -> None:
    s = states()
    assert not s.answerable(NOW, 25 * HOUR + 1)
    assert not s.answerable(NOW, 30 * HOUR)


def test_now_far_in_the_past_is_not_answerable() -> None:
    s = states()
    assert not s.answerable(NOW - timedelta(days=3), 60)
    # one microsecond too early for the reopen window
    assert not s.answerable(HORIZON + REOPEN_WINDOW - timedelta(microseconds=1), 60)
    assert s.answerable(HORIZON + REOPEN_WINDOW, 60)


def test_reopen_window_bounds_answerable_even_for_a_short_lookback() -> None:
    # the horizon 23 h back: a 1-minute lookback does not help, the closed-ticket window
    # (24 h) reaches before it
    s = states(NOW - timedelta(hours=23))
    assert not s.answerable(NOW, 60)
    s2 = states(NOW - REOPEN_WINDOW)
    assert s2.answerable(NOW, 60)


def test_start_of_nows_utc_day_before_the_horizon_is_not_answerable() -> None:
    # today's escalations from before the horizon would be missing, whatever the lookback
    # (the reopen window reaches further back still: this term never decides alone)
    now = datetime(2025, 3, 14, 0, 30, tzinfo=UTC)
    s = states(datetime(2025, 3, 14, 0, 10, tzinfo=UTC))
    assert utc_day_start(now) < s.horizon
    for lookback in (0, 60, 15 * 60):
        assert not s.answerable(now, lookback)
    # a day later the day's start and the reopen window are both held
    assert s.answerable(datetime(2025, 3, 15, 0, 10, tzinfo=UTC), 60)
    assert not s.answerable(datetime(2025, 3, 15, 0, 9, tzinfo=UTC), 60)


def test_answerable_in_a_non_utc_timezone_is_the_same_instant() -> None:
    s = states()
    msk = timezone(timedelta(hours=3))
    for lookback in (60, 24 * HOUR, 25 * HOUR, 25 * HOUR + 1):
        assert s.answerable(NOW.astimezone(msk), lookback) == s.answerable(NOW, lookback)


def test_prune_moves_the_horizon_and_answerable_with_it() -> None:
    s = states()
    assert s.answerable(NOW, 25 * HOUR)
    s.prune(NOW - timedelta(hours=24))
    assert s.horizon == NOW - timedelta(hours=24)
    assert not s.answerable(NOW, 25 * HOUR)
    assert s.answerable(NOW, 24 * HOUR)


# -- calls --------------------------------------------------------------------------------


def test_unknown_caller_gives_the_empty_snapshot() -> None:
    s = states()
    s.put_call(B, call("x", NOW - timedelta(minutes=5)))
    assert s.snapshot(A, NOW, HOUR) == CallerSnapshot()


def test_recent_calls_within_the_lookback_newest_first() -> None:
    s = states()
    c1 = call("c1", NOW - timedelta(hours=2))
    c2 = call("c2", NOW - timedelta(minutes=30), operator_id="op1", talk_seconds=40)
    c3 = call("c3", NOW - timedelta(minutes=5), outcome=Outcome.ABANDONED)
    future = call("c4", NOW + timedelta(seconds=1))
    for c in (c1, c3, future, c2):
        s.put_call(A, c)
    assert s.snapshot(A, NOW, HOUR).recent_calls == (c3, c2)
    assert s.snapshot(A, NOW, 3 * HOUR).recent_calls == (c3, c2, c1)
    assert s.snapshot(A, NOW + timedelta(seconds=1), 3 * HOUR).recent_calls == (
        future, c3, c2, c1)


def test_lookback_bounds_are_inclusive() -> None:
    s = states()
    edge = call("edge", NOW - timedelta(seconds=HOUR))
    at_now = call("now", NOW)
    s.put_call(A, edge)
    s.put_call(A, at_now)
    assert s.snapshot(A, NOW, HOUR).recent_calls == (at_now, edge)
    assert s.snapshot(A, NOW, HOUR - 1).recent_calls == (at_now,)


def test_ties_on_started_at_are_ordered_by_id_descending() -> None:
    s = states()
    t = NOW - timedelta(minutes=1)
    calls = [call(i, t) for i in ("0b", "a1", "0a", "ff", "b")]
    for c in calls:
        s.put_call(A, c)
    newer = call("00", NOW)
    s.put_call(A, newer)
    assert [c.id for c in s.snapshot(A, NOW, HOUR).recent_calls] == [
        "00", "ff", "b", "a1", "0b", "0a"]


def test_at_most_the_recent_calls_limit_newest_kept() -> None:
    s = states()
    calls = [call(f"c{i:04d}", NOW - timedelta(seconds=i)) for i in range(RECENT_CALLS_LIMIT + 50)]
    random.Random(7).shuffle(calls)
    for c in calls:
        s.put_call(A, c)
    recent = s.snapshot(A, NOW, HOUR).recent_calls
    assert len(recent) == RECENT_CALLS_LIMIT
    assert [c.id for c in recent] == [f"c{i:04d}" for i in range(RECENT_CALLS_LIMIT)]
    assert s.calls == RECENT_CALLS_LIMIT + 50


def test_put_call_replaces_the_same_call() -> None:
    s = states()
    s.put_call(A, call("x", NOW - timedelta(minutes=3)))
    ended = call("x", NOW - timedelta(minutes=3), ended_at=NOW, outcome=Outcome.ANSWERED,
                 operator_id="op1", talk_seconds=120)
    s.put_call(A, ended)
    assert s.snapshot(A, NOW, HOUR).recent_calls == (ended,)
    assert s.calls == 1


def test_put_call_moves_a_call_to_another_number() -> None:
    s = states()
    s.put_call(A, call("x", NOW - timedelta(minutes=3)))
    s.put_call(A, call("y", NOW - timedelta(minutes=2)))
    moved = call("x", NOW - timedelta(minutes=3), operator_id="op2")
    s.put_call(B, moved)
    assert [c.id for c in s.snapshot(A, NOW, HOUR).recent_calls] == ["y"]
    assert s.snapshot(B, NOW, HOUR).recent_calls == (moved,)
    assert s.calls == 2 and s.callers == 2
    # moving the last call away forgets the caller
    s.put_call(B, call("y", NOW - timedelta(minutes=2)))
    assert s.snapshot(A, NOW, HOUR) == CallerSnapshot()
    assert s.callers == 1 and s.calls == 2


def test_put_call_before_the_horizon_is_not_kept() -> None:
    s = states()
    s.put_call(A, call("old", HORIZON - timedelta(microseconds=1)))
    assert s.calls == 0 and s.callers == 0
    s.put_call(A, call("edge", HORIZON))
    assert s.calls == 1


def test_put_call_moved_before_the_horizon_drops_it() -> None:
    s = states()
    s.put_call(A, call("x", NOW - timedelta(minutes=3)))
    s.put_call(A, call("x", HORIZON - timedelta(hours=1)))
    assert s.calls == 0
    assert s.snapshot(A, NOW, 25 * HOUR) == CallerSnapshot()
    # moved to another caller and before the horizon at once
    s.put_call(A, call("y", NOW - timedelta(minutes=3)))
    s.put_call(B, call("y", HORIZON - timedelta(hours=1)))
    assert s.calls == 0 and s.callers == 0


def test_drop_call() -> None:
    s = states()
    s.put_call(A, call("x", NOW - timedelta(minutes=3)))
    s.put_call(A, call("y", NOW - timedelta(minutes=2)))
    s.drop_call("x")
    assert [c.id for c in s.snapshot(A, NOW, HOUR).recent_calls] == ["y"]
    s.drop_call("unknown")  # a no-op
    s.drop_call("x")  # twice: a no-op
    assert s.calls == 1
    s.drop_call("y")
    assert s.calls == 0 and s.callers == 0
    assert s.snapshot(A, NOW, HOUR) == CallerSnapshot()


def test_drop_call_keeps_a_caller_with_other_state() -> None:
    s = states()
    s.put_call(A, call("x", NOW - timedelta(minutes=3)))
    s.set_caller(A, flags=CallerFlags(vip_class="gold"), opted_out=(), tickets=())
    s.drop_call("x")
    assert s.callers == 1
    assert s.snapshot(A, NOW, HOUR) == CallerSnapshot(flags=CallerFlags(vip_class="gold"))


# -- escalations ----------------------------------------------------------------------


def test_escalations_count_only_in_nows_utc_day() -> None:
    s = states(NOW - timedelta(days=2))
    day = datetime(2025, 3, 14, tzinfo=UTC)
    s.put_escalation(A, "yesterday-last", day - timedelta(microseconds=1))
    s.put_escalation(A, "yesterday", day - timedelta(hours=5))
    s.put_escalation(A, "first", day)
    s.put_escalation(A, "morning", day + timedelta(hours=8))
    s.put_escalation(A, "later-today", NOW + timedelta(hours=3))  # after now, same day
    s.put_escalation(A, "tomorrow", day + timedelta(days=1))
    assert s.snapshot(A, NOW, HOUR).escalations_today == 3
    # yesterday's view
    assert s.answerable(day - timedelta(minutes=1), 60)
    assert s.snapshot(A, day - timedelta(minutes=1), 60).escalations_today == 2


def test_escalations_with_now_in_a_non_utc_timezone() -> None:
    s = states()
    day = datetime(2025, 3, 14, tzinfo=UTC)
    s.put_escalation(A, "y", day - timedelta(hours=1))  # 2025-03-14 02:00 in +03:00
    s.put_escalation(A, "t1", day + timedelta(hours=1))
    s.put_escalation(A, "t2", day + timedelta(hours=22))  # 2025-03-15 01:00 in +03:00
    msk = timezone(timedelta(hours=3))
    now = datetime(2025, 3, 14, 23, 30, tzinfo=UTC).astimezone(msk)  # 15 March local
    assert now.date().day == 15
    assert s.snapshot(A, now, 60).escalations_today == 2
    west = timezone(timedelta(hours=-5))
    now = datetime(2025, 3, 14, 2, 0, tzinfo=UTC).astimezone(west)  # 13 March local
    assert now.date().day == 13
    assert s.snapshot(A, now, 60).escalations_today == 2


@pytest.mark.parametrize("offset_minutes", [-600, -300, -1, 0, 1, 180, 330, 765, 840])
def test_utc_day_start_equals_load_snapshots_day_for_fixed_offsets(offset_minutes: int) -> None:
    tz = timezone(timedelta(minutes=offset_minutes))
    rnd = random.Random(offset_minutes)
    for _ in range(200):
        instant = NOW + timedelta(seconds=rnd.randrange(-3 * 86400, 3 * 86400))
        now = instant.astimezone(tz)
        assert utc_day_start(now) == utc_day(now)[0]


def test_escalations_on_a_dst_change_day_in_a_zoneinfo_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime(2025, 3, 30, 12, 0, tzinfo=berlin)  # CEST, 10:00 UTC
    s = states(now - timedelta(hours=25))
    s.put_escalation(A, "early", datetime(2025, 3, 30, 0, 30, tzinfo=UTC))
    s.put_escalation(A, "late", datetime(2025, 3, 30, 9, 0, tzinfo=UTC))
    assert utc_day_start(now) == utc_day(now)[0]
    assert s.snapshot(A, now, 60).escalations_today == 2


def test_escalation_before_the_horizon_is_not_kept_and_drop_escalation() -> None:
    s = states()
    s.put_escalation(A, "old", HORIZON - timedelta(seconds=1))
    assert s.callers == 0
    s.put_escalation(A, "e1", NOW - timedelta(minutes=1))
    s.put_escalation(A, "e2", NOW - timedelta(minutes=2))
    s.put_escalation(A, "e1", NOW - timedelta(minutes=1))  # the same decision again
    assert s.snapshot(A, NOW, 60).escalations_today == 2
    s.drop_escalation(A, "e1")
    s.drop_escalation(B, "e2")  # another caller's: no effect
    s.drop_escalation(A, "nope")
    assert s.snapshot(A, NOW, 60).escalations_today == 1
    s.drop_escalation(A, "e2")
    assert s.callers == 0


# -- flags, opt-outs, tickets ---------------------------------------------------------


def test_flags_without_opt_outs() -> None:
    s = states()
    flags = CallerFlags(vip_class="gold", abusive=True, abusive_flagged_by="sup",
                        abusive_flagged_at=NOW - timedelta(days=3), notes="n", name="Ann")
    s.set_caller(A, flags=flags, opted_out=(), tickets=())
    assert s.snapshot(A, NOW, HOUR) == CallerSnapshot(flags=flags)


def test_opt_outs_without_a_flags_row() -> None:
    s = states()
    s.set_caller(A, flags=None, opted_out=["op1", "op2"], tickets=())
    assert s.snapshot(A, NOW, HOUR) == CallerSnapshot(
        flags=CallerFlags(opted_out_operators=frozenset({"op1", "op2"})))


def test_flags_with_opt_outs_merged() -> None:
    s = states()
    flags = CallerFlags(vip_class="gold", abusive=True, abusive_flagged_by="sup",
                        abusive_flagged_at=NOW - timedelta(days=3), notes="n", name="Ann")
    s.set_caller(A, flags=flags, opted_out=("op1",), tickets=())
    assert s.snapshot(A, NOW, HOUR).flags == CallerFlags(
        vip_class="gold", abusive=True, abusive_flagged_by="sup",
        abusive_flagged_at=NOW - timedelta(days=3), opted_out_operators=frozenset({"op1"}),
        notes="n", name="Ann")


def test_set_caller_replaces_and_an_empty_caller_is_forgotten() -> None:
    s = states()
    s.set_caller(A, flags=CallerFlags(vip_class="gold"), opted_out=("op1",),
                 tickets=(ticket("t1", TicketStatus.OPEN, NOW - timedelta(days=2)),))
    assert s.callers == 1
    s.set_caller(A, flags=None, opted_out=(), tickets=())
    assert s.callers == 0
    assert s.snapshot(A, NOW, HOUR) == CallerSnapshot()


def test_ticket_choice_newest_current_by_created_at_then_id() -> None:
    s = states()
    old_open = ticket("t1", TicketStatus.OPEN, NOW - timedelta(days=30))
    pending = ticket("t2", TicketStatus.PENDING, NOW - timedelta(days=5))
    closed_recent = ticket("t3", TicketStatus.CLOSED, NOW - timedelta(days=2),
                           NOW - timedelta(hours=2))
    closed_old = ticket("t4", TicketStatus.CLOSED, NOW - timedelta(days=1),
                        NOW - REOPEN_WINDOW - timedelta(microseconds=1))
    s.set_caller(A, flags=None, opted_out=(), tickets=(old_open, closed_old, pending))
    # closed_old is newer but no longer current
    assert s.snapshot(A, NOW, HOUR).open_ticket == pending
    s.set_caller(A, flags=None, opted_out=(), tickets=(old_open, pending, closed_recent,
                                                       closed_old))
    assert s.snapshot(A, NOW, HOUR).open_ticket == closed_recent
    # an hour later than the reopen window, the closed one is not current any more
    later = closed_recent.updated_at + REOPEN_WINDOW + timedelta(microseconds=1)
    s2 = states(later - timedelta(hours=25))
    s2.set_caller(A, flags=None, opted_out=(), tickets=(old_open, pending, closed_recent))
    assert s2.snapshot(A, later, HOUR).open_ticket == pending


def test_closed_ticket_exactly_at_the_reopen_window_is_current() -> None:
    s = states()
    t = ticket("t", TicketStatus.CLOSED, NOW - timedelta(days=3), NOW - REOPEN_WINDOW)
    s.set_caller(A, flags=None, opted_out=(), tickets=(t,))
    assert s.snapshot(A, NOW, HOUR).open_ticket == t


def test_ticket_ties_on_created_at_broken_by_id() -> None:
    s = states()
    at = NOW - timedelta(days=1)
    ts = [ticket(i, TicketStatus.OPEN, at) for i in ("t-a", "t-c", "t-b")]
    s.set_caller(A, flags=None, opted_out=(), tickets=ts)
    assert s.snapshot(A, NOW, HOUR).open_ticket == ts[1]


def test_only_closed_old_tickets_give_no_ticket() -> None:
    s = states()
    t = ticket("t", TicketStatus.CLOSED, NOW - timedelta(days=3), NOW - timedelta(hours=25))
    s.set_caller(A, flags=None, opted_out=(), tickets=(t,))
    snap = s.snapshot(A, NOW, HOUR)
    assert snap.open_ticket is None
    assert snap == CallerSnapshot()


# -- prune ---------------------------------------------------------------------------


def test_prune_drops_old_calls_escalations_and_closed_tickets() -> None:
    s = states()
    s.put_call(A, call("old", NOW - timedelta(hours=24, minutes=30)))
    s.put_call(A, call("new", NOW - timedelta(hours=1)))
    s.put_call(B, call("b-old", NOW - timedelta(hours=24, minutes=10)))
    s.put_escalation(A, "e-old", NOW - timedelta(hours=24, minutes=30))
    s.put_escalation(A, "e-new", NOW - timedelta(hours=1))
    s.put_escalation(B, "b-e-old", NOW - timedelta(hours=24, minutes=30))
    active = ticket("open", TicketStatus.OPEN, NOW - timedelta(days=40))
    closed_new = ticket("c-new", TicketStatus.CLOSED, NOW - timedelta(days=3),
                        NOW - timedelta(hours=2))
    closed_old = ticket("c-old", TicketStatus.CLOSED, NOW - timedelta(days=3),
                        NOW - timedelta(hours=24, minutes=30))
    s.set_caller(A, flags=None, opted_out=(), tickets=(active, closed_new, closed_old))
    assert s.calls == 3 and s.callers == 2

    assert s.prune(NOW - timedelta(hours=24)) == 2
    assert s.horizon == NOW - timedelta(hours=24)
    assert s.calls == 1
    assert s.callers == 1  # B had only old rows
    assert s.snapshot(B, NOW, HOUR) == CallerSnapshot()
    calls, escalations, tickets = s.held(A)
    assert calls == {"new"}
    assert escalations == {"e-new"}
    assert tickets == {"open", "c-new"}
    # the dropped call id is forgotten: dropping or moving it is harmless
    s.drop_call("old")
    s.put_call(B, call("old", NOW - timedelta(hours=24, minutes=30)))
    assert s.calls == 1


def test_prune_backwards_is_a_no_op() -> None:
    s = states()
    s.put_call(A, call("x", HORIZON + timedelta(minutes=1)))
    assert s.prune(HORIZON - timedelta(hours=1)) == 0
    assert s.prune(HORIZON) == 0
    assert s.horizon == HORIZON
    assert s.calls == 1


def test_prune_keeps_a_caller_with_flags_only() -> None:
    s = states()
    s.set_caller(A, flags=CallerFlags(abusive=True), opted_out=(), tickets=())
    s.put_call(A, call("x", HORIZON + timedelta(minutes=1)))
    assert s.prune(HORIZON + timedelta(hours=1)) == 1
    assert s.callers == 1
    assert s.snapshot(A, NOW, HOUR) == CallerSnapshot(flags=CallerFlags(abusive=True))


# -- a calls row, as the replica's load and notifications give it --------------------


def test_a_calls_row_answers_as_its_past_call() -> None:
    started = NOW - timedelta(minutes=5)
    s = states()
    s.put_call_row(*call_row(("id1", A, None, started, None, None, "in_progress", None,
                              None, False, None)))
    s.put_call_row(*call_row(("id2", B, "sales", started, NOW, "op1", "answered", 42, True,
                              True, 30)))
    assert s.snapshot(A, NOW, HOUR).recent_calls == (PastCall(
        id="id1", queue="", started_at=started, ended_at=None, operator_id=None,
        outcome=Outcome.IN_PROGRESS, talk_seconds=0, resolved=None, escalated=False,
        operator_talk_seconds=None),)
    assert s.snapshot(B, NOW, HOUR).recent_calls == (PastCall(
        id="id2", queue="sales", started_at=started, ended_at=NOW, operator_id="op1",
        outcome=Outcome.ANSWERED, talk_seconds=42, resolved=True, escalated=True,
        operator_talk_seconds=30),)


# -- against a plain reference on random histories ---------------------------------------


def _reference(calls: dict[str, tuple[str, PastCall]], escalations: dict[str, tuple[str, datetime]],
               flags: dict[str, CallerFlags], opted: dict[str, set[str]],
               tickets: dict[str, list[Ticket]], number: str, now: datetime,
               lookback: int) -> CallerSnapshot:
    since = now - timedelta(seconds=lookback)
    recent = sorted((p for n, p in calls.values() if n == number and since <= p.started_at <= now),
                    key=lambda p: (p.started_at, p.id), reverse=True)[:RECENT_CALLS_LIMIT]
    day, end = utc_day(now)
    esc = sum(1 for n, at in escalations.values() if n == number and day <= at < end)
    current = [t for t in tickets.get(number, []) if t.status != TicketStatus.CLOSED or (
        t.updated_at is not None and t.updated_at >= now - REOPEN_WINDOW)]
    tk = max(current, key=lambda t: (t.created_at, t.id)) if current else None
    f = flags.get(number)
    o = frozenset(opted.get(number, ()))
    if f is None:
        fl = CallerFlags(opted_out_operators=o)
    else:
        fl = CallerFlags(vip_class=f.vip_class, abusive=f.abusive,
                         abusive_flagged_by=f.abusive_flagged_by,
                         abusive_flagged_at=f.abusive_flagged_at, opted_out_operators=o,
                         notes=f.notes, name=f.name)
    return CallerSnapshot(recent_calls=tuple(recent), open_ticket=tk, flags=fl,
                          escalations_today=esc)


def test_random_histories_match_a_plain_reference() -> None:
    rnd = random.Random(20250314)
    numbers = [f"+7900000{i:04d}" for i in range(12)]
    s = states()
    calls: dict[str, tuple[str, PastCall]] = {}
    escalations: dict[str, tuple[str, datetime]] = {}
    flags: dict[str, CallerFlags] = {}
    opted: dict[str, set[str]] = {}
    tickets: dict[str, list[Ticket]] = {}
    base_times = [NOW - timedelta(seconds=rnd.randrange(0, 25 * 3600)) for _ in range(30)]

    def when() -> datetime:
        # some ties, everything at/after the horizon
        return rnd.choice(base_times) if rnd.random() < 0.3 else (
            HORIZON + timedelta(seconds=rnd.randrange(0, 26 * 3600)))

    for step in range(1500):
        op = rnd.random()
        number = rnd.choice(numbers)
        if op < 0.45:
            id_ = f"c{rnd.randrange(300):03d}"
            pc = PastCall(id=id_, queue=rnd.choice(["", "support", "sales"]), started_at=when(),
                          operator_id=rnd.choice([None, "op1", "op2"]),
                          outcome=rnd.choice(list(Outcome)), talk_seconds=rnd.randrange(100))
            s.put_call(number, pc)
            calls[id_] = (number, pc)
        elif op < 0.55:
            id_ = f"c{rnd.randrange(300):03d}"
            s.drop_call(id_)
            calls.pop(id_, None)
        elif op < 0.75:
            id_ = f"d{rnd.randrange(200):03d}"
            if id_ in escalations:  # the trigger sends e- with the old number first
                s.drop_escalation(escalations[id_][0], id_)
            at = when()
            s.put_escalation(number, id_, at)
            escalations[id_] = (number, at)
        elif op < 0.8:
            id_ = f"d{rnd.randrange(200):03d}"
            if id_ in escalations:
                s.drop_escalation(escalations.pop(id_)[0], id_)
        else:
            f = rnd.choice([None, CallerFlags(vip_class=rnd.choice([None, "gold"]),
                                              abusive=rnd.random() < 0.3,
                                              notes=f"n{step}")])
            o = set(rnd.sample(["op1", "op2", "op3"], rnd.randrange(3)))
            ts = [ticket(f"t{step}-{k}", rnd.choice(list(TicketStatus)), when() - timedelta(days=1),
                         when(), number) for k in range(rnd.randrange(3))]
            # what the database read gives: active, or closed at/after the horizon
            s.set_caller(number, flags=f, opted_out=o, tickets=ts)
            if f is None:
                flags.pop(number, None)
            else:
                flags[number] = f
            opted[number] = o
            tickets[number] = ts
        if step % 100 == 99:
            for n in numbers:
                for now, lookback in ((NOW, HOUR), (NOW, 24 * HOUR), (NOW, 25 * HOUR),
                                      (NOW + timedelta(hours=1), 26 * HOUR),
                                      (NOW - timedelta(hours=1), 60)):
                    assert s.answerable(now, lookback)
                    assert s.snapshot(n, now, lookback) == _reference(
                        calls, escalations, flags, opted, tickets, n, now, lookback), (n, now)
    assert s.calls == len(calls)


def test_held_rows_are_left_alone_by_the_garbage_collector() -> None:
    """A day of calls in memory must not lengthen full collections: what is held is plain
    tuples of atomic values, which the collector stops tracking at its first pass."""
    import gc

    s = states()
    for i in range(2000):
        s.put_call(f"+7912{i:07d}", call(f"c{i}", NOW - timedelta(minutes=i % 600),
                                        operator_id="op1", outcome=Outcome.ANSWERED))
        s.put_escalation(f"+7912{i:07d}", f"e{i}", NOW - timedelta(minutes=1))
    s.set_caller(A, flags=CallerFlags(vip_class="gold"), opted_out=("op1",),
                 tickets=(ticket("t1", TicketStatus.OPEN, NOW),))
    gc.collect()  # one pass: each caller's rows are one flat tuple of atomic values
    tracked = [e for e in s._callers.values() if gc.is_tracked(e)]
    assert tracked == []
    assert s.snapshot(A, NOW, HOUR).flags.vip_class == "gold"


def test_pruning_goes_a_slice_at_a_time_and_answers_meanwhile() -> None:
    s = states()
    for i in range(1200):
        s.put_call(f"+7912{i:07d}", call(f"old{i}", HORIZON + timedelta(minutes=5)))
        s.put_call(f"+7912{i:07d}", call(f"new{i}", NOW - timedelta(minutes=5)))
    steps = s.pruning(HORIZON + timedelta(hours=1), slice_size=500)
    first = next(steps)
    assert first == 500  # one old call for each of the first 500 callers
    assert s.horizon == HORIZON + timedelta(hours=1)  # moved at once
    # a caller not pruned yet answers as if it were: the old call is behind the horizon
    last = "+79120001199"
    assert s.held(last)[0] == {"old1199", "new1199"}
    assert [c.id for c in s.snapshot(last, NOW, 23 * HOUR).recent_calls] == ["new1199"]
    assert first + sum(steps) == 1200
    assert s.held(last)[0] == {"new1199"} and s.calls == 1200
