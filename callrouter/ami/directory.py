"""Keeps the listener's interface map current while it runs: periodic and on-demand reloads.

The operator directory changes while the daemon runs (an operator added, an interface
re-bound, an operator deactivated). The listener reloads it every ``interval`` seconds,
and sooner when an event names an interface nobody claims. Those on-demand reloads are
rate-limited, so a stream of events about interfaces that belong to no operator (trunks,
test phones, typos in queues.conf) cannot turn into a stream of database reads:

* all on-demand reloads together: at most one per ``miss_interval``; the unknown
  interfaces seen meanwhile are checked by that one reload;
* an interface a reload did not find is not asked about again for ``miss_ttl`` seconds,
  unless the event is *urgent* (a call is ringing or answered on it: the screen-pop
  and the call record want the operator now); urgent misses are still rate-limited.

A failing reload (database down, slow) is logged and the old map stays in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from callrouter.ami.interfaces import interface_key
from callrouter.domain.model import Operator

log = logging.getLogger(__name__)

DirectorySource = Callable[[], Awaitable[Mapping[str, Operator]]]

_MAX_PENDING = 1_000
_MAX_CHECKED = 10_000


@dataclass(slots=True)
class DirectoryStatus:
    """For metrics and the health page."""

    reloads: int = 0
    failures: int = 0
    on_demand: int = 0  # reloads triggered by an unknown interface
    loaded_at: float | None = None  # wall clock of the last successful reload
    last_error: str | None = None


class DirectoryWatch:
    """Runs the reloads in one task, so two reloads never overlap."""

    def __init__(
        self,
        load: DirectorySource,
        apply: Callable[[Mapping[str, Operator]], object],
        knows: Callable[[str], bool],
        *,
        interval: float = 30.0,
        miss_interval: float = 5.0,
        miss_ttl: float = 300.0,
        timeout: float = 10.0,
        on_status: Callable[[DirectoryStatus], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._apply = apply
        self._knows = knows
        self.interval = interval
        self.miss_interval = miss_interval
        self.miss_ttl = miss_ttl
        self.timeout = timeout
        self._clock = clock
        self.status = DirectoryStatus()
        self._on_status = on_status or (lambda status: None)
        self._pending: set[str] = set()
        self._asking: set[str] = set()  # the misses the reload under way looks up
        self._checked: dict[str, float] = {}  # key -> when a reload last missed it
        self._last = clock()  # the map the listener was built with counts as a load
        self._last_on_demand = float("-inf")
        self._force = False
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Inside the running loop."""
        self._wake = asyncio.Event()
        if self._pending:
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name="ami-directory")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- triggers ----------------------------------------------------------------------

    def unknown(self, interface: str, *, urgent: bool = False) -> None:
        """An event named an interface the map does not know. Synchronous, never blocks."""
        key = interface_key(interface)
        if not key or key in self._pending or self._knows(key):
            return
        if not urgent:
            missed_at = self._checked.get(key)
            if missed_at is not None and self._clock() - missed_at < self.miss_ttl:
                return
        if len(self._pending) >= _MAX_PENDING:
            return
        self._pending.add(key)
        if self._wake is not None:
            self._wake.set()

    def resolving(self, interface: str) -> bool:
        """Will a reload (queued or under way) look this interface up?"""
        key = interface_key(interface)
        return key in self._pending or key in self._asking

    def reload_soon(self) -> None:
        """The directory is known to have changed (an admin edit): reload at the next turn."""
        self._force = True
        if self._wake is not None:
            self._wake.set()

    # -- the task ----------------------------------------------------------------------

    def _due(self) -> float:
        if self._force:
            return float("-inf")
        due = self._last + self.interval
        if self._pending:
            due = min(due, self._last_on_demand + self.miss_interval)
        return due

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            now = self._clock()
            due = self._due()
            if due > now:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), due - now)
                continue
            on_demand = (not self._force and bool(self._pending)
                         and due < self._last + self.interval)
            await self._reload(on_demand=on_demand)

    async def _reload(self, *, on_demand: bool) -> bool:
        self._force = False
        asked, self._pending = self._pending, set()
        self._asking = asked
        now = self._clock()
        self._last = now
        if on_demand:
            self._last_on_demand = now
            self.status.on_demand += 1
        try:
            operators = await asyncio.wait_for(self._load(), self.timeout)
            self._apply(operators)
        except asyncio.CancelledError:
            self._pending |= asked
            raise
        except Exception as exc:  # the database is down or slow: keep the map we have
            self._asking = set()
            self.status.failures += 1
            self.status.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("AMI: operator directory reload failed (%s); keeping the current "
                        "interface map", self.status.last_error)
            # Misses wait for the next attempt; the rate limit still applies to it.
            self._pending |= set(list(asked)[: _MAX_PENDING - len(self._pending)])
            self._on_status(self.status)
            return False
        self._asking = set()
        self.status.reloads += 1
        self.status.loaded_at = time.time()
        self.status.last_error = None
        for key in asked:
            if not self._knows(key):
                self._checked.pop(key, None)  # re-inserted last: the dict stays oldest-first
                self._checked[key] = now
                log.info("AMI: interface %s is not in the operator directory", key)
        while len(self._checked) > _MAX_CHECKED:
            self._checked.pop(next(iter(self._checked)))
        self._on_status(self.status)
        return True
