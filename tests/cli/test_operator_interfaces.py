"""``callrouter operators add`` refuses an interface the dialplan cannot Dial: one line, exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from callrouter.domain.interfaces import INTERFACE_PATTERN, check_interface, is_dialable
from tests.cli.test_cli import Cli

DIALPLAN = Path(__file__).resolve().parents[2] / "dialplan" / "callrouter-inbound.conf"


@pytest.mark.parametrize(
    "interface",
    ["1009", "pjsip 1009", "PJSIP/10,09", "PJSIP/1009(x)", "PJSIP/[1009]", "PJSIP/a&b",
     "PJSIP/a|b", "PJSIP/10 09", "PJSIP/", "PJSIP/[/x]", "PJSIP/" + "9" * 74],
)
def test_add_refuses_an_interface_the_dialplan_cannot_dial(
    tmp_path: Path, interface: str
) -> None:
    cli = Cli(tmp_path)
    line = cli.fails("operators", "add", "op9", "--name", "Nina",
                     "--interface", "PJSIP/1009", "--interface", interface)
    assert line.startswith(f"error: --interface {interface!r}: expected an Asterisk interface "
                           "Tech/resource such as PJSIP/1001"), line
    assert "op9" not in cli.ok("operators", "list"), "nothing was added"


def test_add_accepts_dialable_interfaces(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    out = cli.ok("operators", "add", "op9", "--name", "Nina", "--interface",
                 "Local/op9@operators/n", "--interface", "PJSIP/1009")
    assert "on Local/op9@operators/n, PJSIP/1009" in out


def test_the_interface_rule_is_the_dialplans_target_rule() -> None:
    """What the CLI and API accept is exactly what the dialplan lets Dial have."""
    dialplan = DIALPLAN.read_text()
    rules = re.findall(r'REGEX\("([^"]+)" \$\{CR_TARGET\}\)', dialplan)
    assert rules == [INTERFACE_PATTERN]


@pytest.mark.parametrize(
    ("interface", "ok"),
    [("PJSIP/1001", True), ("Local/op1@operators/n", True), ("IAX2/u:p@h", True),
     ("PJSIP/1001\n", False), ("PJSIP/1001 ", False), (" PJSIP/1001", False),
     ("PJSIP/1001,20", False), ("PJSIP", False), ("P J/1", False)],
)
def test_check_interface(interface: str, ok: bool) -> None:
    assert is_dialable(interface) is ok
    if ok:
        assert check_interface(interface) == interface
    else:
        with pytest.raises(ValueError, match="Tech/resource"):
            check_interface(interface)
