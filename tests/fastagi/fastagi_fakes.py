"""A router double for the FastAGI tests (and the classic-entry subprocess)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.service.ports import DecisionRecord, InboundCall


def record_for(call: InboundCall, decision: Decision) -> DecisionRecord:
    return DecisionRecord(
        id=str(uuid.uuid4()),
        decided_at=datetime.now(UTC),
        caller_raw=call.caller_raw,
        caller_number=None,
        queue=call.queue,
        decision=decision,
        latency_ms=0.1,
        uniqueid=call.uniqueid,
        channel=call.channel,
    )


def queue_decision(queue: str, code: ReasonCode = ReasonCode.NEW_CALLER) -> Decision:
    return Decision(action=Action.QUEUE, queue=queue, priority=0,
                    reasons=(Reason(code, "test"),))


def operator_decision(queue: str, *, wait: int = 20) -> Decision:
    return Decision(action=Action.OPERATOR, queue=queue, priority=10,
                    reasons=(Reason(ReasonCode.STICKY_AVAILABLE, "last operator"),),
                    target_operator_id="op7", target_interface="PJSIP/op7",
                    wait_seconds=wait, announcement="callrouter/your-operator")


def specialist_decision(queue: str) -> Decision:
    return Decision(action=Action.SPECIALIST, queue="specialists", priority=5,
                    reasons=(Reason(ReasonCode.SPECIALIST_TICKET, "open ticket"),),
                    target_operator_id="sp1", target_interface="PJSIP/sp1",
                    wait_seconds=30, announcement="callrouter/your-specialist")


@dataclass
class FakeRouter:
    """Decides by caller number: 1xx operator, 2xx specialist, else queue.

    ``mode``: "ok", "sleep" (sleeps ``delay`` s), "raise", "ignore_cancel" (sleeps and
    swallows cancellation), "zero_wait" (operator with wait 0), "odd" (a value MSet cannot
    carry).
    """

    mode: str = "ok"
    delay: float = 10.0
    calls: list[InboundCall] = field(default_factory=list)

    async def route_call(self, call: InboundCall, now: datetime | None = None, *,
                         wanted: Any = None) -> DecisionRecord:
        self.calls.append(call)
        if self.mode == "sleep":
            await asyncio.sleep(self.delay)
        elif self.mode == "ignore_cancel":
            try:
                await asyncio.sleep(self.delay)
            except asyncio.CancelledError:
                await asyncio.sleep(self.delay)
        elif self.mode == "raise":
            raise RuntimeError("store exploded")
        number = call.caller_raw
        if self.mode == "zero_wait":
            return record_for(call, operator_decision(call.queue, wait=0))
        if self.mode == "odd":
            d = operator_decision(call.queue)
            d = Decision(action=d.action, queue=d.queue, priority=d.priority, reasons=d.reasons,
                         target_operator_id="op, \"quoted\" (x)",
                         target_interface="PJSIP/op7&PJSIP/op8", wait_seconds=15,
                         announcement=None)
            return record_for(call, d)
        if number.startswith("1"):
            return record_for(call, operator_decision(call.queue))
        if number.startswith("2"):
            return record_for(call, specialist_decision(call.queue))
        return record_for(call, queue_decision(call.queue))

    def fallback(self, call: InboundCall, code: ReasonCode, text: str) -> DecisionRecord:
        return record_for(call, Decision(action=Action.QUEUE, queue=call.queue, priority=0,
                                         reasons=(Reason(code, text),)))


def make_router() -> FakeRouter:
    """Factory for the classic entry (``CALLROUTER_ROUTER_FACTORY=fastagi_fakes:make_router``)."""
    return FakeRouter()
