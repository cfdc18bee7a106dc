"""What the HTTP side needs from the rest of the process, passed in explicitly (``ApiDeps``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from callrouter.config.rules_holder import RulesHolder
from callrouter.events import EventHub
from callrouter.metrics import Metrics
from callrouter.numbers import NumberNormaliser
from callrouter.service.ports import Presence
from callrouter.service.routing import RoutingService
from callrouter.store.store import Store


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One moving part as the health endpoint reports it: up or not, and what it says."""

    ok: bool
    state: str
    detail: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


_REPLICA_DISABLED = ComponentStatus(ok=True, state="disabled")


def _nothing() -> None:
    return None


def status_of_listener(status: Any) -> ComponentStatus:
    """A ``ComponentStatus`` from the AMI listener's status object (``state``, ``last_error``)."""
    state = str(getattr(status, "state", "unknown"))
    return ComponentStatus(
        ok=state == "connected", state=state, detail=getattr(status, "last_error", None)
    )


@dataclass(slots=True)
class ApiDeps:
    """Everything the endpoints use; built by the composition root, never at import time.

    ``presence`` is the routing port (``states()``); when it also has ``details()`` (the
    AMI presence book) the operators list shows since-when and pause reasons too.
    ``invalidate_directory`` / ``invalidate_incidents`` are called after the API changed
    operators / incidents, so the router's short caches do not serve stale values.
    """

    store: Store
    routing: RoutingService
    rules: RulesHolder
    presence: Presence
    ami_status: Callable[[], ComponentStatus]
    fastagi_status: Callable[[], ComponentStatus]
    events: EventHub
    metrics: Metrics
    numbers: NumberNormaliser
    state_replica_status: Callable[[], ComponentStatus] = lambda: _REPLICA_DISABLED
    invalidate_directory: Callable[[], None] = _nothing
    invalidate_incidents: Callable[[], None] = _nothing
    clock: Callable[[], datetime] = utcnow
    recent_calls_limit: int = 20
    stream_ping_seconds: float = 15.0
    # How often an open event stream re-reads its token (revoked outside this API, e.g. by
    # `callrouter token revoke`): one indexed lookup per open stream per period.
    stream_recheck_seconds: float = 5.0
    redact_access_log: bool = True
