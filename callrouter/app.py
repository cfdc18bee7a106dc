"""The composition root: the one place that builds settings, store, servers and wires them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callrouter.config.rules_holder import RulesHolder
from callrouter.config.settings import Settings
from callrouter.numbers import NumberNormaliser
from callrouter.service.caching import CachedDirectory, CachedIncidents
from callrouter.service.decision_writer import DecisionWriter
from callrouter.service.ports import DecisionRecord
from callrouter.service.routing import NoPresence, RoutingService
from callrouter.store.db import make_engine, make_sessionmaker
from callrouter.store.migrate import upgrade
from callrouter.store.store import Store

log = logging.getLogger("callrouter")


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


async def prepare_database(settings: Settings) -> None:
    """A fresh SQLite file is migrated on start; PostgreSQL is migrated by ``db upgrade``.

    (Several daemons may share one PostgreSQL: a schema change there is an operator's
    decision, not a side effect of a restart.)
    """
    url = settings.database.url
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        await upgrade(url)


@dataclass
class Runtime:
    """Everything ``callrouter serve`` runs, built inside the running loop."""

    settings: Settings
    rules: RulesHolder
    store: Store
    engine: Any
    service: RoutingService
    directory: CachedDirectory
    incidents: CachedIncidents
    writer: DecisionWriter
    numbers: NumberNormaliser
    fastagi: Any = None
    ami: Any = None
    call_writer: Any = None
    api_server: Any = None
    hub: Any = None
    metrics: Any = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def presence(self) -> Any:
        return self.ami.presence if self.ami is not None else NoPresence()

    async def close(self) -> None:
        if self.api_server is not None:
            self.api_server.should_exit = True
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        if self.fastagi is not None:
            await self.fastagi.close()
        if self.ami is not None:
            await self.ami.stop()
        if self.call_writer is not None:
            await self.call_writer.close()
        await self.writer.close()
        await self.engine.dispose()


async def build_runtime(
    settings: Settings,
    rules: RulesHolder,
    *,
    with_fastagi: bool = True,
    with_ami: bool | None = None,
    with_api: bool = True,
) -> Runtime:
    """Build and start every part the settings ask for. Call inside the running loop."""
    from callrouter.ami.journal import CallRecordWriter
    from callrouter.ami.listener import AmiListener
    from callrouter.ami.listener import AmiSettings as ListenerSettings
    from callrouter.events import EventHub
    from callrouter.fastagi.handler import RouteHandler, route_table
    from callrouter.fastagi.server import FastAgiServer
    from callrouter.metrics import Metrics

    await prepare_database(settings)
    engine = make_engine(settings.database.url)
    store = Store(make_sessionmaker(engine))
    numbers = NumberNormaliser(
        settings.numbers.default_region, settings.numbers.shared_numbers
    )
    directory = CachedDirectory(store)
    incidents = CachedIncidents(store)
    writer = DecisionWriter(store)
    writer.start()
    hub = EventHub()
    metrics = Metrics()

    runtime = Runtime(
        settings=settings, rules=rules, store=store, engine=engine, service=None,  # type: ignore[arg-type]
        directory=directory, incidents=incidents, writer=writer, numbers=numbers,
        hub=hub, metrics=metrics,
    )

    ami_on = settings.ami.enabled if with_ami is None else with_ami
    if ami_on:
        a = settings.ami
        journal = a.journal_path or _default_journal(settings)
        runtime.call_writer = CallRecordWriter(store, journal_path=journal)
        await runtime.call_writer.start()
        runtime.ami = AmiListener(
            ListenerSettings(
                host=a.host, port=a.port, username=a.username,
                secret=a.secret.get_secret_value(), server_id=a.server_id,
                ping_interval=float(a.ping_interval),
            ),
            await store.operators(),
            on_record=_fan_out(runtime.call_writer.submit, metrics.on_call_record,
                               _publisher(hub, "calls")),
            on_answered=_publisher(hub, "answered"),
            on_status=metrics.set_ami_state,
        )
        await runtime.ami.start()

    service = RoutingService(
        rules=lambda: rules.rules,
        numbers=numbers,
        snapshots=store,
        directory=directory,
        presence=runtime.presence,
        incidents=incidents,
        writer=writer,
        observers=[metrics.on_decision, _decision_publisher(hub)],
    )
    if runtime.ami is not None:
        ami = runtime.ami
        service.observers.append(
            lambda r: ami.expect(r.uniqueid, r.id, r.decision.target_operator_id)
            if r.uniqueid else None
        )
    runtime.service = service

    if with_fastagi:
        f = settings.fastagi
        handler = RouteHandler(
            service, budget=f.budget_ms / 1000.0, default_queue=rules.rules.default_queue,
            server_id=settings.ami.server_id,
        )
        runtime.fastagi = await FastAgiServer(
            route_table(handler), fallback=handler.on_unknown_route, host=f.host, port=f.port,
            env_timeout=f.header_timeout_ms / 1000.0, max_sessions=f.max_sessions,
        ).start()

    if with_api:
        runtime.api_server = await _start_api(runtime)
    return runtime


def _default_journal(settings: Settings) -> Path:
    url = settings.database.url
    if is_sqlite(url):
        return Path(url.split("///", 1)[-1] + ".call-journal")
    return Path("callrouter-call-journal.jsonl")


def _fan_out(*targets: Callable[[Any], None]) -> Callable[[Any], None]:
    def fan(value: Any) -> None:
        for target in targets:
            try:
                target(value)
            except Exception:
                log.exception("observer %r failed", target)
    return fan


def _publisher(hub: Any, topic: str) -> Callable[[Any], None]:
    def publish(value: Any) -> None:
        hub.publish(topic, value)
    return publish


def _decision_publisher(hub: Any) -> Callable[[DecisionRecord], None]:
    return _publisher(hub, "decisions")


async def _start_api(runtime: Runtime) -> Any:
    import uvicorn

    from callrouter.api.app import build_app

    app = build_app(runtime)
    config = uvicorn.Config(
        app, host=runtime.settings.api.host, port=runtime.settings.api.port,
        log_config=None, access_log=False, lifespan="off",
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(), name="http")
    runtime._tasks.append(task)
    for _ in range(100):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    if task.done():
        task.result()
    return server


async def serve_forever(runtime: Runtime) -> None:
    """Run until SIGINT/SIGTERM, then close every part."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runtime.close()
