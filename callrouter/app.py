"""The composition root: the one place that builds settings, store, servers and wires them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from callrouter.aio import LoopLag
from callrouter.config.rules_holder import RulesHolder
from callrouter.config.settings import Settings
from callrouter.numbers import NumberNormaliser
from callrouter.service.caching import CachedDirectory, CachedIncidents
from callrouter.service.decision_writer import DecisionWriter
from callrouter.service.ports import DecisionRecord
from callrouter.service.routing import NoPresence, RoutingService
from callrouter.store.db import make_engine, make_sessionmaker
from callrouter.store.migrate import upgrade
from callrouter.store.pg_hot import PgHotPath
from callrouter.store.pg_replica import PgStateReplica
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
    hot: PgHotPath | None = None  # the FastAGI path's own asyncpg pool (PostgreSQL only)
    replica: PgStateReplica | None = None  # callers' routing state in memory (PostgreSQL)
    loop_lag: LoopLag | None = None  # the event loop's lag, into the metrics
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def presence(self) -> Any:
        return self.ami.presence if self.ami is not None else NoPresence()

    async def close(self) -> None:
        if self.loop_lag is not None:
            self.loop_lag.stop()
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
            await self.call_writer.stop()
        await self.writer.close()
        if self.replica is not None:
            await self.replica.close()
        if self.hot is not None:
            await self.hot.close()
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
    from callrouter.api.notify import EventPublisher
    from callrouter.events import EventHub
    from callrouter.fastagi.handler import RouteHandler, SessionObserver, route_table
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
    # On PostgreSQL the call path (snapshot read, decision batches) skips SQLAlchemy.
    hot = None if is_sqlite(settings.database.url) else PgHotPath(
        settings.database.url, max_size=settings.database.pool_size,
        max_batches=settings.database.snapshot_statements,
    )
    replica = None
    if hot is not None and settings.database.state_replica:
        replica = PgStateReplica(settings.database.url, hot,
                                 window=lambda: rules.rules.lookback, freeze_loaded=True)
        replica.start()
    writer = DecisionWriter(
        hot or store, linger=settings.fastagi.decision_linger_ms / 1000.0
    )
    writer.start()
    hub = EventHub()
    metrics = Metrics()
    metrics.watch_decision_log(writer)
    loop_lag = LoopLag(metrics.loop_lag.observe)
    loop_lag.start()
    publisher = EventPublisher(hub)

    runtime = Runtime(
        settings=settings, rules=rules, store=store, engine=engine, service=None,  # type: ignore[arg-type]
        directory=directory, incidents=incidents, writer=writer, numbers=numbers,
        hub=hub, metrics=metrics, hot=hot, replica=replica, loop_lag=loop_lag,
    )
    if replica is not None:
        metrics.watch_state_replica(replica.status)

    ami_on = settings.ami.enabled if with_ami is None else with_ami
    if ami_on:
        a = settings.ami
        journal = a.journal_path or _default_journal(settings)
        runtime.call_writer = CallRecordWriter(store, journal_path=journal)
        await runtime.call_writer.start()
        metrics.watch_call_records(runtime.call_writer.status)
        runtime.ami = AmiListener(
            ListenerSettings(
                host=a.host, port=a.port, username=a.username,
                secret=a.secret.get_secret_value(), server_id=a.server_id,
                ping_interval=float(a.ping_interval), events=a.events,
                directory_interval=float(a.directory_reload_seconds),
                directory_miss_interval=float(a.directory_miss_seconds),
            ),
            await store.operators(),
            on_record=_fan_out(
                _normalised(numbers, runtime.call_writer.submit), metrics.on_call_record,
                publisher.on_call_record,  # "call_ended" on the operator's stream
            ),
            on_answered=publisher.on_answered,
            on_status=lambda status: metrics.set_ami_state(_AMI_STATE.get(status.state,
                                                                           "disconnected")),
            # re-read while running: an operator added or re-bound needs no restart
            directory=store.operators,
        )
        runtime.ami.presence.on_change = publisher.on_operator_state
        await runtime.ami.start()

    service = RoutingService(
        rules=lambda: rules.rules,
        numbers=numbers,
        snapshots=replica or hot or store,
        directory=directory,
        presence=runtime.presence,
        incidents=incidents,
        writer=writer,
        # on_decision builds dashboard JSON only while a dashboard listens, and remembers
        # the decision (a dict insert) for the operator's screen-pop.
        observers=[metrics.on_decision, publisher.on_decision],
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
            observer=cast(SessionObserver, metrics.fastagi),  # its shape; metrics does not
        ).start()                                             # import the adapter
        server = runtime.fastagi
        metrics.watch_fastagi(lambda: server.active)

    if with_api:
        runtime.api_server = await _start_api(runtime)
    return runtime


def settle_heap() -> None:
    """Once the runtime is built: move every object alive now (modules, settings, caches)
    out of the garbage collector's reach (``gc.freeze``). A full collection otherwise
    walks them all — measured 33 ms for ~80,000 objects — and stalls every call in flight
    at that moment; what a call allocates later is still collected as usual."""
    import gc

    gc.collect()
    gc.freeze()


def _directory_changed(runtime: Runtime) -> Callable[[], None]:
    """After the API changed operators: routing re-reads them at its next call, and the AMI
    listener at once (rather than at its next periodic reload)."""

    def changed() -> None:
        runtime.directory.invalidate()
        if runtime.ami is not None and runtime.ami.directory is not None:
            runtime.ami.directory.reload_soon()

    return changed


# The listener's states, as the metric names them.
_AMI_STATE = {"connected": "connected", "connecting": "connecting"}


def _default_journal(settings: Settings) -> Path:
    url = settings.database.url
    if is_sqlite(url):
        return Path(url.split("///", 1)[-1] + ".call-journal")
    # Several daemons (one per Asterisk) may share PostgreSQL and a working directory:
    # each needs its own journal, or one would replay the other's records as its own.
    server = settings.ami.server_id
    return Path("callrouter-call-journal.jsonl" if server == "default"
                else f"callrouter-call-journal-{server}.jsonl")


def _normalised(numbers: NumberNormaliser, submit: Callable[[Any], None]) -> Callable[[Any], None]:
    """AMI sees the caller id as dialled; the store keys history by E.164.

    When the call passed the FastAGI route, the decision row already holds the number as
    routing saw it — including *no* number for a withheld caller, whose CallerIDNum AMI
    may still show. The AMI record must never put a number there, or a withheld caller's
    next call would be matched to history.
    """

    def normalise(record: Any) -> None:
        if record.decision_id:
            number = None
        else:
            caller = numbers.caller(record.caller_raw or record.caller_number or "")
            number = caller.number if caller.identified else None
        submit(dataclasses.replace(record, caller_number=number))

    return normalise


def _fan_out(*targets: Callable[[Any], None]) -> Callable[[Any], None]:
    def fan(value: Any) -> None:
        for target in targets:
            try:
                target(value)
            except Exception:
                log.exception("observer %r failed", target)
    return fan


async def _start_api(runtime: Runtime) -> Any:
    import uvicorn

    class _EmbeddedServer(uvicorn.Server):
        """uvicorn inside our loop: signals are ours (serve_forever), not uvicorn's."""

        def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
            return contextlib.nullcontext()

    from callrouter.api.app import create_app
    from callrouter.api.deps import ApiDeps, ComponentStatus, status_of_listener

    def ami_status() -> ComponentStatus:
        if runtime.ami is None:
            return ComponentStatus(ok=True, state="disabled")
        return status_of_listener(runtime.ami.status)

    def fastagi_status() -> ComponentStatus:
        server = runtime.fastagi
        if server is None:
            return ComponentStatus(ok=False, state="not started")
        listening = server.listening if hasattr(server, "listening") else True
        return ComponentStatus(ok=bool(listening), state="listening" if listening else "down",
                               detail=f"{server.host}:{server.port}")

    def replica_status() -> ComponentStatus:
        replica = runtime.replica
        if replica is None:
            return ComponentStatus(ok=True, state="disabled",
                                   detail="every caller is read from the database")
        s = replica.status
        detail = (f"{s.callers} callers, {s.calls} calls in memory" if s.state == "live"
                  else s.last_error)
        # not live: routing still works, reading the database per call
        return ComponentStatus(ok=s.state == "live", state=s.state, detail=detail)

    app = create_app(ApiDeps(
        store=runtime.store, routing=runtime.service, rules=runtime.rules,
        presence=runtime.presence, ami_status=ami_status, fastagi_status=fastagi_status,
        state_replica_status=replica_status,
        events=runtime.hub, metrics=runtime.metrics, numbers=runtime.numbers,
        invalidate_directory=_directory_changed(runtime),
        invalidate_incidents=runtime.incidents.invalidate,
    ))
    try:
        from callrouter.web.routes import web_router

        app.include_router(web_router())
    except ImportError:  # pages not installed: the API alone still serves
        log.info("web pages not available")
    config = uvicorn.Config(
        app, host=runtime.settings.api.host, port=runtime.settings.api.port,
        log_config=None, access_log=False, lifespan="off",
    )
    server = _EmbeddedServer(config)
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


