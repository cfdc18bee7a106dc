"""Server-sent events over a real socket: the screen-pop and the call's end reach only the
answering operator, and a stream ends soon after its token loses access.

The answered and ended notifications come from the AMI call tracker replaying a recorded
Asterisk trace (a queue call answered by op1), wired to the API's EventPublisher as the
composition root wires the AMI listener. The trace's caller id is replaced by a seeded
caller's number so the context has history to show.

The app runs on ``committed_world``: its streams re-check their token on their own
while the test makes requests, which the rolled-back store's one connection cannot carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
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
from callrouter.service.ports import CallRecord, DecisionRecord
from callrouter.simulator.ami_traces import asterisk_events
from tests import traces
from tests.ami.transfers import CALLER_UID, blind_transfer_to_op2, value
from tests.api.conftest import ANNA_CALLER, NOW, World

TRACE = traces.AMI / "ami-queue-answered-caller-hangup.events-on.session"
TRACE_CALLER = "5551001"
TRACE_UNIQUEID = "1795425134.71"  # the caller's channel in the queue
# How long an open stream may outlive its token's revocation, in these tests.
CLOSE_BOUND = 2.0
# The trace's queue members are Local/opN@operators/n; the API's operators are seeded.
AMI_OPERATORS = {
    "op1": Operator("op1", "Anna", ("Local/op1@operators/n",), queues=("support-q",)),
    "op2": Operator("op2", "Boris", ("Local/op2@operators/n",), queues=("support-q",)),
}


@pytest.fixture
def world(committed_world: World) -> World:
    return committed_world


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
        try:
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif line == "" and data:
                    await self.events.put((name, json.loads(data)))
                    name, data = "message", ""
        except httpx.TransportError:  # the server went away: the stream is over
            pass

    async def next(self, timeout: float) -> tuple[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def ended(self, timeout: float) -> None:
        """Wait for the server to end the response."""
        await asyncio.wait_for(asyncio.shield(self._task), timeout)

    @property
    def open(self) -> bool:
        return not self._task.done()

    def close(self) -> None:
        self._task.cancel()


def replay_call(publisher: EventPublisher, decision: DecisionRecord | None = None
                ) -> list[CallRecord]:
    """Feed the trace through the tracker, as the AMI listener does; returns its records."""
    records: list[CallRecord] = []

    def on_record(record: CallRecord) -> None:
        records.append(record)
        publisher.on_call_record(record)

    tracker = CallTracker(InterfaceMap(AMI_OPERATORS), on_answered=publisher.on_answered,
                          on_record=on_record)
    if decision is not None:  # the FastAGI route tells the listener, as app.py wires it
        assert decision.uniqueid is not None
        tracker.expect(decision.uniqueid, decision.id, decision.decision.target_operator_id)
    now = 0.0
    for i, event in enumerate(asterisk_events(TRACE)):
        msg = parse_block(event.raw.decode().replace(TRACE_CALLER, "89123456789"))
        if msg is not None:
            now = float(i)
            tracker.feed(msg, now)
    tracker.tick(now + 10)  # past the hangup grace period
    return records


def sticky_decision(uniqueid: str) -> DecisionRecord:
    return DecisionRecord(
        id="d-sticky", decided_at=NOW, caller_raw="89123456789", caller_number=ANNA_CALLER,
        queue="support-q", latency_ms=2.0, uniqueid=uniqueid,
        decision=Decision(Action.OPERATOR, "support-q", 0,
                          (Reason(ReasonCode.STICKY_AVAILABLE, "Anna spoke with them"),),
                          target_operator_id="op1", target_interface="Local/op1@operators/n",
                          wait_seconds=20),
    )


def stream_of(client: httpx.AsyncClient, role: str, world: World, path: str = "operator"
              ) -> Any:
    return client.stream("GET", f"/api/v1/stream/{path}",
                         params={"access_token": world.tokens[role]})


@contextlib.asynccontextmanager
async def anna_and_boris(client: httpx.AsyncClient, world: World) -> AsyncIterator[
    tuple[Stream, Stream]
]:
    """op1's and op2's consoles, open and past their ``ready``."""
    async with stream_of(client, "operator", world) as anna_r, \
            stream_of(client, "operator2", world) as boris_r:
        anna, boris = Stream(anna_r), Stream(boris_r)
        assert (await anna.next(2))[0] == "ready"
        assert (await boris.next(2))[0] == "ready"
        yield anna, boris


async def test_operator_stream_gets_own_caller_and_its_end(world: World, base_url: str) -> None:
    traces.present(TRACE)
    publisher = EventPublisher(world.deps.events)
    decision = sticky_decision(TRACE_UNIQUEID)
    await world.store.record(decision)  # opens the call row, as the decision writer does
    publisher.on_decision(decision)
    async with world.store.transaction() as tx:
        row = await tx.calls.get_by_uniqueid(TRACE_UNIQUEID)
    assert row is not None
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        async with stream_of(client, "operator", world) as anna_r, \
                stream_of(client, "operator2", world) as boris_r:
            assert anna_r.status_code == 200
            assert anna_r.headers["content-type"].startswith("text/event-stream")
            anna, boris = Stream(anna_r), Stream(boris_r)
            assert await anna.next(2) == ("ready", {"operator_id": "op1"})
            assert await boris.next(2) == ("ready", {"operator_id": "op2"})

            loop = asyncio.get_running_loop()
            started = loop.time()
            [record] = replay_call(publisher, decision)
            name, data = await anna.next(1.0)
            assert loop.time() - started < 1.0
            assert name == "caller"
            assert data["call"]["uniqueid"] == TRACE_UNIQUEID
            assert data["call"]["id"] == row.id
            assert data["call"]["queue"] == "support-q"
            assert data["decision"]["reasons"] == [
                {"code": "sticky_available", "text": "Anna spoke with them"}]
            assert data["decision"]["target_operator_id"] == "op1"
            assert data["caller"]["number"] == ANNA_CALLER
            # this call (who answered is recorded when it ends), then the one with Anna
            calls = data["caller"]["recent_calls"]
            assert [(c["id"], c["operator_id"]) for c in calls] == [
                (row.id, None), (world.ids["anna_call"], "op1")]
            assert data["caller"]["sticky"]["operator_id"] == "op1"

            name, data = await anna.next(1.0)
            assert name == "call_ended"
            assert record.operator_id == "op1" and record.talk_seconds > 0
            assert data["call"] == {"id": row.id, "uniqueid": TRACE_UNIQUEID,
                                    "queue": "support-q"}
            assert (data["outcome"], data["talk_seconds"]) == ("answered", record.talk_seconds)
            assert data["hangup_by"] == record.hangup_by

            # Boris's stream carries nothing, not even payloads mislabelled for the topic
            for event in ("answered", "call_ended"):
                world.deps.events.publish(operator_topic("op2"), {
                    "event": event,
                    "data": {"operator_id": "op1", "caller_number": ANNA_CALLER,
                             "uniqueid": TRACE_UNIQUEID},
                })
            with pytest.raises(TimeoutError):
                await boris.next(0.5)
            anna.close()
            boris.close()


async def test_a_transfer_ends_the_transferring_operators_part_on_their_stream(
        world: World, base_url: str) -> None:
    """op1 answers a queue call and blind-transfers it to op2 (``tests/ami/transfers.py``,
    built from the recorded traces): op1's stream gets ``call_ended`` for their part when
    they transfer, before op2 even answers; op2's stream gets the caller, then the end."""
    raws = blind_transfer_to_op2()
    cut = next(i for i, r in enumerate(raws) if value(r, "Event") == "BlindTransfer")
    transferred_at = float(value(raws[cut], "Timestamp") or 0)
    publisher = EventPublisher(world.deps.events)
    tracker = CallTracker(InterfaceMap(AMI_OPERATORS), on_answered=publisher.on_answered,
                          on_record=publisher.on_call_record)

    def feed(part: list[bytes], start: int) -> None:
        for i, raw in enumerate(part, start):
            msg = parse_block(raw.decode())
            assert msg is not None
            tracker.feed(msg, float(i))

    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        async with anna_and_boris(client, world) as (anna, boris):

            feed(raws[: cut + 1], 0)  # op1 answered, talked 2 s and transferred the call
            name, data = await anna.next(1.0)
            assert (name, data["call"]["uniqueid"]) == ("caller", CALLER_UID)
            name, data = await anna.next(1.0)
            assert name == "call_ended"
            assert data["call"]["uniqueid"] == CALLER_UID
            assert (data["outcome"], data["transferred"], data["talk_seconds"]) == (
                "answered", True, 2)
            ended = datetime.fromisoformat(data["ended_at"].replace("Z", "+00:00"))
            assert ended.timestamp() == pytest.approx(transferred_at, abs=1e-3)
            with pytest.raises(TimeoutError):  # op2 has not answered yet
                await boris.next(0.3)

            feed(raws[cut + 1:], cut + 1)  # the caller's channel dials op2, who answers
            tracker.tick(len(raws) + 10.0)
            name, data = await boris.next(1.0)
            assert (name, data["call"]["uniqueid"]) == ("caller", CALLER_UID)
            name, data = await boris.next(1.0)
            assert (name, data["transferred"], data["hangup_by"]) == (
                "call_ended", True, "operator")
            with pytest.raises(TimeoutError):  # op1 was told once, when they left
                await anna.next(0.3)
            anna.close()
            boris.close()


