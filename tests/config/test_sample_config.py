"""The shipped callrouter.sample.toml loads cleanly and documents the real defaults."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from callrouter.config import Settings, load_rules, load_settings
from callrouter.config.settings import AmiSettings, DatabaseSettings, FastAgiSettings
from callrouter.domain.rules import HistoryScope, QueueRules, StickyMode, VipRule

SAMPLE = Path(__file__).parents[2] / "callrouter.sample.toml"


def test_sample_settings_are_the_defaults() -> None:
    assert load_settings(SAMPLE) == Settings(config_file=SAMPLE)


def test_sample_defaults_are_the_built_in_defaults() -> None:
    rules = load_rules(SAMPLE)
    gold = {"gold": VipRule(priority=500)}
    assert rules.defaults == QueueRules(vip_classes=gold)
    assert rules.default_queue == "support"


def test_sample_example_queues() -> None:
    rules = load_rules(SAMPLE)
    assert set(rules.queues) == {"support", "support-l2", "sales"}
    assert rules.for_queue("support") == dataclasses.replace(
        rules.defaults, specialist_queue="support-l2"
    )
    assert rules.for_queue("support-l2") == rules.defaults
    assert rules.for_queue("sales") == dataclasses.replace(
        rules.defaults,
        sticky_mode=StickyMode.STRICT,
        strict_fallback_queue="sales-overflow",
        sticky_window=3 * 86400,
        history_scope=HistoryScope.SAME_QUEUE,
        ring_seconds=25,
        specialist_routing=False,
        vip_classes={"gold": VipRule(queue="sales-priority", priority=500)},
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
