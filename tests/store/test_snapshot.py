"""The caller snapshot: history window, current ticket, flags, opt-outs, escalations today."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from callrouter.domain.model import Operator, Outcome, TicketStatus, Tier
from callrouter.service.ports import CallerSnapshot, CallRecord
from callrouter.store import Store

from .builders import CALLER, NOW, OTHER, ago, answered, decision, decision_record

HOUR = 3600


async def test_unknown_caller_gets_an_empty_snapshot(store: Store) -> None:
    assert await store.snapshot(CALLER, NOW, 24 * HOUR) == CallerSnapshot()


async def test_recent_calls_are_the_lookback_window_newest_first(store: Store) -> None:
    await store.write_call_records(
        [
            answered("u-old", started=ago(hours=25)),
            answered("u-2h", started=ago(hours=2), operator="bob", talk=30),
            answered("u-10m", started=ago(minutes=10), operator="alice"),
            answered("u-future", started=NOW + timedelta(minutes=1)),
            answered("u-other", started=ago(minutes=5), number=OTHER),
        ]
    )
    snap = await store.snapshot(CALLER, NOW, 24 * HOUR)

    assert [c.operator_id for c in snap.recent_calls] == ["alice", "bob"]
    newest = snap.recent_calls[0]
    assert newest.started_at == ago(minutes=10)
    assert newest.started_at.tzinfo is UTC
    assert newest.ended_at == ago(minutes=10) + timedelta(seconds=130)
    assert newest.outcome is Outcome.ANSWERED
    assert newest.talk_seconds == 120
    assert newest.queue == "support"
    assert snap.recent_calls[1].talk_seconds == 30

    narrow = await store.snapshot(CALLER, NOW, 1 * HOUR)
    assert [c.operator_id for c in narrow.recent_calls] == ["alice"]


async def test_snapshot_carries_resolved_and_escalated_of_past_calls(store: Store) -> None:
    await store.record(
        decision_record(at=ago(minutes=30), uniqueid="u1", dec=decision(escalated=True))
    )
    async with store.transaction() as tx:
        call = await tx.calls.get_by_uniqueid("u1")
        assert call is not None
        await tx.calls.mark_resolved(call.id, False)

    (past,) = (await store.snapshot(CALLER, NOW, HOUR)).recent_calls
    assert past.escalated is True
    assert past.resolved is False
    assert past.outcome is Outcome.IN_PROGRESS


async def test_open_ticket_prefers_newest_open_or_pending(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.tickets.create(CALLER, "old", now=ago(days=10))
        pending = await tx.tickets.create(
            CALLER, "newer", status=TicketStatus.PENDING, tier=Tier.SPECIALIST, now=ago(days=2)
        )
        await tx.tickets.create(OTHER, "someone else's", now=ago(hours=1))

    snap = await store.snapshot(CALLER, NOW, HOUR)
    assert snap.open_ticket == pending
    assert snap.open_ticket is not None and snap.open_ticket.tier is Tier.SPECIALIST


async def test_closed_ticket_counts_for_24_hours_after_closing(store: Store) -> None:
    async with store.transaction() as tx:
        recent = await tx.tickets.create(CALLER, "closed recently", now=ago(days=3))
        await tx.tickets.update(recent.id, status=TicketStatus.CLOSED, now=ago(hours=23))
        stale = await tx.tickets.create(CALLER, "closed long ago", now=ago(days=2))
        await tx.tickets.update(stale.id, status=TicketStatus.CLOSED, now=ago(hours=25))

    snap = await store.snapshot(CALLER, NOW, HOUR)
    assert snap.open_ticket is not None
    assert snap.open_ticket.id == recent.id
    assert snap.open_ticket.status is TicketStatus.CLOSED

    later = await store.snapshot(CALLER, NOW + timedelta(hours=2), HOUR)
    assert later.open_ticket is None


async def test_flags_and_opt_outs_are_in_the_snapshot(store: Store) -> None:
    async with store.transaction() as tx:
        for op_id in ("alice", "bob", "carol"):
            await tx.operators.add(Operator(op_id, op_id.title(), (f"PJSIP/{op_id}",)))
        await tx.flags.set_vip_class(CALLER, "gold", now=ago(days=1))
        await tx.flags.set_abusive(CALLER, True, by="supervisor1", now=ago(hours=3))
        await tx.flags.set_notes(CALLER, "prefers Russian")
        await tx.flags.set_name(CALLER, "Ivan")
        await tx.flags.add_opt_out(CALLER, "alice")
        await tx.flags.add_opt_out(CALLER, "bob")
        await tx.flags.add_opt_out(OTHER, "carol")

    flags = (await store.snapshot(CALLER, NOW, HOUR)).flags
    assert flags.vip_class == "gold"
    assert flags.abusive is True
    assert flags.abusive_flagged_by == "supervisor1"
    assert flags.abusive_flagged_at == ago(hours=3)
    assert flags.notes == "prefers Russian"
    assert flags.name == "Ivan"
    assert flags.opted_out_operators == frozenset({"alice", "bob"})


async def test_opt_outs_without_a_flags_row(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.operators.add(Operator("alice", "Alice", ("PJSIP/alice",)))
        assert await tx.flags.add_opt_out(CALLER, "alice") is True

    flags = (await store.snapshot(CALLER, NOW, HOUR)).flags
    assert flags.opted_out_operators == frozenset({"alice"})
    assert flags.vip_class is None and flags.abusive is False


async def test_escalations_today_counts_escalated_decisions_of_the_utc_day(store: Store) -> None:
    now = datetime(2025, 3, 14, 0, 30, tzinfo=UTC)
    escalated = decision(escalated=True)
    for at, number, dec in [
        (now - timedelta(minutes=20), CALLER, escalated),  # today, 00:10
        (now - timedelta(minutes=29), CALLER, escalated),  # today, 00:01
        (now - timedelta(minutes=40), CALLER, escalated),  # yesterday 23:50
        (now - timedelta(minutes=5), CALLER, decision()),  # not escalated
        (now - timedelta(minutes=5), OTHER, escalated),  # someone else
    ]:
        await store.record(decision_record(at=at, number=number, dec=dec))

    assert (await store.snapshot(CALLER, now, HOUR)).escalations_today == 2
    # The day is UTC's, whatever zone ``now`` is given in.
    moscow = now.astimezone(timezone(timedelta(hours=3)))
    assert (await store.snapshot(CALLER, moscow, HOUR)).escalations_today == 2


async def test_call_from_ami_only_shows_in_history(store: Store) -> None:
    await store.write_call_records(
        [CallRecord(uniqueid="u9", caller_number=CALLER, queue="sales", started_at=ago(minutes=3))]
    )
    (past,) = (await store.snapshot(CALLER, NOW, HOUR)).recent_calls
    assert past.queue == "sales"
    assert past.outcome is Outcome.IN_PROGRESS
