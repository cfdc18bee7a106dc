"""The real side service (API + pages) on a temp SQLite file, run by uvicorn on a thread.

Calls are made the way production makes them: the routing decision through
``RoutingService.route_call`` (what the FastAGI route calls), the answered call through
the store's call-record sink and ``EventPublisher.on_answered`` (what the AMI listener
feeds), the hangup through ``EventPublisher.on_call_record`` and the sink, operator states
through ``EventPublisher.on_operator_state``. Everything runs on
the service's own event loop; tests call in with ``run()``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from callrouter.api.app import create_app
from callrouter.api.deps import ApiDeps, ComponentStatus
from callrouter.api.notify import EventPublisher
from callrouter.config.rules_holder import RulesHolder
from callrouter.domain.model import Operator, OperatorState, Tier
from callrouter.events import EventHub
from callrouter.metrics import Metrics
from callrouter.numbers import NumberNormaliser
from callrouter.service.decision_writer import DecisionWriter
from callrouter.service.ports import CallRecord, DecisionRecord, InboundCall
from callrouter.service.routing import RoutingService
from callrouter.store.db import make_engine, make_sessionmaker
from callrouter.store.migrate import upgrade
from callrouter.store.records import Role
from callrouter.store.store import Store
from callrouter.web.routes import web_router

T = TypeVar("T")


class Presence:
    """Live operator states, as the AMI presence book would hold them."""

    def __init__(self) -> None:
        self._states: dict[str, OperatorState] = {}

    def states(self) -> Mapping[str, OperatorState]:
        return dict(self._states)

    def set(self, operator_id: str, state: OperatorState) -> None:
        self._states[operator_id] = state


@dataclass
class Tokens:
    admin: str = ""
    operators: dict[str, str] = field(default_factory=dict)


def utcnow() -> datetime:
    return datetime.now(UTC)


class LiveService:
    def __init__(self, db_path: Path) -> None:
        self.url = f"sqlite+aiosqlite:///{db_path}"
        self.tokens = Tokens()
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, name="live-service", daemon=True)
        self._uid = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> LiveService:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the service did not start within 30 s")
        if self._error is not None:
            raise RuntimeError("the service failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run ``coro`` on the service's loop and wait for its result."""
        assert self._loop is not None
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await upgrade(self.url)
        engine = make_engine(self.url)
        self.store = Store(make_sessionmaker(engine))
        self.hub = EventHub()
        self.metrics = Metrics()
        self.presence = Presence()
        self.publisher = EventPublisher(self.hub)
        self.rules = RulesHolder()
        numbers = NumberNormaliser("RU")
        self.writer = DecisionWriter(self.store)
        self.writer.start()
        self.routing = RoutingService(
            rules=lambda: self.rules.rules, numbers=numbers, snapshots=self.store,
            directory=self.store, presence=self.presence, incidents=self.store,
            writer=self.writer, observers=[self.metrics.on_decision, self.publisher.on_decision],
        )
        up = ComponentStatus(ok=True, state="connected")
        deps = ApiDeps(
            store=self.store, routing=self.routing, rules=self.rules, presence=self.presence,
            ami_status=lambda: up, fastagi_status=lambda: up, events=self.hub,
            metrics=self.metrics, numbers=numbers, stream_ping_seconds=2.0,
        )
        self.deps = deps  # a test may swap a component's status (the System card)
        app = create_app(deps)
        app.include_router(web_router())
        await self._seed()

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                               lifespan="off", timeout_graceful_shutdown=1))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():  # noqa: ASYNC110 (no started event)
            await asyncio.sleep(0.02)
        self._ready.set()
        await self._stop.wait()
        server.should_exit = True
        server.force_exit = True  # open event streams would otherwise hold the shutdown
        await asyncio.wait_for(serving, 10)
        await self.writer.close()
        await engine.dispose()

    # -- data ---------------------------------------------------------------------------

    async def _seed(self) -> None:
        now = utcnow()
        async with self.store.transaction() as tx:
            for op_id, name, interface in (
                ("op1", "Anna Petrova", "PJSIP/1001"), ("op2", "Boris Ivanov", "PJSIP/1002")
            ):
                await tx.operators.add(Operator(op_id, name, (interface,), queues=("support",)))
            await tx.operators.add(Operator(
                "spec1", "Svetlana Kuznetsova-Rimskaya-Korsakova, senior network specialist",
                ("PJSIP/2001",), tier=Tier.SPECIALIST, queues=("support",),
            ))
            self.tokens.admin = (await tx.tokens.create("wall screen", Role.ADMIN)).plaintext
            for op in ("op1", "op2"):
                issued = await tx.tokens.create(f"{op} console", Role.OPERATOR, operator_id=op)
                self.tokens.operators[op] = issued.plaintext
            await tx.flags.set_name("+79123456789", "Ivan Sidorov")
            await tx.tickets.create("+79123456789", "Router reboots every hour")
        for op in ("op1", "op2", "spec1"):
            self.presence.set(op, OperatorState.AVAILABLE)
        # Ivan spoke with Anna 40 minutes ago; it was not resolved.
        await self.store.write_call_records([CallRecord(
            uniqueid="seed-1", caller_raw="89123456789", caller_number="+79123456789",
            queue="support", started_at=now - timedelta(minutes=46),
            answered_at=now - timedelta(minutes=45), ended_at=now - timedelta(minutes=40),
            operator_id="op1", answered_interface="PJSIP/1001", talk_seconds=300,
            outcome="answered", hangup_by="caller",
        )])
        async with self.store.transaction() as tx:
            seeded = await tx.calls.get_by_uniqueid("seed-1")
            assert seeded is not None
            await tx.calls.mark_resolved(seeded.id, False)
            await tx.calls.set_note(seeded.id, "router reboots, firmware 2.1")

    async def seed_history(self, minutes: int = 55) -> None:
        """An hour of calls for the dashboard's charts: repeat callers, new ones, an
        operator who logs off (sticky fallbacks), decided at their own past moments."""
        now = utcnow()
        callers = [f"+7495000{n:04d}" for n in range(1, 9)]
        for i in range(36):
            at = now - timedelta(minutes=minutes - i * 1.5)
            off = 12 <= i < 20
            self.presence.set("op2", OperatorState.LOGGED_OFF if off else OperatorState.AVAILABLE)
            record = await self.routing.route_call(InboundCall(
                caller_raw=callers[(i * 3) % len(callers)], queue="support",
                uniqueid=self.next_uniqueid()), now=at)
            await self.writer.flush()
            operator = record.decision.target_operator_id or ("op1", "op2")[i % 2]
            if self.presence.states().get(operator) is OperatorState.LOGGED_OFF:
                operator = "op1"
            await self.store.write_call_records([CallRecord(
                uniqueid=record.uniqueid or "", caller_number=record.caller_number,
                queue="support", decision_id=record.id, started_at=at,
                answered_at=at + timedelta(seconds=10), ended_at=at + timedelta(minutes=3),
                operator_id=operator, talk_seconds=170, outcome="answered", hangup_by="caller",
            )])
        self.presence.set("op2", OperatorState.AVAILABLE)

    def next_uniqueid(self) -> str:
        self._uid += 1
        return f"1700000000.{self._uid}"

    async def route(self, caller_raw: str, uniqueid: str | None = None) -> DecisionRecord:
        """What the FastAGI route does for an inbound call: decide, log, publish."""
        record = await self.routing.route_call(InboundCall(
            caller_raw=caller_raw, queue="support", uniqueid=uniqueid or self.next_uniqueid(),
            channel="PJSIP/trunk-00000001",
        ))
        await self.writer.flush()
        return record

    async def answer_prepared(self, record: DecisionRecord, operator_id: str) -> None:
        """The AMI side up to the screen-pop: the operator is in the call, the record is stored."""
        self.presence.set(operator_id, OperatorState.IN_CALL)
        self.publisher.on_operator_state(operator_id, OperatorState.IN_CALL)
        assert record.uniqueid is not None
        await self.store.write_call_records([CallRecord(
            uniqueid=record.uniqueid, caller_number=record.caller_number,
            caller_raw=record.caller_raw, queue=record.queue, decision_id=record.id,
            answered_at=utcnow(), operator_id=operator_id,
            answered_interface=f"PJSIP/{operator_id}", outcome="in_progress",
            sticky_hit=record.decision.target_operator_id == operator_id
            if record.decision.target_operator_id else None,
        )])

    def publish_answered(self, record: DecisionRecord, operator_id: str | None,
                         **extra: Any) -> None:
        """The AMI listener's "call answered" for ``operator_id`` (thread-safe); ``extra``:
        ``transferred_from`` and ``leg_ended`` of a transfer, as ``CallAnswered`` has them."""
        payload = {
            "server_id": record.server_id, "uniqueid": record.uniqueid, "linkedid": record.linkedid,
            "operator_id": operator_id,
            "interface": f"PJSIP/{operator_id}" if operator_id else None,
            "caller_number": record.caller_number, "caller_name": None,
            "decision_id": record.id, "queue": record.queue, **extra,
        }
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.publisher.on_answered, payload)

    async def write_records(self, *records: CallRecord) -> None:
        """What the listener's writer does with live records: into the call-record sink."""
        await self.store.write_call_records(list(records))

    async def finish(self, record: CallRecord) -> None:
        """A final record as the listener hands it out: to the publisher, then the sink."""
        self.publisher.on_call_record(record)
        await self.store.write_call_records([record])

    async def end_call(self, record: DecisionRecord, operator_id: str, talk_seconds: int) -> None:
        """The AMI side of the hangup: the finished call's record goes to the publisher and
        the call-record sink (in the listener's order: the sink writes it a moment later)."""
        assert record.uniqueid is not None
        now = utcnow()
        ended = CallRecord(
            uniqueid=record.uniqueid, caller_number=record.caller_number,
            caller_raw=record.caller_raw, queue=record.queue, decision_id=record.id,
            answered_at=now - timedelta(seconds=talk_seconds), ended_at=now,
            operator_id=operator_id, answered_interface=f"PJSIP/{operator_id}",
            talk_seconds=talk_seconds, outcome="answered", hangup_by="caller",
        )
        self.publisher.on_call_record(ended)
        await self.store.write_call_records([ended])
        self.presence.set(operator_id, OperatorState.AVAILABLE)
        self.publisher.on_operator_state(operator_id, OperatorState.AVAILABLE)

    def set_state(self, operator_id: str, state: OperatorState) -> None:
        def apply() -> None:
            self.presence.set(operator_id, state)
            self.publisher.on_operator_state(operator_id, state)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(apply)
