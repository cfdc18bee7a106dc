"""Durations in the rules file: whole seconds or "2h", "90m", "45s", "1h30m", "1d"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callrouter.config.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (7200, 7200),
        (0, 0),
        ("7200", 7200),
        ("2h", 7200),
        ("90m", 5400),
        ("45s", 45),
        ("1h30m", 5400),
        ("1d", 86400),
        ("1d2h3m4s", 93784),
        (" 2H ", 7200),
    ],
)
def test_durations_read_as_seconds(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "2 hours", "1.5h", "30m1h", "h", "-5", -5, 1.5, True, None, "2h 30m", "1w"]
)
def test_other_forms_are_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**7))
def test_format_reads_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_is_short() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(86400) == "1d"
