"""The shipped callrouter.sample.toml loads cleanly and documents the real defaults."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from callrouter.config import Settings, load_rules, load_settings
from callrouter.config.settings import AmiSettings, DatabaseSettings, FastAgiSettings
from callrouter.domain.rules import HistoryScope, QueueRules, Rules, VipRule

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "callrouter.sample.toml"
QUEUES_CONF = ROOT / "dialplan" / "queues.conf"


def test_sample_settings_are_the_defaults() -> None:
    assert load_settings(SAMPLE) == Settings(config_file=SAMPLE)


def test_sample_defaults_are_the_built_in_defaults() -> None:
    rules = load_rules(SAMPLE)
    gold = {"gold": VipRule(priority=500)}
    assert rules.defaults == QueueRules(vip_classes=gold)
    assert rules.default_queue == "support"


def test_sample_example_queues() -> None:
    rules = load_rules(SAMPLE)
    assert set(rules.queues) == {"support", "specialists"}
    assert rules.for_queue("support") == dataclasses.replace(
        rules.defaults, specialist_queue="specialists"
    )
    assert rules.for_queue("specialists") == dataclasses.replace(
        rules.defaults,
        sticky_window=3 * 86400,
        history_scope=HistoryScope.SAME_QUEUE,
        ring_seconds=25,
    )


def test_sample_mentions_every_key() -> None:
    """Every setting and every rule appears in the sample, set or commented out."""
    text = SAMPLE.read_text()
    keys = {m.group(1) for m in re.finditer(r"^#? ?([a-z_]+) = ", text, re.MULTILINE)}
    expected = {f.name for f in dataclasses.fields(QueueRules)} - {"vip_classes"}
    for section in (FastAgiSettings, AmiSettings, DatabaseSettings):
        expected |= set(section.model_fields)
    expected |= {"log_level", "default_region", "shared_numbers", "default_queue"}
    assert expected <= keys, expected - keys


# --- the sample's queues exist in the shipped queues.conf -------------------------------

# "[name]", "[name](template,...)", "[name](!)", "[name](!,template)"; ';' starts a comment
_SECTION = re.compile(r"\[([^\]]+)\](?:\(([^)]*)\))?")


def queues_conf_queues(text: str) -> set[str]:
    """The queues a queues.conf defines: its sections, less [general] and (!) templates."""
    names = set()
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if m := _SECTION.fullmatch(line):
            options = {o.strip() for o in (m[2] or "").split(",")}
            if m[1] != "general" and "!" not in options:
                names.add(m[1])
    return names


def named_queues(rules: Rules) -> dict[str, str]:
    """Every queue name the rules hold, keyed by where it is set (for the failure message)."""
    named = {"rules.default_queue": rules.default_queue}
    tables = {"rules.defaults": rules.defaults} | {
        f"rules.queues.{name}": q for name, q in rules.queues.items()
    }
    for name in rules.queues:
        named[f"[rules.queues.{name}]"] = name
    for where, q in tables.items():
        for key in QUEUE_KEYS:
            if (value := getattr(q, key)) is not None:
                named[f"{where}.{key}"] = value
        for cls, vip in q.vip_classes.items():
            if vip.queue is not None:
                named[f"{where}.vip_classes.{cls}.queue"] = vip.queue
    return named


QUEUE_KEYS = ("specialist_queue", "strict_fallback_queue")


def test_queue_keys_are_every_queue_field() -> None:
    """A new queue-valued rule must be added to QUEUE_KEYS, or its queue goes unchecked."""
    fields = {f.name for f in dataclasses.fields(QueueRules)}
    assert {f for f in fields if "queue" in f} == set(QUEUE_KEYS)
    assert {f.name for f in dataclasses.fields(VipRule)} == {"queue", "priority"}
    assert {f.name for f in dataclasses.fields(Rules)} == {"defaults", "queues", "default_queue"}


def test_queues_conf_parser() -> None:
    text = """
[general]
persistentmembers = yes
[tmpl](!)            ; a template
[tmpl2](!,tmpl)
[a](tmpl)
member => PJSIP/1001,0,Anna,PJSIP/1001
; [commented]
[b]
"""
    assert queues_conf_queues(text) == {"a", "b"}


def test_every_queue_the_sample_names_is_in_the_shipped_queues_conf() -> None:
    """A site that installs callrouter.sample.toml and dialplan/queues.conf as shipped must
    not get escalations, fallbacks or VIP calls sent to a queue Asterisk does not know."""
    defined = queues_conf_queues(QUEUES_CONF.read_text())
    assert {"support", "specialists"} <= defined
    named = named_queues(load_rules(SAMPLE))
    assert "rules.defaults.specialist_queue" not in named  # no second line by default
    assert named["rules.queues.support.specialist_queue"] == "specialists"
    unknown = {where: queue for where, queue in named.items() if queue not in defined}
    assert not unknown, f"not a queue in dialplan/queues.conf: {unknown}"


def test_commented_out_queue_examples_name_shipped_queues_too() -> None:
    """Uncommenting an example key must not introduce a queue Asterisk does not know."""
    defined = queues_conf_queues(QUEUES_CONF.read_text())
    text = SAMPLE.read_text()
    examples = re.findall(r'^# ?(\w*queue\w*) = "([^"]*)"', text, re.MULTILINE)
    examples += [("table", name) for name in
                 re.findall(r"^# ?\[rules\.queues\.([^\].]+)[^\]]*\]$", text, re.MULTILINE)]
    assert ("specialist_queue", "specialists") in examples
    unknown = [(key, queue) for key, queue in examples if queue not in defined]
    assert not unknown, f"not a queue in dialplan/queues.conf: {unknown}"
