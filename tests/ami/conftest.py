"""Fixtures for the AMI adapter tests: operators, the fake AMI server, a listener on port 0."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from callrouter.ami.directory import DirectorySource
from callrouter.ami.listener import AmiListener, AmiSettings
from callrouter.ami.tracker import CallAnswered
from callrouter.domain.model import Operator
from callrouter.service.ports import CallRecord
from callrouter.simulator.ami import FakeAmiServer, FakeMember
from tests import traces

TRACES = traces.AMI


def trace(name: str) -> Path:
    return traces.present(TRACES / f"{name}.events-on.session")


OPERATORS = {
    f"op{i}": Operator(id=f"op{i}", name=f"Operator {i}",
                       interfaces=(f"Local/op{i}@operators/n",), queues=("support-q",))
    for i in (1, 2, 3)
}

MEMBERS = [
    FakeMember("support-q", "Local/op1@operators/n", "Operator One"),
    FakeMember("support-q", "Local/op2@operators/n", "Operator Two"),
    FakeMember("fallback-q", "Local/op1@operators/n", "Operator One", paused=True),
    FakeMember("custom-q", "Local/op1@operators/n", "Operator One", state_interface="Custom:op1"),
]


class Recorder:
    """What a listener hands out: final records, live records (in progress, no end) and
    answered notifications, each in order."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []
        self.live: list[CallRecord] = []
        self.answered: list[CallAnswered] = []

    def record(self, record: CallRecord) -> None:
        (self.live if record.ended_at is None else self.records).append(record)

    async def wait_records(self, n: int, timeout: float = 5.0) -> list[CallRecord]:
        deadline = time.monotonic() + timeout
        while len(self.records) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.records)} records, wanted {n}")
            await asyncio.sleep(0.01)
        return self.records


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def ami_server() -> AsyncIterator[FakeAmiServer]:
    server = FakeAmiServer(members=MEMBERS)
    await server.start()
    yield server
    await server.stop()


ListenerFactory = Callable[..., "asyncio.Future[tuple[AmiListener, Recorder]]"]


@pytest.fixture
async def make_listener(ami_server: FakeAmiServer) -> AsyncIterator[Callable[..., object]]:
    made: list[AmiListener] = []

    async def make(secret: str = "secret", operators: dict[str, Operator] | None = None,
                   wait: bool = True, tracker_options: dict[str, object] | None = None,
                   members: Sequence[FakeMember] | None = None,
                   directory: DirectorySource | None = None,
                   **settings: object) -> tuple[AmiListener, Recorder]:
        rec = Recorder()
        options: dict[str, object] = dict(
            host="127.0.0.1", port=ami_server.port, username="callrouter", secret=secret,
            server_id="ast1", backoff_min=0.05, backoff_max=0.2, ping_interval=0.2,
            ping_timeout=1.0, tick_interval=0.05)
        options.update(settings)
        listener = AmiListener(
            AmiSettings(**options),  # type: ignore[arg-type]
            operators or OPERATORS, on_record=rec.record,
            on_answered=rec.answered.append,
            tracker_options=tracker_options or {"grace_seconds": 0.2}, directory=directory)
        await listener.start()
        made.append(listener)
        if wait:
            await listener.wait_connected(5)
        return listener, rec

    yield make
    for listener in made:
        await listener.stop()
