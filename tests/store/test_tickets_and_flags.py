"""Tickets and caller flags, including opt-outs and the audit trail next to them."""

from __future__ import annotations

import pytest

from callrouter.domain.model import CallerFlags, Operator, TicketStatus, Tier
from callrouter.store import NotFound, Store

from .builders import CALLER, NOW, OTHER, ago


async def test_ticket_create_update_list(store: Store) -> None:
    async with store.transaction() as tx:
        first = await tx.tickets.create(CALLER, "No internet", now=ago(days=2))
        second = await tx.tickets.create(
            CALLER,
            "Invoice",
            tier=Tier.SPECIALIST,
            assignee_id="bob",
            external_ref="JIRA-7",
            now=ago(days=1),
        )
        await tx.tickets.create(OTHER, "Not mine", now=ago(hours=1))
        assert first.status is TicketStatus.OPEN
        assert first.created_at == first.updated_at == ago(days=2)

        closed = await tx.tickets.update(second.id, status=TicketStatus.CLOSED, now=NOW)
        assert closed.status is TicketStatus.CLOSED
        assert closed.updated_at == NOW and closed.created_at == ago(days=1)
        assert closed.assignee_id == "bob"  # untouched
        unassigned = await tx.tickets.update(second.id, assignee_id=None, now=NOW)
        assert unassigned.assignee_id is None

    async with store.transaction() as tx:
        listed = await tx.tickets.list_by_caller(CALLER)
        assert [t.id for t in listed] == [second.id, first.id]
        assert await tx.tickets.get(second.id) == unassigned
        assert (await tx.tickets.current(CALLER, NOW)) == unassigned
        with pytest.raises(NotFound):
            await tx.tickets.update("nope", subject="x")


async def test_flag_setters_return_the_new_flags(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.flags.get(CALLER) == CallerFlags()
        flags = await tx.flags.set_vip_class(CALLER, "gold", now=ago(hours=1))
        assert flags.vip_class == "gold"
        flags = await tx.flags.set_abusive(CALLER, True, by="sup", now=ago(minutes=5))
        assert (flags.abusive, flags.abusive_flagged_by) == (True, "sup")
        assert flags.abusive_flagged_at == ago(minutes=5)
        assert flags.vip_class == "gold"
        flags = await tx.flags.set_abusive(CALLER, False, by="admin", now=NOW)
        assert (flags.abusive, flags.abusive_flagged_by, flags.abusive_flagged_at) == (
            False,
            "admin",
            NOW,
        )
        await tx.flags.set_vip_class(CALLER, None)
        await tx.flags.set_notes(CALLER, "calls at night")
    async with store.transaction() as tx:
        flags = await tx.flags.get(CALLER)
    assert flags.vip_class is None and flags.notes == "calls at night"
    assert await _other_flags(store) == CallerFlags()


async def _other_flags(store: Store) -> CallerFlags:
    async with store.transaction() as tx:
        return await tx.flags.get(OTHER)


async def test_opt_out_add_and_remove(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.operators.add(Operator("alice", "Alice", ("PJSIP/1001",)))
        assert await tx.flags.add_opt_out(CALLER, "alice") is True
        assert await tx.flags.add_opt_out(CALLER, "alice") is False  # already so
        assert (await tx.flags.get(CALLER)).opted_out_operators == {"alice"}
        assert await tx.flags.remove_opt_out(CALLER, "alice") is True
        assert await tx.flags.remove_opt_out(CALLER, "alice") is False
        assert (await tx.flags.get(CALLER)).opted_out_operators == frozenset()


async def test_opt_out_needs_a_known_operator(store: Store) -> None:
    with pytest.raises(Exception):  # noqa: B017 - foreign key violation, per driver
        async with store.transaction() as tx:
            await tx.flags.add_opt_out(CALLER, "ghost")


async def test_flag_change_and_audit_entry_commit_together(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.flags.set_abusive(CALLER, True, by="sup")
            await tx.audit.append("sup", "flags.abusive", subject=CALLER)
            raise RuntimeError("the request failed after the change")
    async with store.transaction() as tx:
        assert (await tx.flags.get(CALLER)).abusive is False
        assert await tx.audit.list() == []
