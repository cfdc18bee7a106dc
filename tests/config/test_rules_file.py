"""The [rules] table: merging, durations, and one exact line per problem in a bad file."""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from pathlib import Path

import pytest

from callrouter.config import RulesError, load_rules, parse_rules, parse_rules_toml, rules_to_dict
from callrouter.config.rules_schema import QueueTable
from callrouter.domain.rules import (
    MAX_WAIT_SECONDS,
    HistoryScope,
    QueueRules,
    Rules,
    StickyMode,
    VipRule,
)


def rules(text: str) -> Rules:
    return parse_rules_toml(textwrap.dedent(text))


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as refused:
        rules(text)
    assert str(refused.value) == "\n".join(refused.value.problems)
    return list(refused.value.problems)


def test_no_rules_table_gives_the_built_in_rules() -> None:
    assert rules("log_level = 'INFO'\n") == Rules()
    assert parse_rules({}) == Rules()


def test_queues_merge_over_the_defaults() -> None:
    parsed = rules(
        """
        [rules]
        default_queue = "main"
        [rules.defaults]
        ring_seconds = 15
        sticky_window = "1h30m"
        [rules.queues.main]
        [rules.queues.sales]
        history_scope = "same_queue"
        ring_seconds = 30
        """
    )
    assert parsed.default_queue == "main"
    assert parsed.defaults == QueueRules(ring_seconds=15, sticky_window=5400)
    assert parsed.for_queue("main") == parsed.defaults
    assert parsed.knows("main")
    assert parsed.for_queue("sales") == QueueRules(
        ring_seconds=30, sticky_window=5400, history_scope=HistoryScope.SAME_QUEUE
    )
    assert not parsed.knows("elsewhere")


@pytest.mark.parametrize("key", ["sticky_window", "escalation_window", "reopen_window"])
@pytest.mark.parametrize(("value", "seconds"), [("7200", 7200), ('"2h"', 7200), ('"45s"', 45)])
def test_windows_are_durations(key: str, value: str, seconds: int) -> None:
    parsed = rules(f"[rules.defaults]\n{key} = {value}\n")
    assert getattr(parsed.defaults, key) == seconds


def test_vip_classes_merge_class_by_class() -> None:
    parsed = rules(
        """
        [rules.defaults.vip_classes.gold]
        priority = 500
        [rules.defaults.vip_classes.silver]
        priority = 100
        [rules.queues.sales.vip_classes.gold]
        queue = "sales-vip"
        """
    )
    assert parsed.defaults.vip_classes == {
        "gold": VipRule(priority=500),
        "silver": VipRule(priority=100),
    }
    # The queue's gold replaces the default gold whole: no priority is inherited.
    assert parsed.for_queue("sales").vip_classes == {
        "gold": VipRule(queue="sales-vip"),
        "silver": VipRule(priority=100),
    }


def test_strict_falls_back_to_the_entry_queue_unless_told() -> None:
    parsed = rules(
        """
        [rules.defaults]
        sticky_mode = "strict"
        [rules.queues.support]
        [rules.queues.sales]
        strict_fallback_queue = "sales-overflow"
        [rules.queues.billing]
        sticky_mode = "prefer"
        """
    )
    assert parsed.defaults.strict_fallback_queue is None
    assert parsed.for_queue("support").strict_fallback_queue == "support"
    assert parsed.for_queue("sales").strict_fallback_queue == "sales-overflow"
    assert parsed.for_queue("billing").strict_fallback_queue is None


def test_empty_announcement_means_none_and_sound_paths_are_allowed() -> None:
    parsed = rules('[rules.defaults]\nannouncement = ""\nspecialist_announcement = "/opt/s/l2"\n')
    assert parsed.defaults.announcement == ""
    assert parsed.defaults.specialist_announcement == "/opt/s/l2"


def test_round_trip_through_the_json_form() -> None:
    parsed = load_rules(Path(__file__).parents[2] / "callrouter.sample.toml")
    data = json.loads(json.dumps(rules_to_dict(parsed)))
    assert parse_rules({"rules": data}) == parsed
    assert data["defaults"]["sticky_mode"] == "prefer"
    assert data["defaults"]["sticky_window"] == 7200


def test_every_domain_field_has_a_key() -> None:
    """A field added to QueueRules must be added to the file schema too."""
    fields = {f.name for f in dataclasses.fields(QueueRules)}
    assert set(QueueTable.model_fields) == fields


ALL_KEYS = ", ".join(QueueTable.model_fields)
QUEUE_HINT = "expected an Asterisk queue name: letters, digits, '-', '_' or '.' (at most 80)"
SOUND_HINT = (
    "expected a sound name of letters, digits, '-', '_', '.' and '/', without '..' (\"\" for none)"
)
DURATION_HINT = (
    'expected a duration from 1 second to 30 days: whole seconds or a string such as "2h", '
    '"90m", "45s", "1h30m"'
)
MAX_WAIT_HINT = (
    "expected a whole number of seconds from 1 to 600 (the dialplan caps Dial's timeout at 600 s)"
)

