"""The rules holder: a good reload takes effect whole, a bad one leaves the last good rules."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callrouter.config import RulesError, RulesHolder
from callrouter.domain.rules import Rules

GOOD = "[rules.defaults]\nring_seconds = 15\n"
BETTER = "[rules.defaults]\nring_seconds = 25\n"
BAD = '[rules.defaults]\nring_seconds = 0\nsticky_mode = "sometimes"\n'


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "callrouter.toml"
    path.write_text(GOOD)
    return path


def test_loads_with_metadata(rules_file: Path) -> None:
    clock = Clock()
    holder = RulesHolder.from_file(rules_file, clock=clock)
    current = holder.current
    assert holder.rules.defaults.ring_seconds == 15
    assert current.source == rules_file
    assert current.version == 1
    assert current.loaded_at == clock.now
    assert current.sha256 == hashlib.sha256(GOOD.encode()).hexdigest()


def test_without_a_file_the_built_in_rules_are_in_force() -> None:
    holder = RulesHolder.from_file(None)
    assert holder.rules == Rules()
    assert holder.current.version == 0 and holder.current.sha256 is None
    assert holder.reload() is holder.current


def test_a_bad_file_at_start_up_is_refused(rules_file: Path) -> None:
    rules_file.write_text(BAD)
    with pytest.raises(RulesError):
        RulesHolder.from_file(rules_file)


def test_a_bad_reload_keeps_the_last_good_rules(rules_file: Path) -> None:
    holder = RulesHolder.from_file(rules_file, clock=Clock())
    good = holder.current
    rules_file.write_text(BAD)
    with pytest.raises(RulesError) as refused:
        holder.reload()
    assert refused.value.problems == (
        "rules.defaults.sticky_mode = 'sometimes': expected one of prefer, strict, off",
        "rules.defaults.ring_seconds = 0: "
        "expected a whole number of seconds from 1 to max_wait_seconds (60)",
    )
    assert holder.current is good
    assert holder.rules.defaults.ring_seconds == 15
    assert holder.last_rejected is not None
    assert holder.last_rejected.error is refused.value

    rules_file.unlink()
    with pytest.raises(RulesError, match="no such file"):
        holder.reload()
    assert holder.current is good

    rules_file.write_text(BETTER)
    better = holder.reload()
    assert holder.rules.defaults.ring_seconds == 25
    assert better.version == 2 and better.loaded_at > good.loaded_at
    assert holder.last_rejected is None


def test_reloading_an_unchanged_file_keeps_the_version(rules_file: Path) -> None:
    holder = RulesHolder.from_file(rules_file, clock=Clock())
    first = holder.current
    assert holder.reload() is first


def test_validate_text_checks_a_candidate_without_applying_it(rules_file: Path) -> None:
    holder = RulesHolder.from_file(rules_file)
    assert holder.validate_text(BETTER).defaults.ring_seconds == 25
    with pytest.raises(RulesError):
        holder.validate_text(BAD)
    with pytest.raises(RulesError, match="invalid TOML at line 1"):
        holder.validate_text("[rules\n")
    assert holder.rules.defaults.ring_seconds == 15
