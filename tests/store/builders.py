"""Small builders of the values the store tests write."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.service.ports import CallRecord, DecisionRecord

NOW = datetime(2025, 3, 14, 12, 0, 0, 123456, tzinfo=UTC)
CALLER = "+79123456789"
OTHER = "+79990000000"


def ago(**kwargs: float) -> datetime:
    return NOW - timedelta(**kwargs)


def decision(
    *codes: ReasonCode,
    action: Action = Action.QUEUE,
    target: str | None = None,
    escalated: bool = False,
) -> Decision:
    codes = codes or (ReasonCode.NEW_CALLER,)
    return Decision(
        action=action,
        queue="support",
        priority=5,
        reasons=tuple(Reason(c, f"because {c}") for c in codes),
        target_operator_id=target,
        target_interface=f"PJSIP/{target}" if target else None,
        wait_seconds=20 if target else 0,
        announcement="callrouter/your-operator" if target else None,
        escalated=escalated,
    )


def decision_record(
    *,
    at: datetime = NOW,
    number: str | None = CALLER,
    uniqueid: str | None = None,
    dec: Decision | None = None,
    server_id: str = "default",
) -> DecisionRecord:
    return DecisionRecord(
        id=uuid.uuid4().hex,
        decided_at=at,
        caller_raw=number.lstrip("+") if number else "anonymous",
        caller_number=number,
        queue="support",
        decision=dec or decision(),
        latency_ms=1.25,
        uniqueid=uniqueid,
        linkedid=uniqueid,
        channel="PJSIP/trunk-00000001" if uniqueid else None,
        server_id=server_id,
        inputs={"recent_calls": 2, "ticket": None, "tags": ["a", "b"]},
    )


def answered(
    uniqueid: str,
    *,
    started: datetime,
    operator: str = "alice",
    talk: int = 120,
    number: str = CALLER,
) -> CallRecord:
    return CallRecord(
        uniqueid=uniqueid,
        caller_raw=number.lstrip("+"),
        caller_number=number,
        queue="support",
        started_at=started,
        answered_at=started + timedelta(seconds=10),
        ended_at=started + timedelta(seconds=10 + talk),
        operator_id=operator,
        answered_interface=f"PJSIP/{operator}",
        hold_seconds=10,
        talk_seconds=talk,
        outcome="answered",
        hangup_by="caller",
    )


async def check_decision_merges_into_ami_row(store: Any, record_many: Any) -> None:
    """The AMI listener wrote the call first; ``record_many`` (the Store's or the hot
    path's) merges the decision's call row into it, keeping what AMI knew first."""
    from callrouter.service.ports import CallRecord

    await store.write_call_records([CallRecord(uniqueid="u9", started_at=ago(minutes=5, seconds=1),
                                               linkedid="L-ami")])
    rec = decision_record(at=ago(minutes=5), uniqueid="u9")
    await record_many([rec])
    async with store.transaction() as tx:
        call = await tx.calls.get_by_uniqueid("u9")
    assert call is not None
    assert call.decision_id == rec.id and call.caller_number == CALLER
    assert call.started_at == ago(minutes=5, seconds=1)  # the AMI start is kept
    assert call.linkedid == "L-ami"  # what AMI knew first is not overwritten

    # A transferred call the listener finished before its decision was written (the
    # decision writer lingers, or the database was slow): the last handler's own talk
    # time, which only the AMI record knows, survives the decision's merge.
    await store.write_call_records([transferred("u10", started=ago(minutes=4))])
    await record_many([decision_record(at=ago(minutes=4), uniqueid="u10")])
    snapshot = await store.snapshot(CALLER, NOW, 3600)
    [past] = [c for c in snapshot.recent_calls if c.operator_id == "bob"]
    assert (past.talk_seconds, past.operator_talk_seconds) == (300, 5)


def transferred(uniqueid: str, *, started: datetime) -> CallRecord:
    """Alice talks 295 s and blind-transfers to Bob, who drops the caller after 5 s."""
    from callrouter.legs import CallLeg, LegEnd, LeggedCallRecord

    first = answered(uniqueid, started=started, operator="bob", talk=300)
    at = started + timedelta(seconds=10)
    legs = (
        CallLeg(0, "alice", "PJSIP/alice", "queue", at, at + timedelta(seconds=295), 10, 295,
                LegEnd.BLIND_TRANSFER, None, "bob", "bob@transfer"),
        CallLeg(1, "bob", "PJSIP/bob", "dial", at + timedelta(seconds=300),
                at + timedelta(seconds=305), 5, 5, LegEnd.HUNG_UP, "operator"),
    )
    fields = {k: getattr(first, k) for k in CallRecord.__dataclass_fields__}
    fields.update(transferred=True, transferred_from="alice", answered_interface="PJSIP/bob")
    return LeggedCallRecord(**fields, legs=legs)