class _RecordingRouter:
    """The classic entry lives for one call: it writes its decision before it returns."""

    def __init__(self, service: RoutingService, store: Store) -> None:
        self._service = service
        self._store = store

    async def route_call(self, call: Any, now: Any = None, *,
                         wanted: Callable[[], bool] | None = None) -> DecisionRecord:
        record = await self._service.route_call(call, now, wanted=wanted)
        if wanted is not None and not wanted():
            return record  # abandoned at the budget: the caller got the queue
        try:
            await self._store.record(record)
        except Exception as exc:  # the caller is routed either way
            log.warning("decision %s not logged: %s", record.id, exc)
        return record

    def fallback(self, call: Any, code: Any, text: str) -> DecisionRecord:
        return self._service.fallback(call, code, text)


async def build_classic_router() -> _RecordingRouter:
    """The router of ``agi/callrouter-route.agi`` (one process per call, no AMI presence:
    a sticky target is only rung directly by the FastAGI daemon, which has live states)."""
    from callrouter.config.settings import load_settings

    settings = load_settings()
    rules = RulesHolder.from_file(settings.config_file)
    # No migration here: a process per call must be quick; ``callrouter db upgrade`` (or a
    # running ``callrouter serve``) prepares the database.
    store = Store(make_sessionmaker(make_engine(settings.database.url)))
    service = RoutingService(
        rules=lambda: rules.rules,
        numbers=NumberNormaliser(settings.numbers.default_region,
                                 settings.numbers.shared_numbers),
        snapshots=store, directory=store, presence=NoPresence(), incidents=store,
    )
    return _RecordingRouter(service, store)
