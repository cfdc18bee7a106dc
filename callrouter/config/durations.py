"""Human-friendly durations for the rules file: 7200, "2h", "90m", "45s", "1h30m", "1d"."""

from __future__ import annotations

import re

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")

DURATION_HINT = 'whole seconds or a string such as "2h", "90m", "45s", "1h30m"'


def parse_duration(value: object) -> int:
    """Seconds from an int or a string of day/hour/minute/second parts, largest unit first.

    Raises ValueError (with no message of its own: the caller knows the key and the
    expectation) for floats, booleans, negative numbers, empty strings and unknown units.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(value)
        return value
    if not isinstance(value, str):
        raise ValueError(value)
    text = value.strip().lower()
    if text.isdigit():
        return int(text)
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(value)
    return sum(int(n) * s for n, s in zip(match.groups(), _UNITS.values(), strict=True) if n)


def format_duration(seconds: int) -> str:
    """The shortest string parse_duration reads back as the same seconds: 5400 -> "1h30m"."""
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
