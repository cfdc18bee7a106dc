"""Operator interfaces: the ``Tech/resource`` strings the dialplan can ring and a queue can hold."""

from __future__ import annotations

import re

# The same form the shipped dialplan accepts for CALLROUTER_TARGET before it calls
# Dial(${CR_TARGET},...) (dialplan/callrouter-inbound.conf): Dial ends the call on a target
# without "Tech/", and a "," "(" ")" "[" "]" "&" "|" or a space in it shifts or swallows
# Dial's timeout and options. Anything outside this form the dialplan skips, so an operator
# with such an interface could never be rung directly.
_TECH = r"[A-Za-z][A-Za-z0-9_]*"
_RESOURCE = r"[A-Za-z0-9_.@:+/-]+"
INTERFACE_PATTERN = rf"^{_TECH}/{_RESOURCE}$"
# app_queue keeps a member's interface in char[AST_CHANNEL_NAME] (80 with the NUL): a longer
# interface is cut in queues.conf and no longer matches the daemon's target or AMI events.
MAX_INTERFACE_LENGTH = 79
INTERFACE_HINT = (
    "expected an Asterisk interface Tech/resource such as PJSIP/1001: a technology "
    "(a letter, then letters, digits or '_'), '/', then letters, digits or _ . @ : + / - "
    f"(at most {MAX_INTERFACE_LENGTH} characters; no spaces, ',', '(', ')', '[', ']', '&', '|')"
)
_INTERFACE = re.compile(rf"{_TECH}/{_RESOURCE}")


def is_dialable(interface: str) -> bool:
    """Whether the dialplan can Dial this interface and a queue member can hold it whole."""
    return len(interface) <= MAX_INTERFACE_LENGTH and _INTERFACE.fullmatch(interface) is not None


def check_interface(interface: str) -> str:
    """The interface unchanged when an operator may have it; ValueError (INTERFACE_HINT) if not.

    An operator's interface is what the daemon sets as CALLROUTER_TARGET and what queues.conf
    lists as the member, so one the dialplan refuses would make that operator unreachable
    except through the queue. It is refused when entered, not discovered on a live call.
    """
    if not is_dialable(interface):
        raise ValueError(INTERFACE_HINT)
    return interface
