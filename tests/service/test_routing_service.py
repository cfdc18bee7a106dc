"""RoutingService with in-memory ports: inputs gathered, store failures fail open."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from callrouter.domain.model import (
    Action,
    Incident,
    Operator,
    OperatorState,
    PastCall,
)
from callrouter.domain.reasons import ReasonCode
from callrouter.domain.rules import QueueRules, Rules
from callrouter.numbers import NumberNormaliser
from callrouter.service.caching import CachedDirectory
from callrouter.service.decision_writer import DecisionWriter
from callrouter.service.ports import CallerSnapshot, DecisionRecord, InboundCall
from callrouter.service.routing import RoutingService

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ANNA = Operator("op1", "Anna", ("PJSIP/1001",))


class Snapshots:
    def __init__(self, by_number: dict[str, CallerSnapshot], fail: bool = False) -> None:
        self.by_number = by_number
        self.fail = fail
        self.asked: list[tuple[str, int]] = []

    async def snapshot(self, number: str, now: datetime, lookback_seconds: int) -> CallerSnapshot:
        self.asked.append((number, lookback_seconds))
        if self.fail:
            raise ConnectionRefusedError("database is down")
        return self.by_number.get(number, CallerSnapshot())


class Directory:
    def __init__(self) -> None:
        self.reads = 0

    async def operators(self) -> Mapping[str, Operator]:
        self.reads += 1
        return {ANNA.id: ANNA}


class Presence:
    def __init__(self, states: dict[str, OperatorState]) -> None:
        self._states = states

    def states(self) -> Mapping[str, OperatorState]:
        return self._states


class Incidents:
    def __init__(self, incidents: Sequence[Incident] = ()) -> None:
        self.incidents = list(incidents)

    async def active_incidents(self, now: datetime) -> Sequence[Incident]:
        return self.incidents


class Log:
    def __init__(self, fail_times: int = 0) -> None:
        self.records: list[DecisionRecord] = []
        self.fail_times = fail_times

    async def record(self, record: DecisionRecord) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("down")
        self.records.append(record)


def make_service(snapshots: Snapshots, states: dict[str, OperatorState], log: Log | None = None):
    writer = DecisionWriter(log) if log is not None else None
    return RoutingService(
        rules=lambda: Rules(defaults=QueueRules(), default_queue="support"),
        numbers=NumberNormaliser("RU"),
        snapshots=snapshots,
        directory=Directory(),
        presence=Presence(states),
        incidents=Incidents(),
        writer=writer,
        clock=lambda: NOW,
    ), writer


def history_with_anna() -> CallerSnapshot:
    call = PastCall("c1", "support", NOW - timedelta(minutes=30), NOW - timedelta(minutes=20),
                    "op1", talk_seconds=240)
    return CallerSnapshot(recent_calls=(call,))


async def test_repeat_caller_in_national_form_goes_back_to_operator() -> None:
    snaps = Snapshots({"+79123456789": history_with_anna()})
    service, _ = make_service(snaps, {"op1": OperatorState.AVAILABLE})
    record = await service.route_call(InboundCall("8 912 345-67-89", "support", uniqueid="1.1"))
    assert record.decision.action is Action.OPERATOR
    assert record.decision.target_interface == "PJSIP/1001"
    assert record.caller_number == "+79123456789"
    assert snaps.asked == [("+79123456789", Rules().for_queue("support").lookback)]
    assert record.inputs["last_operator"] == "op1"


async def test_withheld_caller_never_reads_history() -> None:
    snaps = Snapshots({"+79123456789": history_with_anna()})
    service, _ = make_service(snaps, {"op1": OperatorState.AVAILABLE})
    record = await service.route_call(InboundCall("89123456789", "support", callingpres=35))
    assert record.decision.action is Action.QUEUE
    assert record.decision.reason_code is ReasonCode.WITHHELD
    assert record.caller_number is None
    assert snaps.asked == []


async def test_store_down_gives_entry_queue_with_reason() -> None:
    service, _ = make_service(Snapshots({}, fail=True), {})
    record = await service.route_call(InboundCall("+79123456789", "billing"))
    assert record.decision.action is Action.QUEUE
    assert record.decision.queue == "billing"
    assert record.decision.reason_code is ReasonCode.FALLBACK_STORE_DOWN


async def test_empty_queue_argument_uses_default_queue() -> None:
    service, _ = make_service(Snapshots({}), {})
    record = await service.route_call(InboundCall("+79123456789", "  "))
    assert record.decision.queue == "support"
    fallback = service.fallback(InboundCall("+79123456789", ""), ReasonCode.FALLBACK_TIMEOUT, "t")
    assert fallback.decision.queue == "support"
    assert fallback.decision.reason_code is ReasonCode.FALLBACK_TIMEOUT


async def test_simulated_states_override_presence_without_logging() -> None:
    log = Log()
    service, _ = make_service(Snapshots({"+79123456789": history_with_anna()}),
                              {"op1": OperatorState.PAUSED}, log)
    _, live = await service.explain("+79123456789", "support")
    _, what_if = await service.explain("+79123456789", "support",
                                       states={"op1": OperatorState.AVAILABLE})
    assert live.action is Action.QUEUE and live.reason_code is ReasonCode.STICKY_UNAVAILABLE
    assert what_if.action is Action.OPERATOR
    assert log.records == []


async def test_decision_writer_retries_until_the_log_accepts() -> None:
    log = Log(fail_times=2)
    service, writer = make_service(Snapshots({}), {}, log)
    assert writer is not None
    writer.start()
    first = await service.route_call(InboundCall("+79123456789", "support", uniqueid="a"))
    second = await service.route_call(InboundCall("+79123456780", "support", uniqueid="b"))
    await writer.flush(timeout=5)
    await writer.close()
    assert [r.id for r in log.records] == [first.id, second.id]
    assert writer.failures == 2


async def test_cached_directory_reads_store_once_within_ttl() -> None:
    source = Directory()
    cached = CachedDirectory(source, ttl=60)
    await asyncio.gather(*(cached.operators() for _ in range(5)))
    await cached.operators()
    assert source.reads >= 1
    reads = source.reads
    await cached.operators()
    assert source.reads == reads
    cached.invalidate()
    await cached.operators()
    assert source.reads == reads + 1


async def test_expired_directory_is_served_stale_while_one_reload_runs() -> None:
    """Calls past the ttl do not wait for the ~20 ms reload of the whole directory."""
    release = asyncio.Event()

    class Slow(Directory):
        async def operators(self) -> Mapping[str, Operator]:
            if self.reads:  # the first read is immediate, later ones wait for release
                await release.wait()
            self.reads += 1
            return {ANNA.id: ANNA, f"op{self.reads}": ANNA}

    source = Slow()
    cached = CachedDirectory(source, ttl=0.01)
    first = await cached.operators()
    await asyncio.sleep(0.02)  # expired
    stale = await asyncio.wait_for(
        asyncio.gather(*(cached.operators() for _ in range(5))), 0.1)
    assert all(s is first for s in stale)  # served at once, the old map
    release.set()
    await asyncio.sleep(0.01)
    assert source.reads == 2  # one background reload for all of them
    assert "op2" in await cached.operators()


@pytest.mark.parametrize(
    ("raw", "pres", "expected"),
    [
        ("+7 912 345 67 89", 0, "+79123456789"),
        ("8 (912) 345-67-89", None, "+79123456789"),
        ("unknown", 0, None),
        ("anonymous", 35, None),
        ("5551234", 67, None),
        ("not a number", 0, None),
    ],
)
def test_caller_normalisation(raw: str, pres: int | None, expected: str | None) -> None:
    caller = NumberNormaliser("RU").caller(raw, pres)
    assert (caller.number if caller.identified else None) == expected


async def test_expired_incidents_are_served_stale_while_one_reload_runs() -> None:
    """Calls past the ttl do not wait for the store: the incidents read every 2 s used to
    hold every call in flight for the length of a SQLAlchemy read."""
    from datetime import UTC, datetime, timedelta

    from callrouter.domain.model import Incident
    from callrouter.service.caching import CachedIncidents

    now = datetime.now(UTC)
    release = asyncio.Event()
    outage = Incident(id="i1", title="outage", announcement="x", prefixes=(),
                      started_at=now - timedelta(minutes=5))

    class Source:
        reads = 0

        async def active_incidents(self, at: datetime) -> list[Incident]:
            if self.reads:
                await release.wait()
            self.reads += 1
            return [outage] if self.reads > 1 else []

    source = Source()
    cached = CachedIncidents(source, ttl=0.01)
    assert list(await cached.active_incidents(now)) == []
    await asyncio.sleep(0.02)  # expired
    stale = await asyncio.wait_for(
        asyncio.gather(*(cached.active_incidents(now) for _ in range(5))), 0.1)
    assert all(list(s) == [] for s in stale)  # served at once
    release.set()
    await asyncio.sleep(0.01)
    assert source.reads == 2  # one background reload for all of them
    assert list(await cached.active_incidents(now)) == [outage]
    ended = now + timedelta(hours=1)
    cached._cache._value = [Incident(id="i1", title="outage", announcement="x", prefixes=(),
                                     started_at=outage.started_at, ended_at=now)]
    assert list(await cached.active_incidents(ended)) == []  # ended by the call's time


async def test_a_routing_past_the_budget_is_abandoned_not_cancelled_and_not_recorded() -> None:
    """The caller gets the queue at the budget; the routing under it is left to finish (a
    database read is never cut mid-query) and its late decision is neither written nor
    observed: the decision log holds exactly the one the caller got."""
    from callrouter.fastagi.handler import RouteHandler

    release = asyncio.Event()
    finished: list[str] = []

    class Slow(Snapshots):
        async def snapshot(self, number: str, now: datetime, lookback_seconds: int) -> (
            CallerSnapshot
        ):
            try:
                await release.wait()
            except asyncio.CancelledError:
                finished.append("cancelled")
                raise
            finished.append("read")
            return CallerSnapshot()

    log = Log()
    service, writer = make_service(Slow({}), {}, log)
    assert writer is not None
    observed: list[DecisionRecord] = []
    service.observers.append(observed.append)
    handler = RouteHandler(service, budget=0.05)
    record, fallback = await handler.decide(InboundCall("+79123456789", "support",
                                                        uniqueid="late.1"))
    assert fallback is ReasonCode.FALLBACK_TIMEOUT
    release.set()
    for _ in range(20):
        await asyncio.sleep(0.01)
        if finished:
            break
    assert finished == ["read"]  # finished, not cancelled
    await writer.flush(timeout=2.0)
    assert [r.id for r in log.records] == [record.id]  # only the decision the caller got
    assert [r.id for r in observed] == [record.id]
    assert log.records[0].decision.reason_code is ReasonCode.FALLBACK_TIMEOUT


def test_an_unparseable_number_is_cached_small() -> None:
    """The cache keeps the error's message, not the traceback that raised it (whose frames
    a flood of garbage caller ids would otherwise keep alive, 50,000 of them)."""
    numbers = NumberNormaliser("RU", cache_size=10)
    for raw in ("garbage!!", "garbage!!"):  # the second is a cache hit
        with pytest.raises(Exception, match="not a phone number"):
            numbers.normalise(raw)
    [kept] = numbers._cache.values()
    assert isinstance(kept, Exception) and kept.__traceback__ is None
    for i in range(20):
        numbers.caller(f"junk-{i}")
    assert len(numbers._cache) == 10  # bounded


async def test_directory_reload_reads_operators_only_when_their_version_changed() -> None:
    """Past the ttl the cache asks the cheap version first; the 2,000-operator read (a
    20-35 ms stall of the event loop) happens only when something changed, or after
    ``full_reload`` seconds whatever the version says."""

    class Versioned(Directory):
        def __init__(self) -> None:
            super().__init__()
            self.version = (1, NOW)
            self.version_reads = 0

        async def operators_version(self) -> tuple[int, datetime]:
            self.version_reads += 1
            return self.version

    source = Versioned()
    cached = CachedDirectory(source, ttl=0.01, full_reload=60.0)
    await cached.operators()
    assert source.reads == 1
    for _ in range(3):  # expired, unchanged: version asked, operators not read
        await asyncio.sleep(0.02)
        await cached.operators()
        await asyncio.sleep(0.005)
    assert source.reads == 1 and source.version_reads >= 2
    source.version = (2, NOW)  # an operator added elsewhere
    await asyncio.sleep(0.02)
    await cached.operators()
    await asyncio.sleep(0.005)
    assert source.reads == 2
    cached._full_reload = 0.0  # past the full-reload period: read whatever the version
    await asyncio.sleep(0.02)
    await cached.operators()
    await asyncio.sleep(0.005)
    assert source.reads == 3


async def test_a_queue_the_rules_have_no_table_for_is_kept_as_the_entry_queue() -> None:
    """Per-queue tables are optional overrides: a call on any other queue (a real Asterisk
    queue with the defaults, or a typo in the dialplan) stays on it; default_queue is only
    for a call whose dialplan named no queue. The dialplan catches a queue Asterisk does
    not know (QUEUESTATUS=UNKNOWN -> CALLROUTER_DEFAULT_QUEUE)."""
    tables = {"support": QueueRules(), "specialists": QueueRules(sticky_window=3 * 86400)}
    service = RoutingService(
        rules=lambda: Rules(defaults=QueueRules(), queues=tables, default_queue="support"),
        numbers=NumberNormaliser("RU"), snapshots=Snapshots({}), directory=Directory(),
        presence=Presence({}), incidents=Incidents(), clock=lambda: NOW,
    )
    for queue in ("sales", "nosuchqueue"):
        record = await service.route_call(InboundCall("+79123456789", queue))
        assert record.queue == queue
        assert record.decision.queue == queue
        assert record.decision.reason_code is ReasonCode.NEW_CALLER


# -- deciding without waiting (route_now) ------------------------------------------------


class MemorySnapshots(Snapshots):
    """A source that can answer at once (as the state replica while live), or not."""

    def __init__(self, by_number: dict[str, CallerSnapshot], *, ready: bool = True) -> None:
        super().__init__(by_number)
        self.ready = ready

    def snapshot_now(self, number: str, now: datetime, lookback_seconds: int) -> (
        CallerSnapshot | None
    ):
        if not self.ready:
            return None
        self.asked.append((number, lookback_seconds))
        return self.by_number.get(number, CallerSnapshot())


def cached_service(snapshots: Snapshots, log: Log | None = None) -> (
    tuple[RoutingService, CachedDirectory, DecisionWriter | None]
):
    from callrouter.service.caching import CachedIncidents

    writer = DecisionWriter(log) if log is not None else None
    directory = CachedDirectory(Directory())
    service = RoutingService(
        rules=lambda: Rules(defaults=QueueRules(), default_queue="support"),
        numbers=NumberNormaliser("RU"), snapshots=snapshots, directory=directory,
        presence=Presence({"op1": OperatorState.AVAILABLE}),
        incidents=CachedIncidents(Incidents()), writer=writer, clock=lambda: NOW,
    )
    return service, directory, writer


async def test_route_now_decides_as_route_call_does_when_every_input_is_at_hand() -> None:
    log = Log()
    service, _, writer = cached_service(
        MemorySnapshots({"+79123456789": history_with_anna()}), log)
    assert writer is not None
    call = InboundCall("89123456789", "support", uniqueid="now.1")
    # before the directory and incidents were ever loaded: nothing at hand yet
    assert service.route_now(call) is None
    waited = await service.route_call(call)  # loads them
    at_once = service.route_now(InboundCall("89123456789", "support", uniqueid="now.2"))
    assert at_once is not None
    assert at_once.decision == waited.decision
    assert at_once.decision.action is Action.OPERATOR
    assert at_once.decision.target_operator_id == "op1"
    await writer.flush(timeout=2.0)
    assert [r.uniqueid for r in log.records] == ["now.1", "now.2"]  # both recorded


async def test_route_now_declines_when_the_snapshot_is_not_in_memory() -> None:
    snapshots = MemorySnapshots({}, ready=False)
    service, _, _ = cached_service(snapshots)
    await service.route_call(InboundCall("89123456789", "support"))  # caches loaded
    assert service.route_now(InboundCall("89123456789", "support")) is None
    # a withheld caller reads no history: decided at once all the same
    withheld = service.route_now(InboundCall("anonymous", "support"))
    assert withheld is not None and withheld.decision.reason_code is ReasonCode.WITHHELD


async def test_route_now_is_off_for_sources_that_always_wait() -> None:
    service, _ = make_service(Snapshots({}), {})  # no snapshot_now, no cached directory
    assert service.route_now(InboundCall("89123456789", "support")) is None
