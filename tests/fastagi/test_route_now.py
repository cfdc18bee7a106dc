"""The FastAGI handler decides in the session's own callback when the router can
(``route_now``): no task, no budget timer; else it waits for ``route_call`` as before."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from callrouter.domain.reasons import ReasonCode
from callrouter.fastagi.handler import RouteHandler
from callrouter.fastagi.protocol import environment_from_block
from callrouter.service.ports import DecisionRecord, InboundCall
from callrouter.simulator.agi import environment_block
from tests.fastagi.fastagi_fakes import FakeRouter, operator_decision, record_for


@dataclass
class NowRouter(FakeRouter):
    """A FakeRouter that can also decide at once: "now" (an operator), "wait" (None:
    route_call), "explode" (raises)."""

    now_mode: str = "now"
    asked_now: list[InboundCall] = field(default_factory=list)

    def route_now(self, call: InboundCall) -> DecisionRecord | None:
        self.asked_now.append(call)
        if self.now_mode == "explode":
            raise RuntimeError("replica corrupted")
        if self.now_mode == "wait":
            return None
        return record_for(call, operator_decision(call.queue))


def env(caller: str = "1001") -> Any:
    return environment_from_block(b"".join(environment_block(
        caller=caller, args=("support",), uniqueid="1795000000.1")))


class Answers:
    def __init__(self) -> None:
        self.got: list[Mapping[str, str]] = []

    def __call__(self, values: Mapping[str, str], delivered: Any) -> None:
        self.got.append(values)
        delivered()


async def test_decided_at_once_is_answered_before_start_returns() -> None:
    router = NowRouter()
    handler = RouteHandler(router, budget=0.5)
    answers = Answers()
    tasks_before = len(asyncio.all_tasks())
    abandon = handler.start(env(), lambda: "peer", answers)
    assert abandon is None  # nothing in flight
    assert len(answers.got) == 1 and answers.got[0]["CALLROUTER_ACTION"] == "operator"
    assert router.calls == []  # route_call never ran
    assert len(asyncio.all_tasks()) == tasks_before  # no task was started


async def test_a_router_that_cannot_decide_at_once_is_waited_for() -> None:
    router = NowRouter(now_mode="wait")
    handler = RouteHandler(router, budget=0.5)
    answers = Answers()
    abandon = handler.start(env("2002"), lambda: "peer", answers)
    assert abandon is not None and answers.got == []
    for _ in range(50):
        if answers.got:
            break
        await asyncio.sleep(0.01)
    assert [c.caller_raw for c in router.asked_now] == ["2002"]
    assert [c.caller_raw for c in router.calls] == ["2002"]
    assert answers.got[0]["CALLROUTER_ACTION"] == "specialist"


async def test_a_failing_route_now_still_gives_the_queue() -> None:
    router = NowRouter(now_mode="explode")
    handler = RouteHandler(router, budget=0.5)
    answers = Answers()
    assert handler.start(env(), lambda: "peer", answers) is None
    assert len(answers.got) == 1
    assert answers.got[0]["CALLROUTER_ACTION"] == "queue"
    assert answers.got[0]["CALLROUTER_REASON"] == str(ReasonCode.FALLBACK_ERROR)
    assert answers.got[0]["CALLROUTER_QUEUE"] == "support"
