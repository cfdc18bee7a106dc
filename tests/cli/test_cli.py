"""The ``callrouter`` command line on a temp SQLite file: every routing rule explained by
``callrouter route`` on data entered through the CLI, and one clear line for each mistake."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from callrouter.cli import app
from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.service.ports import DecisionRecord

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "callrouter.sample.toml"

RULES = """\
[rules]
default_queue = "support"

[rules.defaults]
specialist_queue = "support-l2"
escalation_threshold = 3
max_escalations_per_day = 2

[rules.defaults.vip_classes.gold]
priority = 500

[rules.queues.support]
[rules.queues.support-l2]

[rules.queues.sales]
sticky_mode = "strict"
strict_fallback_queue = "sales-overflow"

[rules.queues.nosticky]
sticky_mode = "off"

[rules.queues.careful]
min_talk_seconds = 60

[rules.queues.capped]
max_escalations_per_day = 1
"""

CALLER = "8 912 345-67-89"  # national form
CALLER_E164 = "+79123456789"


@dataclass
class Routed:
    """``callrouter route`` output, parsed."""

    number: str
    entry: str
    action: str
    target: str | None = None
    interface: str | None = None
    queue: str | None = None
    priority: int = 0
    announce: str | None = None
    reasons: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @property
    def main(self) -> str:
        return self.reasons[0]


def parse_route(text: str) -> Routed:
    lines = text.splitlines()
    head = re.match(r"(.+) calling (\S+): (\w+)$", lines[0])
    assert head, text
    routed = Routed(number=head[1], entry=head[2], action=head[3])
    in_reasons = False
    for line in lines[1:]:
        if m := re.match(r"  target    (\S+) on (\S+), wait \d+ s, then queue (\S+)$", line):
            routed.target, routed.interface, routed.queue = m[1], m[2], m[3]
        elif m := re.match(r"  queue     (\S+)$", line):
            routed.queue = m[1]
        elif m := re.match(r"  priority  (-?\d+)$", line):
            routed.priority = int(m[1])
        elif m := re.match(r"  announce  (\S+)$", line):
            routed.announce = None if m[1] == "-" else m[1]
        elif line == "  reasons:":
            in_reasons = True
        elif line.startswith("  history"):
            in_reasons = False
        elif in_reasons:
            code, _, reason_text = line.strip().partition(" ")
            routed.reasons.append(code)
            routed.texts.append(reason_text.strip())
    assert routed.reasons, text
    return routed


class Cli:
    """Runs ``callrouter`` in-process against one temp database (and optional config)."""

    def __init__(self, tmp_path: Path, rules: str | None = RULES) -> None:
        self.db = tmp_path / "cli.db"
        self.config: Path | None = None
        if rules is not None:
            self.config = tmp_path / "callrouter.toml"
            self.config.write_text(rules, encoding="utf-8")
        self.env = {
            "CALLROUTER_DATABASE__URL": f"sqlite+aiosqlite:///{self.db}",
            "CALLROUTER_CONFIG": str(self.config) if self.config else None,
            "COLUMNS": "200",
        }
        self.runner = CliRunner()

    def run(self, *args: str) -> Result:
        return self.runner.invoke(app, list(args), env=self.env, catch_exceptions=False)

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def route(self, caller: str, *args: str) -> Routed:
        return parse_route(self.ok("route", caller, *args))

    def fails(self, *args: str) -> str:
        """A user's mistake: exit 2, exactly one line on stderr, no traceback."""
        result = self.run(*args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "Traceback" not in result.output
        assert lines[0].startswith("error: ")
        return lines[0]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    c = Cli(tmp_path)
    c.ok("operators", "add", "op1", "--name", "Anna", "--interface", "PJSIP/1001",
         "--queue", "support")
    c.ok("operators", "add", "op2", "--name", "Boris", "--interface", "PJSIP/1002",
         "--queue", "support")
    c.ok("operators", "add", "sam", "--name", "Sam", "--interface", "PJSIP/2001",
         "--tier", "specialist", "--queue", "support-l2")
    return c


# --- the rules, one by one ----------------------------------------------------------------


def test_new_caller(cli: Cli) -> None:
    r = cli.route(CALLER)
    assert (r.number, r.entry, r.action, r.main) == (CALLER_E164, "support", "queue", "new_caller")
    assert r.target is None and r.queue == "support" and r.announce is None


@pytest.mark.parametrize("caller", ["anonymous", "unknown", "withheld", ""])
def test_withheld_never_matched(cli: Cli, caller: str) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1")
    r = cli.route(caller)
    assert r.action == "queue" and r.reasons == ["withheld"]
    assert r.target is None and r.announce is None and r.priority == 0


def test_sticky_available_with_announcement(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1", "--ended", "30m")
    r = cli.route("+7 912 345 67 89")  # the other form of the same number
    assert r.action == "operator" and r.main == "sticky_available"
    assert (r.target, r.interface, r.queue) == ("op1", "PJSIP/1001", "support")
    assert r.announce == "callrouter/your-operator"
    assert "Anna" in r.texts[0] and "30 min ago" in r.texts[0]


def test_sticky_busy_waits_without_announcement(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1")
    r = cli.route(CALLER, "--state", "op1=in_call")
    assert r.action == "operator" and r.main == "sticky_busy_wait"
    assert (r.target, r.interface) == ("op1", "PJSIP/1001")
    assert r.announce is None
    assert "wait up to 20 s" in r.texts[0]


def test_paused_goes_to_pool_with_raised_priority(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1")
    r = cli.route(CALLER, "--state", "op1=paused")
    assert r.action == "queue" and r.main == "sticky_unavailable"
    assert "repeat_priority" in r.reasons and r.priority == 10
    assert r.target is None and r.announce is None and r.queue == "support"


def test_strict_mode_falls_back_to_configured_queue(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1", "--queue", "sales")
    r = cli.route(CALLER, "--queue", "sales", "--state", "op1=logged_off")
    assert r.action == "queue" and r.main == "sticky_strict_fallback"
    assert r.queue == "sales-overflow" and "sticky_unavailable" in r.reasons
    available = cli.route(CALLER, "--queue", "sales")
    assert available.main == "sticky_available" and available.queue == "sales-overflow"


def test_sticky_off(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1")
    r = cli.route(CALLER, "--queue", "nosticky")
    assert r.action == "queue" and r.target is None
    assert "sticky_off" in r.reasons and r.queue == "nosticky"


def test_min_talk_time_ignores_short_calls(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1", "--talk", "20")
    r = cli.route(CALLER, "--queue", "careful")
    assert r.action == "queue" and r.target is None
    assert "short_call_ignored" in r.reasons
    # the same short call counts where there is no minimum
    assert cli.route(CALLER, "--queue", "support").main == "sticky_available"


def test_specialist_by_last_contact(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "sam")
    r = cli.route(CALLER)
    assert r.action == "specialist" and r.main == "specialist_last_contact"
    assert (r.target, r.interface, r.queue) == ("sam", "PJSIP/2001", "support-l2")
    assert r.announce == "callrouter/your-specialist"


def test_specialist_by_ticket(cli: Cli) -> None:
    cli.ok("tickets", "add", CALLER, "router reboots", "--tier", "specialist",
           "--assignee", "sam")
    r = cli.route(CALLER)
    assert r.action == "specialist" and r.main == "specialist_ticket"
    assert (r.target, r.interface) == ("sam", "PJSIP/2001")


def test_escalation_after_unresolved_calls(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1", "--ended", "3h")
    cli.ok("calls", "add", CALLER, "--operator", "op2", "--ended", "1h", "--unresolved")
    r = cli.route(CALLER)
    assert r.action == "queue" and r.main == "escalated_repeat"
    assert r.queue == "support-l2" and r.target is None
    assert "call 3 within 24 h" in r.texts[0]


def test_no_escalation_when_last_call_resolved(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1", "--ended", "3h")
    cli.ok("calls", "add", CALLER, "--operator", "op2", "--ended", "1h", "--resolved")
    r = cli.route(CALLER)
    assert r.main == "sticky_available" and r.target == "op2"


def test_escalation_cap(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1", "--ended", "3h", "--queue", "capped")
    cli.ok("calls", "add", CALLER, "--operator", "op2", "--ended", "1h", "--queue", "capped")
    assert cli.route(CALLER, "--queue", "capped").main == "escalated_repeat"
    # The escalation count comes from the decision log, which the running daemon writes;
    # the CLI cannot take live decisions, so write the one the daemon would have logged.
    _log_escalation(cli.db, CALLER_E164)
    r = cli.route(CALLER, "--queue", "capped")
    assert "escalation_capped" in r.reasons
    assert r.main == "sticky_available" and r.target == "op2"
    assert any("cap 1" in t for t in r.texts)


def _log_escalation(db: Path, number: str) -> None:
    from callrouter.store.db import make_engine, make_sessionmaker
    from callrouter.store.store import Store

    async def write() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{db}")
        try:
            store = Store(make_sessionmaker(engine))
            decision = Decision(
                action=Action.QUEUE, queue="support-l2", priority=10, escalated=True,
                reasons=(Reason(ReasonCode.ESCALATED_REPEAT, "escalated"),),
            )
            async with store.transaction() as tx:
                await tx.decisions.insert(DecisionRecord(
                    id=uuid.uuid4().hex, decided_at=datetime.now(UTC), caller_raw=number,
                    caller_number=number, queue="capped", decision=decision, inputs={},
                    latency_ms=1.0, server_id="test", uniqueid=None, linkedid=None,
                    channel=None,
                ))
        finally:
            await engine.dispose()

    asyncio.run(write())


def test_incident_suppresses_escalation_and_announces(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1", "--ended", "3h")
    cli.ok("calls", "add", CALLER, "--operator", "op2", "--ended", "1h")
    started = cli.ok("incidents", "start", "callrouter/outage", "--title", "fibre cut")
    incident_id = re.search(r"incident (\S+) started", started)
    assert incident_id, started
    r = cli.route(CALLER)
    assert "escalation_suppressed_incident" in r.reasons and "incident" in r.reasons
    assert r.main == "sticky_available" and r.target == "op2"
    assert r.announce is not None and r.announce.startswith("callrouter/outage")
    # the incident over, the count-based escalation is back
    cli.ok("incidents", "end", incident_id[1])
    after = cli.route(CALLER)
    assert after.main == "escalated_repeat" and after.announce is None


def test_incident_scoped_by_prefix(cli: Cli) -> None:
    cli.ok("incidents", "start", "callrouter/outage", "--prefix", "+7495")
    assert "incident" not in cli.route(CALLER).reasons
    r = cli.route("8 495 123-45-67")
    assert "incident" in r.reasons and r.announce == "callrouter/outage"


def test_abusive_caller_not_sticky_to_who_flagged_them(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1")
    cli.ok("callers", "flag", CALLER, "--abusive", "--by", "op1")
    r = cli.route(CALLER)
    assert r.action == "queue" and r.target is None
    assert "abusive_protected" in r.reasons


def test_abusive_caller_not_sent_to_specialist(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "sam")
    cli.ok("callers", "flag", CALLER, "--abusive", "--by", "op2")
    r = cli.route(CALLER)
    assert r.action == "queue" and r.target is None
    assert "abusive_protected" in r.reasons


def test_opt_out_wins(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1")
    cli.ok("callers", "flag", CALLER, "--opt-out", "op1")
    r = cli.route(CALLER)
    assert r.action == "queue" and r.target is None
    assert "opted_out" in r.reasons


def test_vip_class(cli: Cli) -> None:
    out = cli.ok("callers", "flag", CALLER, "--vip", "gold")
    assert "vip=gold" in out
    r = cli.route(CALLER)
    assert "vip" in r.reasons and r.priority == 500


def test_no_second_line(tmp_path: Path) -> None:
    cli = Cli(tmp_path, rules=None)  # built-in rules: no specialist queue
    cli.ok("operators", "add", "op1", "--name", "Anna", "--interface", "PJSIP/1001")
    cli.ok("calls", "add", CALLER, "--operator", "op1", "--ended", "3h")
    cli.ok("calls", "add", CALLER, "--operator", "op1", "--ended", "1h")
    r = cli.route(CALLER)
    assert "no_second_line" in r.reasons
    assert r.main == "sticky_available" and r.target == "op1"


# --- one clear line for each mistake -------------------------------------------------------


def test_bad_rules_file(cli: Cli) -> None:
    assert cli.config is not None
    cli.config.write_text('[rules.defaults]\nsticky_mode = "sometimes"\n', encoding="utf-8")
    line = cli.fails("route", CALLER)
    assert "sticky_mode" in line and "sometimes" in line


def test_not_toml(cli: Cli) -> None:
    assert cli.config is not None
    cli.config.write_text("[rules\n", encoding="utf-8")
    assert "TOML" in cli.fails("route", CALLER)


def test_queue_without_a_rules_table_is_kept_with_a_note(cli: Cli) -> None:
    """Routing keeps an entry queue the rules have no table for (a real Asterisk queue
    with no overrides), so ``route`` shows that decision and says the defaults apply."""
    text = cli.ok("route", CALLER, "--queue", "nosuch")
    assert "calling nosuch" in text
    assert "no table for 'nosuch'" in text and "support" in text


def test_queue_name_asterisk_cannot_take(cli: Cli) -> None:
    line = cli.fails("route", CALLER, "--queue", "no such,queue")
    assert "'no such,queue'" in line and "expected" in line


@pytest.mark.parametrize("number", ["12ab", "+7 912", "phone me"])
def test_malformed_number(cli: Cli, number: str) -> None:
    assert repr(number) in cli.fails("route", number)


@pytest.mark.parametrize("args", [
    ("calls", "add", "12ab", "--operator", "op1"),
    ("calls", "add", CALLER, "--operator", "nosuch"),
    ("calls", "add", CALLER, "--ended", "bogus"),
    ("tickets", "add", CALLER, "subject", "--assignee", "nosuch"),
    ("callers", "flag", CALLER, "--opt-out", "nosuch"),
    ("operators", "add", "op1", "--name", "Again", "--interface", "PJSIP/1001"),
    ("incidents", "end", "nosuch"),
    ("route", CALLER, "--state", "op1=bogus"),
    ("route", CALLER, "--state", "op1"),
])
def test_data_entry_mistakes(cli: Cli, args: tuple[str, ...]) -> None:
    cli.fails(*args)


# --- the other commands ----------------------------------------------------------------


def test_rules_check_sample() -> None:
    result = CliRunner().invoke(app, ["rules", "check", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout and "specialists" in result.stdout


def test_rules_check_bad_file(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[rules.defaults]\nring_seconds = -3\n", encoding="utf-8")
    assert "ring_seconds" in cli.fails("rules", "check", str(bad))


def test_token_operator_role_needs_operator(cli: Cli) -> None:
    assert "--operator" in cli.fails("token", "create", "--role", "operator")
    assert "nosuch" in cli.fails("token", "create", "--role", "operator", "--operator", "nosuch")
    assert "superuser" in cli.fails("token", "create", "--role", "superuser")
    result = cli.run("token", "create", "--role", "operator", "--operator", "op1")
    assert result.exit_code == 0 and len(result.stdout.strip()) >= 20


def test_db_upgrade_on_fresh_sqlite(tmp_path: Path) -> None:
    cli = Cli(tmp_path, rules=None)
    assert not cli.db.exists()
    assert "newest schema" in cli.ok("db", "upgrade")
    with sqlite3.connect(cli.db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        version = conn.execute("select version_num from alembic_version").fetchall()
    assert {"operators", "calls", "tickets"} <= tables
    assert len(version) == 1
    cli.ok("db", "upgrade")  # a second run is a no-op


def test_operators_list(cli: Cli) -> None:
    out = cli.ok("operators", "list")
    for expected in ("op1", "Anna", "PJSIP/1001", "op2", "Boris", "sam", "specialist"):
        assert expected in out
    cli.ok("operators", "deactivate", "op2")
    rows = [line for line in cli.ok("operators", "list").splitlines() if "op2" in line]
    assert len(rows) == 1 and "no" in rows[0]


# --- end to end: the installed console script ----------------------------------------------


def _script(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "callrouter"
    if not exe.exists():
        pytest.skip(f"console script {exe} not installed")
    env = {k: v for k, v in cli.env.items() if v is not None}

    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=20,
                          env={**os.environ, **env})


def test_console_script_routes_sticky(cli: Cli) -> None:
    cli.ok("calls", "add", CALLER, "--operator", "op1")
    done = _script(cli, "route", "+79123456789")
    assert done.returncode == 0, done.stderr
    r = parse_route(done.stdout)
    assert r.main == "sticky_available" and r.interface == "PJSIP/1001"


def test_console_script_error_is_one_line(cli: Cli) -> None:
    done = _script(cli, "route", "12ab")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
