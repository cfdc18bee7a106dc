"""Run the shipped dialplan through every decision branch.

``dialplan_model`` interprets exactly the constructs the context uses (Set, ExecIf, GotoIf,
Goto, AGI, Dial, Queue, Playback, music on hold, TIMEOUT(absolute) and the T extension),
modelled on the Asterisk 22.10.1 source; the world (the daemon, the target, the queues,
device states) is a ``Scenario``. For every combination the call must end answered by the
target, waiting in a queue that exists, or because the caller hung up, never in silence and
never billed before an operator answers. It is a model, not Asterisk: see its docstring.
"""

from __future__ import annotations

import itertools
import re

import pytest

from callrouter import channel_vars as cv

from .asterisk22 import AGISTATUS, DIALSTATUS
from .dialplan_model import Outcome, Scenario, load_dialplan, queue_names, run

PLAN = load_dialplan()
QUEUES = queue_names()
ENTRY = "support"

ACTIONS = ["", "operator", "specialist", "queue", "bogus"]
TARGETS = ["", "PJSIP/1001", "Local/op1@operators/n", "1001", "PJSIP/1001,5", "PJSIP/[x",
           " ", "PJSIP/", "PJSIP/1001&PJSIP/1002"]
WAITS = ["", "0", "20", "600", "601", "abc", "-5", "20.5", "99999999999999999999"]
REASONS = ["sticky_available", "sticky_busy_wait", "specialist_busy_wait", "", "x"]
ANNOUNCES = ["", "callrouter/your-operator", "callrouter/your-operator&incident/outage"]
QUEUE_VALUES = ["", "support", "specialists", "nosuch"]
PRIORITIES = ["", "0", "10", "x", "-3"]


def _usable_target(target: str) -> bool:
    """What Dial can take without ending the call or losing its timeout (app_dial.c): a
    tech/resource with nothing that splits or swallows arguments, and one target."""
    return bool(re.fullmatch(r"[A-Za-z]\w*/[^\s,&()\[\]\"\\]+", target))


def _expected_wait(wait: str) -> int:
    return min(int(wait), 600) if re.fullmatch(r"[1-9][0-9]*", wait) else 20


def _check(sc: Scenario, out: Outcome) -> list[str]:
    """What must hold for a scenario; returns what does not."""
    bad = [f"problem: {p}" for p in out.problems]
    d = sc.daemon
    decided = sc.agistatus == "SUCCESS" and d.get(cv.ACTION)
    target = d.get(cv.TARGET, "") if decided else ""
    dials = decided and _usable_target(target)
    if sc.agistatus == "HANGUP":
        want = ("caller-hangup", "during the AGI")
    elif dials and sc.dialstatus == "ANSWER":
        want = ("answered", target)
    elif dials and sc.dialstatus == "CANCEL":
        want = ("caller-hangup", "while the target rang")
    else:
        queue = d.get(cv.QUEUE) or ENTRY if decided else ENTRY
        want = ("queued", queue if queue in QUEUES else ENTRY)
    if (out.kind, out.detail) != want:
        bad.append(f"ended {out.kind} {out.detail!r}, expected {want}")
    if dials:
        wait = _expected_wait(d.get(cv.WAIT, ""))
        if d.get(cv.REASON, "").endswith("_busy_wait"):
            wait = max(wait, 10)
        if out.dial_timeouts != [wait]:
            bad.append(f"Dial timeouts {out.dial_timeouts}, expected [{wait}]")
    elif out.dial_timeouts:
        bad.append(f"dialled an unusable target {target!r}")
    if out.kind == "queued":
        prio = d.get(cv.PRIORITY, "") if decided else "0"
        prio = prio if re.fullmatch(r"[0-9]+", prio) else "0"
        if out.queues_tried[-1][1] != prio:
            bad.append(f"QUEUE_PRIO {out.queues_tried[-1][1]!r}, expected {prio!r}")
    return bad


def _daemon(n: int, action: str, target: str, wait: str) -> dict[str, str]:
    """The nine variables, the less important ones cycled so each value appears often."""
    return {
        cv.ACTION: action,
        cv.TARGET: target,
        cv.QUEUE: QUEUE_VALUES[n % len(QUEUE_VALUES)],
        cv.PRIORITY: PRIORITIES[n % len(PRIORITIES)],
        cv.WAIT: wait,
        cv.ANNOUNCE: ANNOUNCES[n % len(ANNOUNCES)],
        cv.OPERATOR: "op1",
        cv.REASON: REASONS[n % len(REASONS)],
        cv.DECISION: f"d{n}",
    }


def test_the_model_knows_every_status_asterisk_sets() -> None:
    assert set(AGISTATUS) <= {"SUCCESS", "FAILURE", "NOTFOUND", "HANGUP"}
    assert len(DIALSTATUS) == 9


