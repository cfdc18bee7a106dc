"""Routing rules: per-queue settings with defaults, as plain frozen values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

# The longest wait for one operator the rules may ask for (max_wait_seconds). The shipped
# dialplan caps Dial's timeout (CR_WAIT) at 600 s and the FastAGI adapter caps
# CALLROUTER_WAIT at 600 (callrouter/fastagi/handler.py MAX_WAIT, kept there as the last
# guard): a longer wait in the rules would be cut short without a word. Keep the three
# equal; tests/config/test_rules_file.py checks that they are.
MAX_WAIT_SECONDS = 600


class StickyMode(StrEnum):
    PREFER = "prefer"  # the last operator first, then the pool
    STRICT = "strict"  # the last operator only, then the configured fallback queue
    OFF = "off"


class HistoryScope(StrEnum):
    SAME_QUEUE = "same_queue"
    ANY_QUEUE = "any_queue"


@dataclass(frozen=True, slots=True)
class VipRule:
    """Where a caller of a VIP class goes: a queue of its own, a priority, or both."""

    queue: str | None = None
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class QueueRules:
    """The rules for one entry queue. Durations are seconds."""

    sticky_mode: StickyMode = StickyMode.PREFER
    sticky_window: int = 2 * 3600
    min_talk_seconds: int = 0
    history_scope: HistoryScope = HistoryScope.ANY_QUEUE
    ring_seconds: int = 20
    busy_wait_seconds: int = 20
    max_wait_seconds: int = 60
    announcement: str = "callrouter/your-operator"
    specialist_announcement: str = "callrouter/your-specialist"
    strict_fallback_queue: str | None = None
    base_priority: int = 0
    repeat_priority_boost: int = 10
    specialist_queue: str | None = None
    specialist_routing: bool = True
    escalation_threshold: int = 3
    escalation_window: int = 24 * 3600
    reopen_window: int = 24 * 3600
    max_escalations_per_day: int = 2
    vip_classes: Mapping[str, VipRule] = field(default_factory=dict)

    @property
    def lookback(self) -> int:
        """How far back the history must reach for every rule of this queue."""
        return max(self.sticky_window, self.escalation_window, self.reopen_window)


@dataclass(frozen=True, slots=True)
class Rules:
    """Defaults plus per-queue overrides (already merged), and the queue for odd cases."""

    defaults: QueueRules = QueueRules()
    queues: Mapping[str, QueueRules] = field(default_factory=dict)
    default_queue: str = "support"

    def for_queue(self, queue: str) -> QueueRules:
        return self.queues.get(queue, self.defaults)

    def knows(self, queue: str) -> bool:
        return queue in self.queues

    @property
    def lookback(self) -> int:
        return max([self.defaults.lookback, *(q.lookback for q in self.queues.values())])
