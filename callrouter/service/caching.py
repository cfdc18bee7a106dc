"""Short-lived caches in front of the store for what every call reads: operators, incidents."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

from callrouter.aio import retrieve_exception
from callrouter.domain.model import Incident, Operator
from callrouter.service.ports import IncidentSource, OperatorDirectory

T = TypeVar("T")


class _SingleFlight(Generic[T]):
    """One reload at a time, shared by every caller that needs it, and shielded: a caller
    cancelled by its time budget does not abort the reload the others wait for. Without
    this, an expiry under load starts one store read per waiting call, each cancelled at
    the budget, and the cache never fills again."""

    def __init__(self) -> None:
        self._task: asyncio.Task[T] | None = None

    async def run(self, load: Callable[[], Awaitable[T]]) -> T:
        return await asyncio.shield(self.start(load))

    def start(self, load: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """The reload in flight, or a new one; nobody waits for it."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(load())
            self._task.add_done_callback(retrieve_exception)
        return self._task

    def reset(self) -> None:
        self._task = None


class _StaleWhileRevalidate(Generic[T]):
    """A value read on every call and changed rarely: past its ``ttl`` it is served stale
    while one reload runs in the background. Only the first read, and a read after
    ``invalidate()``, wait for the store. A failed reload keeps the old value."""

    def __init__(self, load: Callable[[], Awaitable[T]], ttl: float) -> None:
        self._source_load = load
        self._ttl = ttl
        self._value: T | None = None
        self._at = 0.0
        self._generation = 0
        self._reload: _SingleFlight[T] = _SingleFlight()

    @property
    def current(self) -> T | None:
        """The value held now (None before the first load or after ``invalidate``)."""
        return self._value

    async def get(self) -> T:
        value = self.peek()
        if value is None:
            return await self._reload.run(self._load)
        return value

    def peek(self) -> T | None:
        """``get()`` without waiting: the value (a reload started when past its ``ttl``),
        or None when there is none yet."""
        value = self._value
        if value is not None and time.monotonic() - self._at > self._ttl:
            self._reload.start(self._load)
        return value

    async def _load(self) -> T:
        generation = self._generation
        value = await self._source_load()
        if generation == self._generation:  # not invalidated meanwhile
            self._value, self._at = value, time.monotonic()
        return value

    def invalidate(self) -> None:
        self._value = None
        self._generation += 1
        self._reload.reset()


class CachedDirectory:
    """The operator directory changes rarely and is read on every call: keep it a few seconds.

    ``invalidate()`` is called by whatever changes operators in this process (API, CLI).
    Past its ``ttl`` the directory is served stale while one reload runs in the background:
    reading 2,000 operators takes ~20 ms, and every call that arrived meanwhile used to
    wait for it.
    """

    def __init__(self, source: OperatorDirectory, ttl: float = 5.0,
                 full_reload: float = 300.0) -> None:
        self._source = source
        # A source that can say cheaply whether anything changed (the Store:
        # count and latest updated_at) is asked that first: reading 2,000 operators took
        # ~20-35 ms of the event loop every ``ttl``, a stall every call in flight waited
        # out. A full read still happens every ``full_reload`` s (edits made in SQL).
        self._version_of: Callable[[], Awaitable[object]] | None = getattr(
            source, "operators_version", None)
        self._version: object = None
        self._full_reload = full_reload
        self._loaded_at = 0.0
        self._cache: _StaleWhileRevalidate[Mapping[str, Operator]] = _StaleWhileRevalidate(
            self._load, ttl)

    async def _load(self) -> Mapping[str, Operator]:
        current = self._cache.current
        if self._version_of is not None:
            version = await self._version_of()
            fresh = time.monotonic() - self._loaded_at < self._full_reload
            if current is not None and fresh and version == self._version:
                return current  # nothing changed: no reload
        else:
            version = None
        value = await self._source.operators()
        self._version, self._loaded_at = version, time.monotonic()
        return value

    async def operators(self) -> Mapping[str, Operator]:
        return await self._cache.get()

    def operators_now(self) -> Mapping[str, Operator] | None:
        """The directory without waiting, or None before the first load."""
        return self._cache.peek()

    def invalidate(self) -> None:
        self._cache.invalidate()


class CachedIncidents:
    """Incidents that have not ended, re-read every ``ttl`` seconds in the background (as
    the directory); filtered by time on each call. Every call used to wait for the reload
    every 2 s: a SQLAlchemy read of several milliseconds added to every call in flight.
    The store is asked for incidents still active at load time; one that ends later is
    dropped by the filter, one that starts later arrives with the next reload (within
    ``ttl``) or at once when this process created it (``invalidate``)."""

    def __init__(self, source: IncidentSource, ttl: float = 2.0) -> None:
        self._source = source
        self._now: datetime | None = None  # the time of the call that asked last
        self._cache: _StaleWhileRevalidate[Sequence[Incident]] = _StaleWhileRevalidate(
            self._load, ttl)

    async def active_incidents(self, now: datetime) -> Sequence[Incident]:
        self._now = now
        return _still_active(await self._cache.get(), now)

    def active_now(self, now: datetime) -> Sequence[Incident] | None:
        """``active_incidents`` without waiting, or None before the first load."""
        self._now = now
        value = self._cache.peek()
        return None if value is None else _still_active(value, now)

    async def _load(self) -> Sequence[Incident]:
        return await self._source.active_incidents(self._now or datetime.now(UTC))

    def invalidate(self) -> None:
        self._cache.invalidate()


def _still_active(incidents: Sequence[Incident], now: datetime) -> Sequence[Incident]:
    if not incidents:
        return ()
    return [i for i in incidents if i.ended_at is None or i.ended_at > now]
