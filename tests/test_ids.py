"""Row ids are UUIDv7: time-ordered (new rows go to the right-hand edge of their index)."""

from __future__ import annotations

import time
import uuid

from callrouter.ids import id_time_ms, new_id


def test_an_id_is_a_version_7_uuid_in_32_hex_digits() -> None:
    value = new_id()
    assert len(value) == 32 and value == value.lower()
    parsed = uuid.UUID(value)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_an_id_starts_with_the_time_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= id_time_ms(value) <= after


def test_ids_made_a_millisecond_apart_sort_in_time_order_and_never_repeat() -> None:
    ids = []
    for _ in range(5):
        ids.append(new_id())
        time.sleep(0.002)
    assert ids == sorted(ids)
    many = [new_id() for _ in range(20_000)]
    assert len(set(many)) == len(many)
    # the random part is random: not every id of the same millisecond shares its tail
    assert len({v[16:] for v in many}) == len(many)
