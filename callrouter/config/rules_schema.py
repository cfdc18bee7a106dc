"""Pydantic models for one table of the [rules] file, with the expected form of every key."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from callrouter.config.durations import DURATION_HINT, parse_duration
from callrouter.domain.rules import MAX_WAIT_SECONDS, HistoryScope, QueueRules, StickyMode

# Queue() arguments are comma-separated and the name ends up in ${...} expressions, so a
# queue name is limited to what queues.conf section names use in practice.
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,80}")
QUEUE_NAME_HINT = "an Asterisk queue name: letters, digits, '-', '_' or '.' (at most 80)"
# Playback() splits on ',' (options) and '&' (several files); '$' would start an expression
# and '..' would climb out of the sounds directory.
SOUND_NAME = re.compile(r"[A-Za-z0-9_./-]*")
SOUND_NAME_HINT = (
    "a sound name of letters, digits, '-', '_', '.' and '/', without '..' (\"\" for none)"
)
CLASS_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
CLASS_NAME_HINT = "a VIP class name: letters, digits, '-' or '_' (at most 40)"

# Asterisk takes any integer for QUEUE_PRIO; a fixed scale keeps VIP priorities, the base
# priority and the repeat-caller boost comparable, and refuses a stray 10000 that would
# put one caller ahead of everybody for good.
MAX_PRIORITY = 1000
MAX_WINDOW = 30 * 86400  # windows set how far back history is read; a month is plenty

Validator = Callable[[Any, ValidationInfo], Any]


def fail(expected: str) -> NoReturn:
    raise PydanticCustomError("callrouter", "{expected}", {"expected": expected})


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(low: int, high: int | None, expected: str) -> Validator:
    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if not _whole(value) or value < low or (high is not None and value > high):
            fail(expected)
        return value

    return check


def _wait(value: Any, info: ValidationInfo) -> Any:
    """ring_seconds and busy_wait_seconds: bounded by the section's own max_wait_seconds."""
    if value is None:
        return None
    bound = (info.context or {}).get("max_wait", QueueRules().max_wait_seconds)
    if not _whole(value) or not 1 <= value <= bound:
        fail(f"expected a whole number of seconds from 1 to max_wait_seconds ({bound})")
    return value


def _duration(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = -1
    if not 1 <= seconds <= MAX_WINDOW:
        fail(f"expected a duration from 1 second to 30 days: {DURATION_HINT}")
    return seconds


def _choice(enum: type[StickyMode] | type[HistoryScope]) -> Validator:
    names = [member.value for member in enum]

    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or value not in names:
            fail(f"expected one of {', '.join(names)}")
        return enum(value)

    return check


def _flag(value: Any, info: ValidationInfo) -> Any:
    if value is not None and not isinstance(value, bool):
        fail("expected true or false")
    return value


def _queue(value: Any, info: ValidationInfo) -> Any:
    if value is not None and not (isinstance(value, str) and QUEUE_NAME.fullmatch(value)):
        fail(f"expected {QUEUE_NAME_HINT}")
    return value


def _sound(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not SOUND_NAME.fullmatch(value) or ".." in value:
        fail(f"expected {SOUND_NAME_HINT}")
    return value


_PRIORITY = _number(0, MAX_PRIORITY, f"expected a whole number from 0 to {MAX_PRIORITY}")
_MIN_TALK = _number(0, None, "expected a whole number of seconds, 0 or more")
# The dialplan caps Dial's timeout at MAX_WAIT_SECONDS (600 s): refuse what it would cut.
_MAX_WAIT = _number(
    1,
    MAX_WAIT_SECONDS,
    f"expected a whole number of seconds from 1 to {MAX_WAIT_SECONDS} "
    f"(the dialplan caps Dial's timeout at {MAX_WAIT_SECONDS} s)",
)
_THRESHOLD = _number(2, None, "expected a whole number of calls, 2 or more")
_CAP = _number(0, None, "expected a whole number, 0 or more (0: never escalate by count)")

Seconds = Annotated[int | None, BeforeValidator(_wait)]
Window = Annotated[int | None, BeforeValidator(_duration)]
Priority = Annotated[int | None, BeforeValidator(_PRIORITY)]
QueueName = Annotated[str | None, BeforeValidator(_queue)]
SoundName = Annotated[str | None, BeforeValidator(_sound)]
Flag = Annotated[bool | None, BeforeValidator(_flag)]


class VipTable(BaseModel):
    """[...vip_classes.NAME]: a queue of its own, a priority, or both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: QueueName = None
    priority: Priority = None

    @model_validator(mode="before")
    @classmethod
    def _one_of_them(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("queue") is None and data.get("priority") is None:
            fail("expected queue and/or priority")
        return data


class QueueTable(BaseModel):
    """[rules.defaults] or [rules.queues.NAME]: every key optional, None meaning "not set"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sticky_mode: Annotated[StickyMode | None, BeforeValidator(_choice(StickyMode))] = None
    sticky_window: Window = None
    min_talk_seconds: Annotated[int | None, BeforeValidator(_MIN_TALK)] = None
    history_scope: Annotated[HistoryScope | None, BeforeValidator(_choice(HistoryScope))] = None
    ring_seconds: Seconds = None
    busy_wait_seconds: Seconds = None
    max_wait_seconds: Annotated[int | None, BeforeValidator(_MAX_WAIT)] = None
    announcement: SoundName = None
    specialist_announcement: SoundName = None
    strict_fallback_queue: QueueName = None
    base_priority: Priority = None
    repeat_priority_boost: Priority = None
    specialist_queue: QueueName = None
    specialist_routing: Flag = None
    # One call is not a pattern: a threshold of 1 would send every caller to the second line.
    escalation_threshold: Annotated[int | None, BeforeValidator(_THRESHOLD)] = None
    escalation_window: Window = None
    reopen_window: Window = None
    max_escalations_per_day: Annotated[int | None, BeforeValidator(_CAP)] = None
    vip_classes: dict[str, VipTable] | None = None

    def overrides(self) -> dict[str, Any]:
        """The keys this table sets, as QueueRules keyword arguments (VIP classes excluded)."""
        return {
            name: value
            for name in type(self).model_fields
            if name != "vip_classes" and (value := getattr(self, name)) is not None
        }


class RulesTable(BaseModel):
    """[rules] itself; the queue tables are validated one by one (each has its own bounds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_queue: QueueName = None
    defaults: dict[str, Any] | None = None
    queues: dict[str, dict[str, Any] | None] | None = None