async def test_revoking_a_token_ends_its_open_streams(world: World, base_url: str) -> None:
    """Through the API: the stream is told at once (the periodic re-check is far off)."""
    world.deps.stream_recheck_seconds = 60
    loop = asyncio.get_running_loop()
    admin = {"Authorization": f"Bearer {world.tokens['admin']}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        async with stream_of(client, "operator", world) as anna_r, \
                stream_of(client, "operator2", world) as boris_r, \
                stream_of(client, "readonly", world, "dashboard") as wall_r:
            anna, boris, wall = Stream(anna_r), Stream(boris_r), Stream(wall_r)
            for stream in (anna, boris, wall):
                assert (await stream.next(2))[0] == "ready"

            started = loop.time()
            r = await client.post(f"/api/v1/tokens/{world.token_ids['operator']}/revoke",
                                  headers=admin)
            assert r.status_code == 200
            assert await anna.next(CLOSE_BOUND) == ("closed", {"reason": "token_revoked"})
            await anna.ended(CLOSE_BOUND)
            assert loop.time() - started < CLOSE_BOUND

            r = await client.post(f"/api/v1/tokens/{world.token_ids['readonly']}/revoke",
                                  headers=admin)
            assert await wall.next(CLOSE_BOUND) == ("closed", {"reason": "token_revoked"})
            await wall.ended(CLOSE_BOUND)

            with pytest.raises(TimeoutError):  # Boris's token was not revoked
                await boris.next(0.3)
            assert boris.open
            boris.close()
        again = await client.get("/api/v1/stream/operator",
                                 params={"access_token": world.tokens["operator"]})
        assert again.status_code == 401


async def test_token_revoked_outside_the_api_ends_stream_at_next_recheck(
    world: World, base_url: str
) -> None:
    """``callrouter token revoke`` writes the database directly: no event, the re-check."""
    world.deps.stream_recheck_seconds = 0.5
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        async with stream_of(client, "operator", world) as anna_r:
            anna = Stream(anna_r)
            assert (await anna.next(2))[0] == "ready"
            async with world.store.transaction() as tx:
                await tx.tokens.revoke(world.token_ids["operator"])
            assert await anna.next(CLOSE_BOUND) == ("closed", {"reason": "token_revoked"})
            await anna.ended(CLOSE_BOUND)


async def test_deactivated_operator_stream_ends_and_cannot_reopen(
    world: World, base_url: str
) -> None:
    world.deps.stream_recheck_seconds = 60
    admin = {"Authorization": f"Bearer {world.tokens['admin']}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        async with anna_and_boris(client, world) as (anna, boris):
            r = await client.post("/api/v1/operators/op1/deactivate", headers=admin)
            assert r.status_code == 200
            assert await anna.next(CLOSE_BOUND) == (
                "closed", {"reason": "operator_deactivated"})
            await anna.ended(CLOSE_BOUND)
            r = await client.patch("/api/v1/operators/op2", json={"active": False},
                                   headers=admin)
            assert r.json()["active"] is False
            assert await boris.next(CLOSE_BOUND) == (
                "closed", {"reason": "operator_deactivated"})
        again = await client.get("/api/v1/stream/operator",
                                 params={"access_token": world.tokens["operator"]})
        assert (again.status_code, again.json()) == (
            403, {"detail": "this token's operator is deactivated"})
        me = await client.get("/api/v1/me", params={"access_token": world.tokens["operator"]})
        assert me.json()["operator_active"] is False  # how the console knows to stop


async def test_stream_stays_open_while_the_database_does_not_answer(
    world: World, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage must not sign every console out; the re-check resumes afterwards."""
    world.deps.stream_recheck_seconds = 0.1
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        async with stream_of(client, "operator", world) as anna_r:
            anna = Stream(anna_r)
            assert (await anna.next(2))[0] == "ready"
            healthy = world.store.transaction

            def down() -> Any:
                raise ConnectionRefusedError("database down")

            monkeypatch.setattr(world.store, "transaction", down)
            with pytest.raises(TimeoutError):
                await anna.next(0.5)
            assert anna.open
            monkeypatch.setattr(world.store, "transaction", healthy)
            async with world.store.transaction() as tx:
                await tx.tokens.revoke(world.token_ids["operator"])
            assert await anna.next(CLOSE_BOUND) == ("closed", {"reason": "token_revoked"})


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
