"""The [rules] table of the TOML file, validated and merged into domain Rules."""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from callrouter.config.errors import RulesError, key_path, problem, toml_problem
from callrouter.config.rules_schema import (
    CLASS_NAME,
    CLASS_NAME_HINT,
    QUEUE_NAME,
    QUEUE_NAME_HINT,
    QueueTable,
    RulesTable,
    VipTable,
)
from callrouter.domain.rules import QueueRules, Rules, StickyMode, VipRule

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)
_BUILTIN = QueueRules()


def load_rules(path: Path) -> Rules:
    """The rules of a TOML file; RulesError (one line per problem) if it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError([f"{path}: no such file"], source=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError([f"{path}: cannot be read: {exc}"], source=path) from None
    return parse_rules_toml(text, source=path)


def parse_rules_toml(text: str, source: Path | None = None) -> Rules:
    """The rules of a TOML document given as text; syntax errors name the line and column."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError([toml_problem(exc, source)], source=source) from None
    try:
        return parse_rules(document)
    except RulesError as exc:
        raise RulesError(exc.problems, source=source) from None


def parse_rules(data: Mapping[str, Any]) -> Rules:
    """Rules from a parsed document (the whole file: its ``rules`` table is read, others ignored).

    No ``rules`` table gives the built-in defaults. ``None`` anywhere means "not set", so the
    output of rules_to_dict (wrapped as ``{"rules": ...}``) parses back to equal rules.
    """
    raw = data.get("rules")
    if raw is None:
        return Rules()
    if not isinstance(raw, Mapping):
        raise RulesError([problem(("rules",), raw, "expected a table")])
    problems: list[str] = []
    table = _validate(RulesTable, raw, ("rules",), problems)
    if table is None:
        raise RulesError(problems)

    defaults_raw = table.defaults or {}
    defaults_table = _validate_queue(defaults_raw, ("rules", "defaults"), None, problems)
    defaults = (
        _merge(_BUILTIN, defaults_table, ("rules", "defaults"), None, problems)
        if defaults_table is not None
        else None
    )
    queues: dict[str, QueueRules] = {}
    for name, section in (table.queues or {}).items():
        loc = ("rules", "queues", name)
        if not QUEUE_NAME.fullmatch(name):
            problems.append(f"{key_path(loc)}: expected {QUEUE_NAME_HINT}")
        bound = defaults.max_wait_seconds if defaults else _BUILTIN.max_wait_seconds
        queue_table = _validate_queue(section or {}, loc, bound, problems)
        if queue_table is not None and defaults is not None:
            queues[name] = _merge(defaults, queue_table, loc, name, problems)
    if problems or defaults is None:
        raise RulesError(problems)
    return Rules(
        defaults=defaults,
        queues=queues,
        default_queue=table.default_queue or Rules().default_queue,
    )


def rules_to_dict(rules: Rules) -> dict[str, Any]:
    """The rules as JSON-able data: every queue fully merged, durations in seconds, unset = None."""
    return {
        "default_queue": rules.default_queue,
        "defaults": _queue_to_dict(rules.defaults),
        "queues": {name: _queue_to_dict(q) for name, q in rules.queues.items()},
    }


# --- validation ------------------------------------------------------------------------


def _validate_queue(
    raw: Mapping[str, Any], loc: Loc, inherited_max_wait: int | None, problems: list[str]
) -> QueueTable | None:
    """One queue table; its waits are bounded by its own max_wait_seconds, else the inherited."""
    own = raw.get("max_wait_seconds")
    own_ok = isinstance(own, int) and not isinstance(own, bool) and own >= 1
    bound = own if own_ok else (inherited_max_wait or _BUILTIN.max_wait_seconds)
    return _validate(QueueTable, raw, loc, problems, context={"max_wait": bound})


def _validate(
    model: type[M],
    raw: Mapping[str, Any],
    loc: Loc,
    problems: list[str],
    context: dict[str, Any] | None = None,
) -> M | None:
    try:
        return model.model_validate(dict(raw), context=context)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problems.append(_explain(model, loc, error))
        return None


def _explain(model: type[BaseModel], loc: Loc, error: Mapping[str, Any]) -> str:
    """One pydantic error as ``key.path = value: expected ...``."""
    where: Loc = (*loc, *error["loc"])
    kind = error["type"]
    if kind == "callrouter":
        return problem(where, error["input"], error["msg"])
    if kind == "extra_forbidden":
        inner = error["loc"]
        known = VipTable if "vip_classes" in inner[:-1] else model
        expected = _unknown_key(str(inner[-1]), list(known.model_fields))
        return problem(where, error["input"], expected)
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return problem(where, error["input"], "expected a table")
    message = str(error["msg"])
    return problem(where, error["input"], message[:1].lower() + message[1:])


def _unknown_key(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key; did you mean {close[0]}?"
    return f"unknown key; expected one of {', '.join(known)}"


def _merge(
    base: QueueRules, table: QueueTable, loc: Loc, queue: str | None, problems: list[str]
) -> QueueRules:
    """A table's keys over its base; a VIP class of the table replaces the base's class whole."""
    values = table.overrides()
    vip = dict(base.vip_classes)
    for name, rule in (table.vip_classes or {}).items():
        if not CLASS_NAME.fullmatch(name):
            problems.append(f"{key_path((*loc, 'vip_classes', name))}: expected {CLASS_NAME_HINT}")
        vip[name] = VipRule(queue=rule.queue, priority=rule.priority)
    merged = dataclasses.replace(base, **values, vip_classes=vip)
    if "max_wait_seconds" in values:
        for key in ("ring_seconds", "busy_wait_seconds"):
            inherited = getattr(merged, key)
            if key not in values and inherited > merged.max_wait_seconds:
                problems.append(
                    problem(
                        (*loc, "max_wait_seconds"),
                        merged.max_wait_seconds,
                        f"expected at least the inherited {key} ({inherited}); set {key} here too",
                    )
                )
    # Strict mode with nowhere named to fall back to goes back to the queue it came in on.
    if queue and merged.sticky_mode is StickyMode.STRICT and merged.strict_fallback_queue is None:
        merged = dataclasses.replace(merged, strict_fallback_queue=queue)
    return merged


def _queue_to_dict(rules: QueueRules) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in dataclasses.fields(QueueRules):
        value = getattr(rules, spec.name)
        if spec.name == "vip_classes":
            value = {
                name: {"queue": rule.queue, "priority": rule.priority}
                for name, rule in value.items()
            }
        elif isinstance(value, StrEnum):
            value = value.value
        out[spec.name] = value
    return out