BAD_FILES = [
    (
        '[rules.queues.support]\nsticky_mode = "sometimes"',
        "rules.queues.support.sticky_mode = 'sometimes': expected one of prefer, strict, off",
    ),
    (
        "[rules.defaults]\nring_seconds = 0",
        "rules.defaults.ring_seconds = 0: "
        "expected a whole number of seconds from 1 to max_wait_seconds (60)",
    ),
    (
        "[rules.defaults]\nbusy_wait_seconds = 45\nmax_wait_seconds = 30",
        "rules.defaults.busy_wait_seconds = 45: "
        "expected a whole number of seconds from 1 to max_wait_seconds (30)",
    ),
    (
        "[rules.defaults]\nmax_wait_seconds = 30\n[rules.queues.q]\nring_seconds = 40",
        "rules.queues.q.ring_seconds = 40: "
        "expected a whole number of seconds from 1 to max_wait_seconds (30)",
    ),
    (
        "[rules.queues.q]\nmax_wait_seconds = 10\nbusy_wait_seconds = 5",
        "rules.queues.q.max_wait_seconds = 10: "
        "expected at least the inherited ring_seconds (20); set ring_seconds here too",
    ),
    (
        '[rules.defaults]\nring_seconds = "20"',
        "rules.defaults.ring_seconds = '20': "
        "expected a whole number of seconds from 1 to max_wait_seconds (60)",
    ),
    (
        "[rules.defaults]\nmax_wait_seconds = 7200",
        f"rules.defaults.max_wait_seconds = 7200: {MAX_WAIT_HINT}",
    ),
    (
        "[rules.defaults]\nmax_wait_seconds = 601",
        f"rules.defaults.max_wait_seconds = 601: {MAX_WAIT_HINT}",
    ),
    (
        "[rules.queues.q]\nmax_wait_seconds = 900\nring_seconds = 700",
        f"rules.queues.q.max_wait_seconds = 900: {MAX_WAIT_HINT}",
    ),
    (
        '[rules.defaults]\nsticky_window = "2 hours"',
        f"rules.defaults.sticky_window = '2 hours': {DURATION_HINT}",
    ),
    ("[rules.defaults]\nreopen_window = 0", f"rules.defaults.reopen_window = 0: {DURATION_HINT}"),
    (
        '[rules.defaults]\nescalation_window = "31d"',
        f"rules.defaults.escalation_window = '31d': {DURATION_HINT}",
    ),
    (
        "[rules.defaults]\nescalation_threshold = 1",
        "rules.defaults.escalation_threshold = 1: expected a whole number of calls, 2 or more",
    ),
    (
        "[rules.defaults]\nmin_talk_seconds = -1",
        "rules.defaults.min_talk_seconds = -1: expected a whole number of seconds, 0 or more",
    ),
    (
        "[rules.defaults]\nmax_escalations_per_day = 1.5",
        "rules.defaults.max_escalations_per_day = 1.5: "
        "expected a whole number, 0 or more (0: never escalate by count)",
    ),
    (
        "[rules.defaults]\nbase_priority = 1001",
        "rules.defaults.base_priority = 1001: expected a whole number from 0 to 1000",
    ),
    (
        "[rules.defaults]\nrepeat_priority_boost = -10",
        "rules.defaults.repeat_priority_boost = -10: expected a whole number from 0 to 1000",
    ),
    (
        '[rules.defaults]\nspecialist_routing = "yes"',
        "rules.defaults.specialist_routing = 'yes': expected true or false",
    ),
    (
        '[rules.defaults]\nhistory_scope = "same queue"',
        "rules.defaults.history_scope = 'same queue': expected one of same_queue, any_queue",
    ),
    (
        '[rules.defaults]\nspecialist_queue = "l2,t"',
        f"rules.defaults.specialist_queue = 'l2,t': {QUEUE_HINT}",
    ),
    (
        '[rules.defaults]\nstrict_fallback_queue = "sales overflow"',
        f"rules.defaults.strict_fallback_queue = 'sales overflow': {QUEUE_HINT}",
    ),
    ('[rules]\ndefault_queue = ""', f"rules.default_queue = '': {QUEUE_HINT}"),
    ('[rules.queues."sales desk"]', f'rules.queues."sales desk": {QUEUE_HINT}'),
    (
        '[rules.defaults]\nannouncement = "a,b"',
        f"rules.defaults.announcement = 'a,b': {SOUND_HINT}",
    ),
    (
        '[rules.defaults]\nannouncement = "../../etc/x"',
        f"rules.defaults.announcement = '../../etc/x': {SOUND_HINT}",
    ),
    (
        '[rules.defaults]\nspecialist_announcement = "hello there"',
        f"rules.defaults.specialist_announcement = 'hello there': {SOUND_HINT}",
    ),
    (
        '[rules.defaults]\nannouncement = "a&b"',
        f"rules.defaults.announcement = 'a&b': {SOUND_HINT}",
    ),
    (
        "[rules.defaults.vip_classes.gold]\npriority = 5000",
        "rules.defaults.vip_classes.gold.priority = 5000: expected a whole number from 0 to 1000",
    ),
    (
        "[rules.queues.q.vip_classes.gold]",
        "rules.queues.q.vip_classes.gold = {}: expected queue and/or priority",
    ),
    (
        '[rules.defaults.vip_classes.gold]\nqueue = "vip"\nprio = 5',
        "rules.defaults.vip_classes.gold.prio = 5: unknown key; did you mean priority?",
    ),
    (
        '[rules.defaults.vip_classes."gold star"]\npriority = 5',
        'rules.defaults.vip_classes."gold star": expected a VIP class name: letters, digits, '
        "'-' or '_' (at most 40)",
    ),
    (
        '[rules.defaults]\nstiky_mode = "prefer"',
        "rules.defaults.stiky_mode = 'prefer': unknown key; did you mean sticky_mode?",
    ),
    (
        "[rules.queues.q]\nzzz = 1",
        f"rules.queues.q.zzz = 1: unknown key; expected one of {ALL_KEYS}",
    ),
    (
        "[rules]\nqueue = 'x'",
        "rules.queue = 'x': unknown key; did you mean queues?",
    ),
    ("rules = 3", "rules = 3: expected a table"),
    ("[rules]\ndefaults = 5", "rules.defaults = 5: expected a table"),
    ("[rules]\nqueues = { a = 3 }", "rules.queues.a = 3: expected a table"),
    ("[rules]\nqueues = [1]", "rules.queues = [1]: expected a table"),
    (
        "[rules\n",
        "invalid TOML at line 1, column 7: Expected ']' at the end of a table declaration",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_a_bad_file_gets_one_line_naming_key_value_and_expectation(
    text: str, expected: str
) -> None:
    assert problems(text) == [expected]


def test_every_problem_of_a_file_is_listed_in_file_order() -> None:
    found = problems(
        """
        [rules.defaults]
        ring_seconds = 0
        sticky_mode = "sometimes"
        [rules.queues.a]
        base_priority = -1
        [rules.queues.b]
        specialist_routing = 1
        """
    )
    assert [line.split(" = ")[0] for line in found] == [
        "rules.defaults.sticky_mode",
        "rules.defaults.ring_seconds",
        "rules.queues.a.base_priority",
        "rules.queues.b.specialist_routing",
    ]


def test_load_rules_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(RulesError, match=r"nope\.toml: no such file") as refused:
        load_rules(missing)
    assert refused.value.source == missing
    bad = tmp_path / "bad.toml"
    bad.write_text("[rules.defaults]\nring_seconds = = 3\n")
    with pytest.raises(RulesError) as refused:
        load_rules(bad)
    assert refused.value.problems == (f"{bad}: invalid TOML at line 2, column 16: Invalid value",)
    assert refused.value.source == bad


def test_json_null_means_not_set() -> None:
    parsed = parse_rules({"rules": {"defaults": {"specialist_queue": None}, "queues": {"q": None}}})
    assert parsed == Rules(queues={"q": QueueRules()})
    assert parsed.defaults.sticky_mode is StickyMode.PREFER


def test_max_wait_may_be_the_dialplan_cap_itself() -> None:
    parsed = rules(
        """
        [rules.defaults]
        max_wait_seconds = 600
        busy_wait_seconds = 600
        [rules.queues.q]
        ring_seconds = 600
        """
    )
    assert parsed.defaults.max_wait_seconds == 600
    assert parsed.for_queue("q").ring_seconds == 600


def test_max_wait_bound_is_the_adapter_and_dialplan_cap() -> None:
    """The rules refuse exactly what the FastAGI adapter and the dialplan would cut short."""
    from callrouter.fastagi.handler import MAX_WAIT

    root = Path(__file__).parents[2]
    dialplan = (root / "dialplan" / "callrouter-inbound.conf").read_text()
    caps = re.findall(r"ExecIf\(\$\[\$\{CR_WAIT\} > (\d+)\]\?Set\(CR_WAIT=(\d+)\)\)", dialplan)
    assert caps == [(str(MAX_WAIT_SECONDS), str(MAX_WAIT_SECONDS))]
    assert MAX_WAIT == MAX_WAIT_SECONDS == 600
