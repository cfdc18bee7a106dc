"""Operators: add, update, deactivate, list, look up by interface."""

from __future__ import annotations

import pytest

from callrouter.domain.model import Operator, Tier
from callrouter.store import Conflict, NotFound, Store

ALICE = Operator("alice", "Alice", ("PJSIP/1001", "PJSIP/1001-mobile"), queues=("support",))
BOB = Operator("bob", "Bob", ("PJSIP/1002",), tier=Tier.SPECIALIST, queues=("l2", "support"))


async def test_starts_empty_and_adds(store: Store) -> None:
    assert await store.operators() == {}
    async with store.transaction() as tx:
        await tx.operators.add(ALICE)
        await tx.operators.add(BOB)
        await tx.operators.add(Operator("carol", "Carol", ()))
    ops = await store.operators()
    assert ops == {"alice": ALICE, "bob": BOB, "carol": Operator("carol", "Carol", ())}
    assert ops["alice"].interface == "PJSIP/1001"  # order kept: the first is rung first


async def test_get_by_interface(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.operators.add(ALICE)
        await tx.operators.add(BOB)
        assert await tx.operators.get_by_interface("PJSIP/1001-mobile") == ALICE
        assert await tx.operators.get_by_interface("PJSIP/1002") == BOB
        assert await tx.operators.get_by_interface("PJSIP/9999") is None
        assert await tx.operators.get("nobody") is None


async def test_update_changes_only_given_fields(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.operators.add(ALICE)
        updated = await tx.operators.update(
            "alice", interfaces=["PJSIP/2001", "PJSIP/1001"], tier=Tier.SPECIALIST
        )
    assert updated == Operator(
        "alice", "Alice", ("PJSIP/2001", "PJSIP/1001"), Tier.SPECIALIST, ("support",)
    )
    async with store.transaction() as tx:
        assert await tx.operators.get_by_interface("PJSIP/1001-mobile") is None
        assert await tx.operators.get("alice") == updated


async def test_deactivate_keeps_the_operator_listed(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.operators.add(ALICE)
        await tx.operators.add(BOB)
        gone = await tx.operators.deactivate("bob")
        assert gone.active is False
        assert [o.id for o in await tx.operators.list(active_only=True)] == ["alice"]
        assert [o.id for o in await tx.operators.list()] == ["alice", "bob"]
    assert (await store.operators())["bob"].active is False


async def test_conflicts(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.operators.add(ALICE)
    with pytest.raises(Conflict, match="already exists"):
        async with store.transaction() as tx:
            await tx.operators.add(ALICE)
    with pytest.raises(Conflict, match=r"PJSIP/1001.*alice"):
        async with store.transaction() as tx:
            await tx.operators.add(Operator("mallory", "M", ("PJSIP/1001",)))
    with pytest.raises(NotFound):
        async with store.transaction() as tx:
            await tx.operators.update("nobody", name="x")
    # the failed transactions left nothing behind
    assert set(await store.operators()) == {"alice"}
