"""EventHub: fan-out per topic, bounded queues that drop the oldest, clean unsubscribe."""

from __future__ import annotations

import asyncio

import pytest

from callrouter.events import EventHub


async def test_fan_out_only_to_subscribers_of_the_topic() -> None:
    hub = EventHub()
    a, b, other = hub.subscribe("t"), hub.subscribe("t"), hub.subscribe("u")
    assert hub.publish("t", 1) == 2
    assert (await a.get(), await b.get()) == (1, 1)
    assert other.pending() == 0


async def test_slow_subscriber_loses_oldest_and_counts() -> None:
    hub = EventHub(queue_size=3)
    slow = hub.subscribe("t")
    for i in range(10):
        hub.publish("t", i)
    assert slow.pending() == 3
    assert [await slow.get() for _ in range(3)] == [7, 8, 9]
    assert slow.dropped == 7
    assert hub.dropped == 7


async def test_close_unsubscribes_and_ends_iteration() -> None:
    hub = EventHub()
    async with hub.subscribe("t") as sub:
        hub.publish("t", "x")
        assert await sub.__anext__() == "x"
    assert hub.subscribers("t") == 0
    assert hub.publish("t", "y") == 0
    with pytest.raises(StopAsyncIteration):
        await sub.__anext__()


async def test_iteration_waits_for_the_next_event() -> None:
    hub = EventHub()
    sub = hub.subscribe("t")

    async def first() -> object:
        async for payload in sub:
            return payload
        return None

    task = asyncio.create_task(first())
    await asyncio.sleep(0)
    hub.publish("t", {"k": 1})
    assert await asyncio.wait_for(task, 1) == {"k": 1}
    sub.close()


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="queue_size must be at least 1"):
        EventHub(queue_size=0)


async def test_one_subscription_reads_several_topics_in_order() -> None:
    hub = EventHub()
    sub = hub.subscribe("a", also=("b", "a"))
    hub.publish("b", 1)
    hub.publish("a", 2)
    hub.publish("c", 3)
    assert [await sub.get(), await sub.get()] == [1, 2]
    assert sub.pending() == 0
    sub.close()
    assert (hub.subscribers("a"), hub.subscribers("b")) == (0, 0)
