"""An in-process publish/subscribe hub for server-sent events, bounded per subscriber.

``publish`` never blocks and never awaits, so the AMI listener and the routing service can
call it from their callbacks. Each subscriber has its own bounded queue: a slow browser
loses its oldest events (counted in ``dropped``) instead of growing the process's memory.
Call it from the event loop's thread; the queues are plain ``asyncio.Queue`` objects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 100

# Topics the API streams from (payloads are documented in docs/api.md). Every payload is
# an envelope {"event": name, ...}, so one subscription can read several topics.
DASHBOARD = "dashboard"  # {"event": "decision" | "operator_state", "data": {...}}
# A token was revoked or an operator deactivated: open streams re-check their access now.
ACCESS = "access"  # {"event": "access_changed", "token_id": ... | "operator_id": ...}


def operator_topic(operator_id: str) -> str:
    """The topic of one operator's screen-pop and call ends: only that operator's stream
    reads it. Payloads: {"event": "answered" | "call_ended", "data": {...}}."""
    return f"operator:{operator_id}"


class Subscription:
    """One subscriber of one or more topics: an async iterator of payloads, in the order
    they were published, registered when created.

    Registering at creation (not at the first ``__anext__``) means an event published right
    after ``subscribe()`` returns is not lost. ``close()`` (or leaving ``async with``)
    unregisters it; iteration then stops.
    """

    def __init__(self, hub: EventHub, topics: tuple[str, ...], maxsize: int) -> None:
        self.topics = topics
        self.topic = topics[0]
        self.dropped = 0
        self._hub = hub
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)
        self._closed = False

    def offer(self, payload: Any) -> bool:
        """Queue ``payload``; when full, drop the oldest one first. False if one was dropped."""
        if self._closed:
            return True
        dropped = False
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            dropped = True
        self._queue.put_nowait(payload)
        return not dropped

    def pending(self) -> int:
        return self._queue.qsize()

    async def get(self) -> Any:
        return await self._queue.get()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub._remove(self)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        if self._closed:
            raise StopAsyncIteration
        return await self._queue.get()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventHub:
    """Topics to subscribers; ``publish(topic, payload)``, ``subscribe(topic)``."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size}")
        self.queue_size = queue_size
        self.published = 0
        self.dropped = 0  # events dropped across all subscribers, for the metrics
        self._topics: dict[str, set[Subscription]] = {}

    def publish(self, topic: str, payload: Any) -> int:
        """Deliver ``payload`` to every current subscriber of ``topic``; returns how many."""
        self.published += 1
        subscribers = self._topics.get(topic, ())
        for subscription in tuple(subscribers):
            if not subscription.offer(payload):
                self.dropped += 1
                if subscription.dropped == 1 or subscription.dropped % 100 == 0:
                    log.warning(
                        "slow subscriber of %s: %d events dropped", topic, subscription.dropped
                    )
        return len(subscribers)

    def subscribe(
        self, topic: str, queue_size: int | None = None, *, also: tuple[str, ...] = ()
    ) -> Subscription:
        """A new subscription of ``topic`` (and the ``also`` topics, into the same queue),
        receiving everything published from now on."""
        topics = tuple(dict.fromkeys((topic, *also)))
        subscription = Subscription(self, topics, queue_size or self.queue_size)
        for name in topics:
            self._topics.setdefault(name, set()).add(subscription)
        return subscription

    def subscribers(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    def _remove(self, subscription: Subscription) -> None:
        for topic in subscription.topics:
            subscribers = self._topics.get(topic)
            if subscribers is None:
                continue
            subscribers.discard(subscription)
            if not subscribers:
                del self._topics[topic]