@pytest.mark.parametrize("agistatus", ["SUCCESS", "FAILURE", "NOTFOUND", "HANGUP", "SILENT"])
def test_every_decision_ends_in_a_queue_or_an_answer(agistatus: str) -> None:
    failures: list[str] = []
    combos = list(itertools.product(ACTIONS, TARGETS, WAITS, DIALSTATUS))
    if agistatus != "SUCCESS":  # the daemon's values never reach the channel
        combos = combos[:: len(combos) // 40]
    for n, (action, target, wait, dialstatus) in enumerate(combos):
        sc = Scenario(agistatus=agistatus, daemon=_daemon(n, action, target, wait),
                      dialstatus=dialstatus)
        out = run(sc, PLAN)
        for b in _check(sc, out):
            failures.append(f"{action=} {target=} {wait=} {dialstatus=}: {b}")
    assert not failures, f"{len(failures)} failures, e.g.\n" + "\n".join(failures[:15])


def _sticky(**extra: str) -> dict[str, str]:
    return {cv.ACTION: "operator", cv.TARGET: "PJSIP/1001", cv.QUEUE: "support",
            cv.PRIORITY: "10", cv.WAIT: "20", cv.ANNOUNCE: "callrouter/your-operator",
            cv.OPERATOR: "op1", cv.REASON: "sticky_available", cv.DECISION: "d1", **extra}


def test_hangup_during_the_announcement_runs_nothing_after_it() -> None:
    out = run(Scenario(daemon=_sticky(), hangup_during="Playback"), PLAN)
    assert (out.kind, out.detail) == ("caller-hangup", "during the announcement")
    assert out.trace[-1].startswith("Playback(")


def test_hangup_during_the_agi_runs_nothing_after_it() -> None:
    out = run(Scenario(agistatus="HANGUP", daemon=_sticky()), PLAN)
    assert out.kind == "caller-hangup"
    assert out.trace[-1].startswith("AGI(")


def test_a_silent_daemon_is_cut_off_at_eight_seconds_and_the_caller_queued() -> None:
    out = run(Scenario(agistatus="SILENT"), PLAN)
    assert (out.kind, out.detail) == ("queued", ENTRY)
    assert out.problems == []
    assert any(t.startswith("Log(WARNING,") for t in out.trace)


def test_the_trunks_own_absolute_timeout_is_kept() -> None:
    # a healthy daemon: the trunk's TIMEOUT(absolute) is neither replaced nor cancelled
    out = run(Scenario(daemon=_sticky(), trunk_timeout=3600), PLAN)
    assert out.kind == "queued"
    assert out.timeout_after_agi is not None and 3590 < out.timeout_after_agi <= 3600
    # a silent daemon: that limit ends the call (AGIEXITONHANGUP ends the AGI), no guard
    out = run(Scenario(agistatus="SILENT", trunk_timeout=3600), PLAN)
    assert (out.kind, out.detail) == ("hangup", "")


def test_busy_operator_wait_dials_when_free_for_what_is_left() -> None:
    sc = Scenario(daemon=_sticky(**{cv.REASON: "sticky_busy_wait", cv.WAIT: "30"}),
                  device_states=["INUSE"] * 12 + ["NOT_INUSE"])
    out = run(sc, PLAN)
    assert out.problems == []
    assert out.dial_timeouts == [30 - 12]
    assert out.trace.count("Wait(1)") == 12


@pytest.mark.parametrize("state", ["INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"])
def test_busy_operator_wait_gives_up_at_the_deadline(state: str) -> None:
    sc = Scenario(daemon=_sticky(**{cv.REASON: "sticky_busy_wait", cv.WAIT: "25"}),
                  device_states=[state])
    out = run(sc, PLAN)
    assert (out.kind, out.detail) == ("queued", "support")
    assert out.dial_timeouts == []
    assert out.trace.count("Wait(1)") == 25
    assert out.problems == []


@pytest.mark.parametrize("state", ["UNAVAILABLE", "INVALID"])
def test_busy_operator_wait_stops_at_once_for_a_gone_device(state: str) -> None:
    sc = Scenario(daemon=_sticky(**{cv.REASON: "sticky_busy_wait"}), device_states=[state])
    out = run(sc, PLAN)
    assert (out.kind, out.detail) == ("queued", "support")
    assert "Wait(1)" not in out.trace


def test_short_remaining_wait_still_rings_ten_seconds() -> None:
    sc = Scenario(daemon=_sticky(**{cv.REASON: "sticky_busy_wait", cv.WAIT: "12"}),
                  device_states=["INUSE"] * 11 + ["NOT_INUSE"])
    assert run(sc, PLAN).dial_timeouts == [10]


def test_hangup_during_the_busy_wait() -> None:
    sc = Scenario(daemon=_sticky(**{cv.REASON: "sticky_busy_wait"}), device_states=["INUSE"],
                  hangup_during="Wait")
    assert run(sc, PLAN).kind == "caller-hangup"


def test_a_queue_that_does_not_exist_falls_back_to_the_entry_queue() -> None:
    # apps/app_queue.c: join_queue() fails, QUEUESTATUS=UNKNOWN, Queue returns 0
    out = run(Scenario(daemon=_sticky(**{cv.TARGET: "", cv.QUEUE: "support-l2"})), PLAN)
    assert (out.kind, out.detail) == ("queued", "support")
    assert [q for q, _ in out.queues_tried] == ["support-l2", "support"]
    assert out.queues_tried[-1][1] == "10", "the caller keeps the raised priority"


def test_an_entry_queue_that_does_not_exist_falls_back_to_the_default() -> None:
    sc = Scenario(agistatus="FAILURE", channel={"CALLROUTER_ENTRY_QUEUE": "sales"})
    out = run(sc, PLAN)
    assert (out.kind, out.detail) == ("queued", "support")
    assert [q for q, _ in out.queues_tried] == ["sales", "support"]


@pytest.mark.parametrize("status", ["FULL", "JOINEMPTY", "JOINUNAVAIL", "TIMEOUT",
                                    "LEAVEEMPTY", "LEAVEUNAVAIL", "WITHDRAW", "CONTINUE"])
def test_queue_returns_try_each_queue_once_then_503(status: str) -> None:
    sc = Scenario(daemon=_sticky(**{cv.TARGET: "", cv.QUEUE: "specialists"}),
                  channel={"CALLROUTER_ENTRY_QUEUE": "nosuch"},
                  queue_status={"specialists": status, "support": status})
    out = run(sc, PLAN)
    assert [q for q, _ in out.queues_tried] == ["specialists", "nosuch", "support"]
    assert (out.kind, out.detail) == ("hangup", "34")


def test_empty_or_odd_globals() -> None:
    odd = {"CALLROUTER_DEFAULT_QUEUE": "", "CALLROUTER_DEFAULT_WAIT": "soon",
           "CALLROUTER_DIAL_OPTIONS": "m(default", "CALLROUTER_MOH": ""}
    out = run(Scenario(daemon=_sticky(**{cv.WAIT: ""}), globals=odd), PLAN)
    assert out.problems == []
    assert out.dial_timeouts == [20]
    assert out.dial_options == ["r"]
    assert (out.kind, out.detail) == ("queued", "support")
    for opts, used in [("", "r"), ("m(default)", "m(default)"), ("tTr", "tTr"),
                       ("r,x", "r"), ("m(a(b))", "r")]:
        out = run(Scenario(daemon=_sticky(), globals={"CALLROUTER_DIAL_OPTIONS": opts}), PLAN)
        assert out.dial_options == [used], opts


@pytest.mark.parametrize(("fastagi", "script"), [
    ("agi://127.0.0.1:4573", "agi://127.0.0.1:4573/route"),
    ("hagi://daemons.example", "hagi://daemons.example/route"),
    # not a URL: the classic entry in astagidir, run as named. Asterisk 22.10.1 answered
    # "callrouter-route.agi/route" with AGISTATUS=NOTFOUND (docs/asterisk-validation.md)
    ("callrouter-route.agi", "callrouter-route.agi"),
])
def test_the_agi_is_the_daemons_route_or_the_classic_script(fastagi: str, script: str) -> None:
    out = run(Scenario(daemon=_sticky(), dialstatus="ANSWER",
                       globals={"CALLROUTER_FASTAGI": fastagi}), PLAN)
    assert out.problems == []
    assert out.agi_scripts == [script]
    assert out.kind == "answered"


def test_no_agi_configured_goes_to_the_entry_queue_without_an_agi() -> None:
    # nothing to ask: fail open at once, as a daemon that cannot be reached would
    out = run(Scenario(daemon=_sticky(), globals={"CALLROUTER_FASTAGI": ""}), PLAN)
    assert out.problems == []
    assert out.agi_scripts == []
    assert (out.kind, out.detail) == ("queued", ENTRY)
    assert out.queues_tried == [(ENTRY, "0")]


def test_a_transfer_back_into_the_context_starts_clean() -> None:
    # stale variables on the channel from an earlier pass are cleared before the AGI
    stale = {cv.TARGET: "PJSIP/9999", cv.ACTION: "operator", cv.WAIT: "5"}
    out = run(Scenario(agistatus="FAILURE", channel=stale), PLAN)
    assert (out.kind, out.detail) == ("queued", ENTRY)
    assert out.dial_timeouts == []
