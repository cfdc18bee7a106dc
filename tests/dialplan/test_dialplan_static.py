"""Static checks of the Asterisk files we ship: what would break on a real Asterisk 22.

Each check names the Asterisk 22.10.1 source behind it; the facts come from
``asterisk22.py`` and the parsing from ``dialplan_model.py``.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from callrouter import channel_vars
from callrouter.ami.listener import AmiSettings
from callrouter.domain.rules import QueueRules
from callrouter.simulator.demo import DEMO_RULES
from tests import traces

from . import asterisk22 as ast
from .dialplan_model import (
    CONTEXT,
    DIALPLAN,
    QUEUES,
    ROOT,
    SAMPLE,
    Category,
    Prio,
    Unbalanced,
    all_substitutions,
    globals_from_sample,
    load_dialplan,
    parse_config,
    parse_dialplan,
    queue_names,
    sample_sections,
    scan_end,
    separate_args,
)

SHIPPED = [DIALPLAN, QUEUES, SAMPLE]
PLAN = load_dialplan()
PRIOS = list(PLAN.prios.values())
SHARED_EXTENSIONS = traces.SHARED / "conf" / "extensions.conf"


def _where(p: Prio) -> str:
    return f"{DIALPLAN.name}:{p.lineno} {p.exten},{p.number}"


def _inner_apps(p: Prio) -> list[tuple[str, str]]:
    """(application, data) of a priority and of the branches of its ExecIf."""
    apps = [(p.app, p.data)]
    if p.app == "ExecIf":
        _, remainder = separate_args(p.data, "?", False, 2)
        for branch in separate_args(remainder, ":", False, 2):
            name, _, args = branch.partition("(")
            apps.append((name.strip(), args[: args.rindex(")")] if ")" in args else args))
    return apps


# --------------------------------------------------------------------------- the files


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_no_block_comment_opens(path: Path) -> None:
    # main/config.c: ";--" opens a block comment that swallows everything to "--;"
    for n, line in enumerate(path.read_text().splitlines(), 1):
        assert ";--" not in line, f"{path.name}:{n} opens a block comment"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_files_parse_as_asterisk_config(path: Path) -> None:
    parse_config(path.read_text())


def test_sample_includes_name_files_we_ship() -> None:
    # main/config.c: a missing #include makes the whole file fail to load
    includes = [inc for text in sample_sections().values()
                for inc, _ in parse_config(text).includes]
    assert includes, "the sample shows how to include the files"
    for inc in includes:
        assert inc.startswith("callrouter/"), inc
        assert (ROOT / "dialplan" / inc.removeprefix("callrouter/")).is_file(), inc


# --------------------------------------------------------------------------- dialplan shape


def test_exten_same_priorities_and_labels_load() -> None:
    # pbx/pbx_config.c: "same" needs a previous exten, "n" a previous priority; a priority
    # or label defined twice is refused
    assert PLAN.errors == []
    assert PLAN.extens(CONTEXT) >= {"s", "dial", "queue", "normal", "join", "busywait", "T"}


def test_priorities_run_from_one_without_gaps() -> None:
    # main/pbx.c: the call ends at the first priority that does not exist
    for exten in PLAN.extens(CONTEXT):
        numbers = sorted(n for (c, e, n) in PLAN.prios if (c, e) == (CONTEXT, exten))
        assert numbers == list(range(1, len(numbers) + 1)), exten


def test_every_extension_ends_in_a_jump_or_a_hangup() -> None:
    # falling off the last priority hangs the call up (pbx.c): never rely on it
    for exten in PLAN.extens(CONTEXT):
        last = max((p for p in PRIOS if p.exten == exten), key=lambda p: p.number)
        assert last.app in ("Goto", "Hangup"), _where(last)


@pytest.mark.parametrize("prio", PRIOS, ids=_where)
def test_substitutions_and_parentheses_balance(prio: Prio) -> None:
    # main/pbx_variables.c finds the end of ${ and $[ by counting; pbx/pbx_config.c takes the
    # data up to the last ')' of the line
    try:
        list(all_substitutions(prio.data))
    except Unbalanced as exc:
        pytest.fail(f"{_where(prio)}: {exc}")
    text = prio.raw
    assert text.count("(") == text.count(")"), _where(prio)
    assert text.count("{") == text.count("}"), _where(prio)
    assert text.count("[") == text.count("]"), _where(prio)
    if "(" in text:
        assert text.endswith(")"), _where(prio)


@pytest.mark.parametrize("prio", PRIOS, ids=_where)
def test_applications_exist_in_asterisk_22(prio: Prio) -> None:
    for app, _ in _inner_apps(prio):
        assert app in ast.APPLICATIONS, f"{_where(prio)}: no application {app!r} in 22"


@pytest.mark.parametrize("prio", PRIOS, ids=_where)
def test_functions_exist_in_asterisk_22(prio: Prio) -> None:
    for kind, inner in all_substitutions(prio.data):
        if kind == "{" and re.match(r"[A-Z_]+\(", inner):
            name = inner.partition("(")[0]
            assert name in ast.FUNCTIONS, f"{_where(prio)}: no function {name}"


@pytest.mark.parametrize(
    "prio", [p for p in PRIOS if p.app in ("GotoIf", "ExecIf")], ids=_where)
def test_conditions_are_one_expression(prio: Prio) -> None:
    # GotoIf splits its data at the first '?' and ':' (main/pbx_builtins.c); ExecIf takes
    # the deprecated comma syntax when a ',' comes before the '?' (apps/app_exec.c). A
    # condition that is exactly one $[...] substitutes to a number and cannot leak either.
    assert prio.data.startswith("$["), _where(prio)
    end = scan_end(prio.data, 0)
    assert prio.data[end : end + 1] == "?", _where(prio)


def _branches(prio: Prio) -> list[str]:
    if prio.app == "Goto":
        return [prio.data]
    rest = prio.data[scan_end(prio.data, 0) + 1 :]
    return [b for b in rest.split(":") if b]


@pytest.mark.parametrize(
    "prio", [p for p in PRIOS if p.app in ("Goto", "GotoIf")], ids=_where)
def test_goto_targets_exist(prio: Prio) -> None:
    # main/pbx.c, pbx_parseable_goto(): [[context,]exten,]priority|label; a missing label
    # makes Goto return -1 and a missing extension ends the call
    for branch in _branches(prio):
        assert "$" not in branch, f"{_where(prio)}: computed target {branch}"
        parts = [x.strip() for x in branch.split(",")]
        ctx, exten = CONTEXT, prio.exten
        if len(parts) == 3:
            ctx, exten = parts[0], parts[1]
        elif len(parts) == 2:
            exten = parts[0]
        pri = parts[-1]
        assert exten in PLAN.extens(ctx), f"{_where(prio)}: no extension {exten}"
        if pri.isdigit():
            assert (ctx, exten, int(pri)) in PLAN.prios, f"{_where(prio)}: no {exten},{pri}"
        else:
            assert PLAN.find_label(ctx, exten, pri), f"{_where(prio)}: no label {pri}"


def test_nothing_answers_the_call() -> None:
    # the bill starts at the operator: no Answer(), every Playback is early media
    apps = [(p, app, data) for p in PRIOS for app, data in _inner_apps(p)]
    assert not [p for p, app, _ in apps if app == "Answer"]
    for p, app, data in apps:
        if app == "Playback":
            assert "noanswer" in separate_args(data, ",", True, 2)[1], _where(p)


def test_dial_always_gets_a_timeout_and_options() -> None:
    dials = [p for p in PRIOS if p.app == "Dial"]
    assert dials
    for p in dials:
        _peers, timeout, options = separate_args(p.data, ",", True, 4)
        assert timeout == "${CR_WAIT}", _where(p)  # guarded: 1..600 (see the branch tests)
        assert options == "${CR_DIALOPTS}", _where(p)


# --------------------------------------------------------------------------- variables


def _reads() -> set[str]:
    names = set()
    for p in PRIOS:
        for kind, inner in all_substitutions(p.data):
            if kind == "{":
                name = re.split(r"[:(]", inner, maxsplit=1)[0]
                if name and "$" not in name and "(" not in inner.split(":")[0]:
                    names.add(name)
    return names


def _sets() -> set[str]:
    names = set()
    for p in PRIOS:
        for app, data in _inner_apps(p):
            if app == "Set":
                names.add(data.partition("=")[0].lstrip("_"))
    return names


def test_every_variable_read_is_set_somewhere() -> None:
    # a typo reads as empty without a warning
    trunk = {"CALLROUTER_ENTRY_QUEUE"}
    known = (_sets() | set(globals_from_sample()) | set(channel_vars.ALL) | trunk
             | ast.BUILTIN_VARIABLES)
    assert _reads() - known == set()


def test_callrouter_variables_are_the_daemons_or_documented_globals() -> None:
    daemon = set(channel_vars.ALL)
    globals_ = {k for k in globals_from_sample() if k.startswith("CALLROUTER_")}
    read = {n for n in _reads() if n.startswith("CALLROUTER_")}
    assert read <= daemon | globals_ | {"CALLROUTER_ENTRY_QUEUE"}
    assert not daemon & globals_, "a global would hide an unset daemon variable"
    # the dialplan clears every variable the daemon sets before asking it
    cleared = {p.data.rstrip("=") for p in PRIOS
               if p.exten == "s" and p.app == "Set" and p.data.endswith("=")}
    assert daemon <= cleared
    # and reads the ones that steer the call
    assert {channel_vars.ACTION, channel_vars.TARGET, channel_vars.QUEUE,
            channel_vars.PRIORITY, channel_vars.WAIT, channel_vars.ANNOUNCE,
            channel_vars.REASON, channel_vars.DECISION} <= read


def test_globals_the_dialplan_reads_have_values_in_the_sample() -> None:
    globals_ = globals_from_sample()
    used = {n for n in _reads() if n in globals_ or (
        n.startswith("CALLROUTER_") and n not in channel_vars.ALL
        and n != "CALLROUTER_ENTRY_QUEUE")}
    assert used == {"CALLROUTER_FASTAGI", "CALLROUTER_DEFAULT_QUEUE",
                    "CALLROUTER_DEFAULT_WAIT", "CALLROUTER_MOH", "CALLROUTER_DIAL_OPTIONS"}
    for name in used:
        assert globals_.get(name), name


# --------------------------------------------------------------------------- queues.conf

QUEUE_CONF = parse_config(QUEUES.read_text())


def test_queues_conf_options_exist_in_22() -> None:
    # apps/app_queue.c: an unknown queue option is warned about and ignored
    names = {c.name for c in QUEUE_CONF.categories}
    for cat in QUEUE_CONF.categories:
        allowed = ast.QUEUE_GENERAL_OPTIONS if cat.name == "general" else ast.QUEUE_OPTIONS
        for key, value, n in cat.items:
            assert key in allowed, f"queues.conf:{n} {key}"
            if key == "strategy":
                assert value in ast.QUEUE_STRATEGIES, f"queues.conf:{n} {value}"
        for parent in cat.inherits:
            assert parent in names, f"{cat.name} inherits a missing {parent}"


def test_a_queue_gets_the_strategy_it_names() -> None:
    # apps/app_queue.c reload_single_queue(): a static queue's strategy is read with
    # ast_variable_retrieve(), the FIRST "strategy" of the category, and queue_set_param()
    # then skips "strategy" for static queues. A template's variables come before the
    # queue's own (main/config.c), so a queue that overrides a template's strategy keeps
    # the template's. Seen on Asterisk 22.10.1: [specialists] with strategy = leastrecent
    # under a template with rrmemory ran rrmemory (QueueParams "Strategy: rrmemory").
    by_name = {c.name: c for c in QUEUE_CONF.categories}

    def items(cat: Category) -> list[tuple[str, str, int]]:
        out: list[tuple[str, str, int]] = []
        for parent in cat.inherits:
            out += items(by_name[parent])
        return out + list(cat.items)

    for cat in QUEUE_CONF.categories:
        if cat.name == "general" or cat.template:
            continue
        strategies = [(v, n) for k, v, n in items(cat) if k == "strategy"]
        assert strategies, f"[{cat.name}] names no strategy (Asterisk's default is ringall)"
        first, last = strategies[0], strategies[-1]
        assert first[0] == last[0], (
            f"[{cat.name}] says strategy = {last[0]} (queues.conf:{last[1]}) but Asterisk "
            f"uses the first one it finds, {first[0]} (queues.conf:{first[1]})")


def test_every_queue_has_members_with_tech_slash_resource() -> None:
    for cat in QUEUE_CONF.categories:
        if cat.name == "general" or cat.template:
            continue
        members = [v for k, v, _ in cat.items if k == "member"]
        assert members, cat.name
        for m in members:
            iface = m.split(",")[0].strip()
            assert re.fullmatch(r"[A-Za-z]+/[^,&]+", iface), m


def test_queues_the_config_names_exist() -> None:
    queues = queue_names()
    ext = parse_config(sample_sections()["extensions.conf"])
    named = {globals_from_sample()["CALLROUTER_DEFAULT_QUEUE"]}
    named |= {v.split("=", 1)[1].rstrip(")") for c in ext.categories for k, v, _ in c.items
              if "Set(CALLROUTER_ENTRY_QUEUE=" in v}
    named |= {data.partition("=")[2] for p in PRIOS for app, data in _inner_apps(p)
              if app == "Set" and data.startswith("CR_LAST=") and "$" not in data}
    # the demo's rules run against this queues.conf too
    named |= set(re.findall(r'queue\w* = "([^"]+)"', DEMO_RULES))
    named |= set(re.findall(r"\[rules\.queues\.([^\].]+)\]", DEMO_RULES))
    assert named and named <= queues, named - queues


# --------------------------------------------------------------------------- manager.conf

MANAGER = parse_config(sample_sections()["manager.conf"])


def test_manager_options_exist_in_22() -> None:
    for cat in MANAGER.categories:
        allowed = (ast.MANAGER_GENERAL_OPTIONS if cat.name == "general"
                   else ast.MANAGER_USER_OPTIONS)
        for key, _, n in cat.items:
            assert key in allowed or key.startswith("tls"), f"manager.conf line {n}: {key}"


def test_manager_permission_classes_are_real_and_least() -> None:
    # main/manager.c, get_perm(): ast_instring() matches exact names between commas; an
    # unknown or space-padded name is dropped silently
    (user,) = [c for c in MANAGER.categories if c.name != "general"]
    perms = {k: v for k, v, _ in user.items if k in ("read", "write")}
    read = perms["read"].split(",")
    assert all(p in ast.MANAGER_PERMS for p in read), read
    assert "all" not in read
    # the events the daemon logs in for (AmiSettings.events) must all be readable
    assert set(AmiSettings().events.split(",")) <= set(read)
    # Ping and QueueStatus are registered with privilege 0: no write class needed
    assert perms["write"] == ""


# --------------------------------------------------------------------------- sounds

SOUNDS = ROOT / "dialplan" / "sounds"


def _wav_fmt(path: Path) -> tuple[int, int, int, int, int]:
    """formats/format_wav.c, check_header(): RIFF/WAVE, a 'fmt ' chunk, then 'data'."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", path.name
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk == b"fmt ":
            fmt = struct.unpack("<HHIIHH", data[pos + 8 : pos + 24])
        if chunk == b"data":
            assert fmt is not None, f"{path.name}: data before fmt"
            assert size > 8000, f"{path.name}: under half a second of audio"
            return fmt
        pos += 8 + size
    pytest.fail(f"{path.name}: no data chunk")


@pytest.mark.parametrize("sound", sorted({QueueRules().announcement,
                                          QueueRules().specialist_announcement}))
def test_default_announcements_ship_in_asterisks_wav_format(sound: str) -> None:
    path = SOUNDS / f"{sound}.wav"
    assert path.is_file(), f"{sound}: the rules' default announcement has no file"
    audio_format, channels, rate, _, block_align, bits = _wav_fmt(path)
    assert (audio_format, channels, rate, block_align, bits) == (1, 1, 8000, 2, 16)
    assert path.stat().st_size < 100_000
    assert f"say {sound.rpartition('/')[2]} " in (SOUNDS / "make-sounds.sh").read_text()


# --------------------------------------------------------------------------- the checker


@traces.skip_unless(SHARED_EXTENSIONS)
def test_checker_reads_a_config_real_asterisk_loaded() -> None:
    # the traces' extensions.conf was loaded by a real Asterisk 22.10.1: the same parser
    # must accept it, and find its applications in the 22 list
    plan = parse_dialplan(parse_config(SHARED_EXTENSIONS.read_text()))
    assert plan.errors == []
    assert {p.app for p in plan.prios.values()} <= set(ast.APPLICATIONS)
