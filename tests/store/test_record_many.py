"""Store.record_many (the decision writer's batches) stores what record() stores."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callrouter.service.ports import RecordRejected
from callrouter.store import Store

from .builders import CALLER, NOW, ago, check_decision_merges_into_ami_row, decision_record


async def test_record_many_equals_record_one_by_one(store: Store) -> None:
    one = [decision_record(at=ago(minutes=3), uniqueid="s1"), decision_record(at=ago(minutes=2))]
    many = [decision_record(at=ago(minutes=3), uniqueid="m1"), decision_record(at=ago(minutes=2))]
    for rec in one:
        await store.record(rec)
    await store.record_many(many)
    async with store.transaction() as tx:
        for a, b in zip(one, many, strict=True):
            got_a, got_b = await tx.decisions.get(a.id), await tx.decisions.get(b.id)
            assert got_a is not None and got_b is not None
            assert replace(got_b, id=a.id, uniqueid=a.uniqueid, linkedid=a.linkedid,
                           channel=a.channel) == got_a
        calls = await tx.calls.recent_by_caller(CALLER)
    by_decision = {c.decision_id: c for c in calls}
    for a, b in zip(one, many, strict=True):
        ca, cb = by_decision[a.id], by_decision[b.id]
        assert (ca.outcome, ca.queue, ca.started_at, ca.caller_number) == (
            cb.outcome, cb.queue, cb.started_at, cb.caller_number)


async def test_record_many_merges_into_a_call_the_ami_listener_wrote_first(store: Store) -> None:
    await check_decision_merges_into_ami_row(store, store.record_many)


async def test_a_batch_the_database_refuses_raises_record_rejected(store: Store) -> None:
    """A duplicate decision id is refused for the data itself (a retry would fail the same
    way), so the writer can isolate it instead of retrying the batch forever."""
    first = decision_record(uniqueid="dup-1")
    await store.record_many([first])
    with pytest.raises(RecordRejected):
        await store.record_many([decision_record(uniqueid="dup-2"), first])


async def test_the_operator_directory_version_changes_with_every_change(store: Store) -> None:
    from datetime import timedelta

    from callrouter.domain.model import Operator

    async with store.transaction() as tx:
        empty = await tx.operators.version()
        await tx.operators.add(Operator("v1", "Vera", ("PJSIP/9001",)), now=NOW)
    first = await store.operators_version()
    assert first != empty and first[0] == empty[0] + 1
    async with store.transaction() as tx:
        await tx.operators.update("v1", interfaces=["PJSIP/9002"], now=NOW + timedelta(seconds=1))
    second = await store.operators_version()
    assert second != first and second[0] == first[0]
    assert await store.operators_version() == second  # unchanged when nothing changed
