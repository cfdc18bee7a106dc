"""Short-lived caches in front of the store for what every call reads: operators, incidents."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Generic, TypeVar

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
            self._task.add_done_callback(_retrieve)
        return self._task

    def reset(self) -> None:
        self._task = None


def _retrieve(task: asyncio.Task[T]) -> None:
    if not task.cancelled():
        task.exception()  # a failed reload is raised to its waiters, not logged as lost


class CachedDirectory:
    """The operator directory changes rarely and is read on every call: keep it a few seconds.

    ``invalidate()`` is called by whatever changes operators in this process (API, CLI).
    Past its ``ttl`` the directory is served stale while one reload runs in the background
    (stale-while-revalidate): reading 2,000 operators takes ~20 ms, and every call that
    arrived meanwhile used to wait for it. Only the first read, and a read after
    ``invalidate()``, wait.
    """

    def __init__(self, source: OperatorDirectory, ttl: float = 5.0) -> None:
        self._source = source
        self._ttl = ttl
        self._value: Mapping[str, Operator] | None = None
        self._at = 0.0
        self._generation = 0
        self._reload: _SingleFlight[Mapping[str, Operator]] = _SingleFlight()

    async def operators(self) -> Mapping[str, Operator]:
        value = self._value
        if value is None:
            return await self._reload.run(self._load)
        if time.monotonic() - self._at > self._ttl:
            self._reload.start(self._load)  # a failed reload keeps the old directory
        return value

    async def _load(self) -> Mapping[str, Operator]:
        generation = self._generation
        value = await self._source.operators()
        if generation == self._generation:  # not invalidated meanwhile
            self._value, self._at = value, time.monotonic()
        return value

    def invalidate(self) -> None:
        self._value = None
        self._generation += 1
        self._reload.reset()


class CachedIncidents:
    """Active incidents, re-read every ``ttl`` seconds; filtered by time on each call."""

    def __init__(self, source: IncidentSource, ttl: float = 2.0) -> None:
        self._source = source
        self._ttl = ttl
        self._value: Sequence[Incident] | None = None
        self._at = 0.0
        self._generation = 0
        self._reload: _SingleFlight[Sequence[Incident]] = _SingleFlight()

    async def active_incidents(self, now: datetime) -> Sequence[Incident]:
        value = self._value
        if value is None or time.monotonic() - self._at > self._ttl:
            value = await self._reload.run(lambda: self._load(now))
        return [i for i in value if i.ended_at is None or i.ended_at > now]

    async def _load(self, now: datetime) -> Sequence[Incident]:
        generation = self._generation
        value = await self._source.active_incidents(now)
        if generation == self._generation:  # not invalidated meanwhile
            self._value, self._at = value, time.monotonic()
        return value

    def invalidate(self) -> None:
        self._value = None
        self._generation += 1
        self._reload.reset()
