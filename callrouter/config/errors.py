"""Configuration errors whose message has one line per problem: key path, value, expectation."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(
    r"^(?P<what>.*) \(at (?P<where>line \d+, column \d+|end of document)\)$"
)


class ConfigError(Exception):
    """A configuration that was refused; ``problems`` holds one line per problem."""

    def __init__(self, problems: Iterable[str], source: Path | None = None) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        self.source = source
        super().__init__("\n".join(self.problems))


class RulesError(ConfigError):
    """The routing rules were refused (the active rules, if any, stay in force)."""


class SettingsError(ConfigError):
    """The service settings (environment or file) were refused."""


def key_path(parts: Sequence[str | int]) -> str:
    """A TOML key path, quoting keys that TOML would need quoted: rules.queues."a b"."""
    shown = []
    for part in parts:
        text = str(part)
        shown.append(text if _BARE_KEY.fullmatch(text) else _quote(text))
    return ".".join(shown)


def show_value(value: object, limit: int = 60) -> str:
    """A value as the file spells it, close enough to find it: 'sometimes', 0, true, {...}."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k} = {show_value(v, limit)}" for k, v in value.items()) + "}"
    elif value is None:
        text = "null"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problem(parts: Sequence[str | int], value: object, expected: str) -> str:
    """One problem line: ``rules.defaults.ring_seconds = 0: expected ...``."""
    return f"{key_path(parts)} = {show_value(value)}: {expected}"


def toml_problem(exc: tomllib.TOMLDecodeError, source: Path | None) -> str:
    """A TOML syntax error as one line: ``FILE: invalid TOML at line 3, column 7: ...``."""
    prefix = f"{source}: " if source else ""
    found = _TOML_POSITION.match(str(exc))
    if found is None:
        return f"{prefix}invalid TOML: {exc}"
    return f"{prefix}invalid TOML at {found['where']}: {found['what']}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
