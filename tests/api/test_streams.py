"""Server-sent events over a real socket: the screen-pop reaches only the answering operator.

The answered notification comes from the AMI call tracker replaying a recorded Asterisk
trace (a queue call answered by op1), wired to the API's EventPublisher exactly as the
composition root wires the AMI listener. The trace's caller id is replaced by a seeded
caller's number so the context has history to show.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from callrouter.ami.interfaces import InterfaceMap
from callrouter.ami.message import parse_block
from callrouter.ami.tracker import CallTracker
from callrouter.api import EventPublisher
from callrouter.domain.model import Action, Decision, Operator
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.events import operator_topic
from callrouter.service.ports import DecisionRecord
from callrouter.simulator.ami_traces import asterisk_events
from tests.api.conftest import ANNA_CALLER, NOW, World

TRACE = (Path(__file__).resolve().parents[3] / "shared" / "asterisk" / "ami"
         / "ami-queue-answered-caller-hangup.events-on.session")
TRACE_CALLER = "5551001"
# The trace's queue members are Local/opN@operators/n; the API's operators are seeded.
AMI_OPERATORS = {
    "op1": Operator("op1", "Anna", ("Local/op1@operators/n",), queues=("support-q",)),
    "op2": Operator("op2", "Boris", ("Local/op2@operators/n",), queues=("support-q",)),
}


@pytest.fixture
async def base_url(world: World) -> AsyncIterator[str]:
    config = uvicorn.Config(world.app(), host="127.0.0.1", port=0, log_level="warning",
                            lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # uvicorn has no "started" event to wait on
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, 5)


class Stream:
    """Reads one SSE response into (event, data) pairs on a queue."""

    def __init__(self, response: httpx.Response) -> None:
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._task = asyncio.create_task(self._read(response))

    async def _read(self, response: httpx.Response) -> None:
        name, data = "message", ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif line == "" and data:
                await self.events.put((name, json.loads(data)))
                name, data = "message", ""

    async def next(self, timeout: float) -> tuple[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    def close(self) -> None:
        self._task.cancel()


def replay_answered_call(publisher: EventPublisher) -> None:
    tracker = CallTracker(InterfaceMap(AMI_OPERATORS), on_answered=publisher.on_answered)
    for i, event in enumerate(asterisk_events(TRACE)):
        msg = parse_block(event.raw.decode().replace(TRACE_CALLER, "89123456789"))
        if msg is not None:
            tracker.feed(msg, float(i))


async def test_operator_stream_gets_own_caller_within_a_second(
    world: World, base_url: str
) -> None:
    if not TRACE.exists():
        pytest.skip(f"trace {TRACE} not available")
    publisher = EventPublisher(world.deps.events)
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        async with client.stream("GET", "/api/v1/stream/operator",
                                 params={"access_token": world.tokens["operator"]}) as anna_r, \
                client.stream("GET", "/api/v1/stream/operator",
                              params={"access_token": world.tokens["operator2"]}) as boris_r:
            assert anna_r.status_code == 200
            assert anna_r.headers["content-type"].startswith("text/event-stream")
            anna, boris = Stream(anna_r), Stream(boris_r)
            assert await anna.next(2) == ("ready", {"operator_id": "op1"})
            assert await boris.next(2) == ("ready", {"operator_id": "op2"})

            loop = asyncio.get_running_loop()
            started = loop.time()
            replay_answered_call(publisher)
            name, data = await anna.next(1.0)
            assert loop.time() - started < 1.0
            assert name == "caller"
            assert data["call"]["queue"] == "support-q"
            assert data["caller"]["number"] == ANNA_CALLER
            assert data["caller"]["recent_calls"][0]["operator_id"] == "op1"
            assert data["caller"]["sticky"]["operator_id"] == "op1"
            # Boris's stream carries nothing, not even a payload mislabelled for the topic
            world.deps.events.publish(operator_topic("op2"), {"operator_id": "op1",
                                                              "caller_number": ANNA_CALLER})
            with pytest.raises(TimeoutError):
                await boris.next(0.5)
            anna.close()
            boris.close()


async def test_dashboard_stream_masks_numbers_for_readonly(
    world: World, base_url: str
) -> None:
    publisher = EventPublisher(world.deps.events)
    record = DecisionRecord(
        id="d1", decided_at=NOW, caller_raw=ANNA_CALLER, caller_number=ANNA_CALLER,
        queue="support", latency_ms=1.5,
        decision=Decision(Action.QUEUE, "support", 0, (Reason(ReasonCode.NEW_CALLER, "new"),)),
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        headers = {"Authorization": f"Bearer {world.tokens['readonly']}"}
        async with client.stream("GET", "/api/v1/stream/dashboard", headers=headers) as r:
            stream = Stream(r)
            assert (await stream.next(2))[0] == "ready"
            publisher.on_decision(record)
            publisher.on_operator_state("op1", "paused")
            name, data = await stream.next(1)
            assert name == "decision"
            assert data["id"] == "d1"
            assert data["caller_number"] == "*********789"
            assert ANNA_CALLER not in json.dumps(data)
            name, data = await stream.next(1)
            assert (name, data["operator_id"], data["state"]) == ("operator_state", "op1", "paused")
            stream.close()
