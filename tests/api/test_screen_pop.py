"""The ``caller`` event's content: the call row, the decision with its reasons, the context.

On SQLite and PostgreSQL: the call row and the decision are read back from the store when
the publisher did not remember the decision (another daemon made it, or it is old).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from callrouter.api.services.streams import screen_pop
from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.service.ports import CallRecord, DecisionRecord
from callrouter.store import Store
from tests.api.conftest import ANNA_CALLER, NOW, World


@pytest.fixture
def api_store(store: Store) -> Store:
    return store


def decided(uniqueid: str, number: str | None, code: ReasonCode) -> DecisionRecord:
    return DecisionRecord(
        id=f"d-{uniqueid}", decided_at=NOW, caller_raw=number or "anonymous",
        caller_number=number, queue="support", latency_ms=1.0, uniqueid=uniqueid,
        decision=Decision(Action.QUEUE, "support", 0, (Reason(code, f"because {code}"),)),
    )


def answered_by(operator_id: str, record: DecisionRecord) -> dict[str, object]:
    return {"server_id": "default", "uniqueid": record.uniqueid, "operator_id": operator_id,
            "caller_number": record.caller_number, "decision_id": record.id,
            "queue": "support", "caller_name": None}


async def test_call_row_and_reasons_come_from_the_store(world: World) -> None:
    record = decided("u-now", ANNA_CALLER, ReasonCode.NEW_CALLER)
    await world.store.record(record)
    async with world.store.transaction() as tx:
        row = await tx.calls.get_by_uniqueid("u-now")
    assert row is not None
    pop = await screen_pop(world.deps, "op1", answered_by("op1", record))
    assert pop["call"] == {"id": row.id, "uniqueid": "u-now", "queue": "support",
                           "decision_id": "d-u-now", "caller_name": None}
    assert pop["decision"]["reasons"] == [{"code": "new_caller", "text": "because new_caller"}]
    assert pop["caller"]["number"] == ANNA_CALLER
    assert pop["reason"] is None


async def test_withheld_caller_still_gets_the_call_and_reasons(world: World) -> None:
    record = decided("u-anon", None, ReasonCode.WITHHELD)
    await world.store.record(record)
    pop = await screen_pop(world.deps, "op1", answered_by("op1", record))
    assert pop["caller"] is None
    assert pop["reason"] == "number withheld, shared or unknown"
    assert pop["call"]["id"] is not None
    assert [r["code"] for r in pop["decision"]["reasons"]] == ["withheld"]


async def test_a_call_row_answered_by_someone_else_is_not_named(world: World) -> None:
    record = decided("u-boris", ANNA_CALLER, ReasonCode.NEW_CALLER)
    await world.store.record(record)
    start = NOW - timedelta(minutes=1)
    await world.store.write_call_records([CallRecord(
        uniqueid="u-boris", caller_number=ANNA_CALLER, queue="support", decision_id=record.id,
        started_at=start, answered_at=start, operator_id="op2",
    )])
    pop = await screen_pop(world.deps, "op1", answered_by("op1", record))
    assert pop["call"]["id"] is None


async def test_call_without_a_decision(world: World) -> None:
    payload = {"uniqueid": "u-none", "operator_id": "op1", "caller_number": ANNA_CALLER,
               "decision_id": None, "queue": "support"}
    pop = await screen_pop(world.deps, "op1", payload)
    assert (pop["call"]["id"], pop["decision"]) == (None, None)
    assert pop["caller"]["number"] == ANNA_CALLER
