"""Short-lived caches in front of the store for what every call reads: operators, incidents."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime

from callrouter.domain.model import Incident, Operator
from callrouter.service.ports import IncidentSource, OperatorDirectory


class CachedDirectory:
    """The operator directory changes rarely and is read on every call: keep it a few seconds.

    ``invalidate()`` is called by whatever changes operators in this process (API, CLI).
    """

    def __init__(self, source: OperatorDirectory, ttl: float = 5.0) -> None:
        self._source = source
        self._ttl = ttl
        self._value: Mapping[str, Operator] | None = None
        self._at = 0.0

    async def operators(self) -> Mapping[str, Operator]:
        if self._value is None or time.monotonic() - self._at > self._ttl:
            self._value = await self._source.operators()
            self._at = time.monotonic()
        return self._value

    def invalidate(self) -> None:
        self._value = None


class CachedIncidents:
    """Active incidents, re-read every ``ttl`` seconds; filtered by time on each call."""

    def __init__(self, source: IncidentSource, ttl: float = 2.0) -> None:
        self._source = source
        self._ttl = ttl
        self._value: Sequence[Incident] | None = None
        self._at = 0.0

    async def active_incidents(self, now: datetime) -> Sequence[Incident]:
        if self._value is None or time.monotonic() - self._at > self._ttl:
            self._value = await self._source.active_incidents(now)
            self._at = time.monotonic()
        return [i for i in self._value if i.ended_at is None or i.ended_at > now]

    def invalidate(self) -> None:
        self._value = None
