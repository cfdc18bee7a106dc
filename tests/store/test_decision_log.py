"""DecisionLog.record: the decision row plus the call row it opens; reading decisions back."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from callrouter.domain.model import Action, Outcome
from callrouter.domain.reasons import ReasonCode
from callrouter.service.ports import CallRecord
from callrouter.store import Store

from .builders import CALLER, NOW, OTHER, ago, decision, decision_record


async def test_record_round_trips_the_decision(store: Store) -> None:
    rec = decision_record(
        uniqueid="1700000000.1",
        dec=decision(
            ReasonCode.STICKY_AVAILABLE,
            ReasonCode.REPEAT_PRIORITY,
            action=Action.OPERATOR,
            target="alice",
        ),
    )
    await store.record(rec)
    async with store.transaction() as tx:
        assert await tx.decisions.get(rec.id) == rec


async def test_record_opens_the_call_row_in_progress(store: Store) -> None:
    rec = decision_record(
        uniqueid="1700000000.1",
        dec=decision(ReasonCode.STICKY_AVAILABLE, action=Action.OPERATOR, target="alice"),
    )
    await store.record(rec)
    async with store.transaction() as tx:
        call = await tx.calls.get_by_uniqueid("1700000000.1")
    assert call is not None
    assert call.decision_id == rec.id
    assert call.outcome is Outcome.IN_PROGRESS
    assert call.action is Action.OPERATOR
    assert call.target_operator_id == "alice"
    assert call.started_at == NOW
    assert (call.caller_raw, call.caller_number, call.queue) == ("79123456789", CALLER, "support")
    assert call.channel == "PJSIP/trunk-00000001"


async def test_record_without_uniqueid_still_opens_a_call(store: Store) -> None:
    first, second = decision_record(), decision_record(at=ago(minutes=1))
    await store.record(first)
    await store.record(second)
    async with store.transaction() as tx:
        calls = await tx.calls.recent_by_caller(CALLER)
    assert [c.decision_id for c in calls] == [first.id, second.id]
    assert all(c.uniqueid is None for c in calls)


async def test_withheld_caller_is_logged_but_has_no_history(store: Store) -> None:
    rec = decision_record(number=None, uniqueid="u-anon", dec=decision(ReasonCode.WITHHELD))
    await store.record(rec)
    async with store.transaction() as tx:
        got = await tx.decisions.get(rec.id)
        call = await tx.calls.get_by_uniqueid("u-anon")
    assert got is not None and got.caller_number is None and got.caller_raw == "anonymous"
    assert call is not None and call.caller_number is None


async def test_decision_after_ami_merges_into_the_existing_call(store: Store) -> None:
    await store.write_call_records(
        [CallRecord(uniqueid="u1", started_at=ago(seconds=2), linkedid="L1")]
    )
    rec = decision_record(uniqueid="u1", dec=decision(escalated=True))
    await store.record(rec)
    async with store.transaction() as tx:
        calls = await tx.calls.recent_by_caller(CALLER)
    (call,) = calls
    assert call.decision_id == rec.id
    assert call.started_at == ago(seconds=2)  # the channel's own start stays
    assert call.linkedid == "L1"
    assert call.escalated is True


async def test_same_uniqueid_on_two_servers_is_two_calls(store: Store) -> None:
    await store.record(decision_record(uniqueid="u1", server_id="pbx-a"))
    await store.record(decision_record(uniqueid="u1", server_id="pbx-b"))
    async with store.transaction() as tx:
        a = await tx.calls.get_by_uniqueid("u1", server_id="pbx-a")
        b = await tx.calls.get_by_uniqueid("u1", server_id="pbx-b")
    assert a is not None and b is not None and a.id != b.id


async def test_duplicate_decision_id_fails_and_leaves_nothing(store: Store) -> None:
    rec = decision_record(uniqueid="u1")
    await store.record(rec)
    with pytest.raises(Exception):  # noqa: B017 - IntegrityError, wrapped per driver
        await store.record(replace(rec, uniqueid="u2"))
    async with store.transaction() as tx:
        assert await tx.calls.get_by_uniqueid("u2") is None


@pytest.fixture
async def logged(store: Store) -> dict[str, str]:
    """A small decision log: ids by label."""
    recs = {
        "sticky_alice": decision_record(
            at=ago(minutes=5),
            dec=decision(
                ReasonCode.STICKY_AVAILABLE,
                ReasonCode.REPEAT_PRIORITY,
                action=Action.OPERATOR,
                target="alice",
            ),
        ),
        "sticky_bob": decision_record(
            at=ago(hours=2),
            dec=decision(ReasonCode.STICKY_BUSY_WAIT, action=Action.OPERATOR, target="bob"),
        ),
        "new_other": decision_record(at=ago(minutes=1), number=OTHER),
        "old_new": decision_record(at=ago(days=3)),
    }
    for rec in recs.values():
        await store.record(rec)
    return {label: rec.id for label, rec in recs.items()}


async def _ids(store: Store, **filters: object) -> list[str]:
    async with store.transaction() as tx:
        return [d.id for d in await tx.decisions.list(**filters)]  # type: ignore[arg-type]


async def test_decisions_list_newest_first(store: Store, logged: dict[str, str]) -> None:
    assert await _ids(store) == [
        logged["new_other"],
        logged["sticky_alice"],
        logged["sticky_bob"],
        logged["old_new"],
    ]
    assert await _ids(store, limit=2) == [logged["new_other"], logged["sticky_alice"]]


async def test_decisions_filters(store: Store, logged: dict[str, str]) -> None:
    assert await _ids(store, caller_number=OTHER) == [logged["new_other"]]
    assert await _ids(store, operator_id="bob") == [logged["sticky_bob"]]
    # any reason of the decision, not only the first
    assert await _ids(store, reason_code=ReasonCode.REPEAT_PRIORITY) == [logged["sticky_alice"]]
    assert await _ids(store, reason_code="new_caller") == [logged["new_other"], logged["old_new"]]
    assert await _ids(store, since=ago(hours=3), until=ago(minutes=2)) == [
        logged["sticky_alice"],
        logged["sticky_bob"],
    ]
    assert await _ids(store, caller_number=CALLER, since=ago(days=1), operator_id="alice") == [
        logged["sticky_alice"]
    ]
    assert await _ids(store, since=NOW + timedelta(seconds=1)) == []


async def test_unknown_reason_code_filter_is_refused(store: Store) -> None:
    async with store.transaction() as tx:
        with pytest.raises(ValueError):
            await tx.decisions.list(reason_code="no_such_code")
