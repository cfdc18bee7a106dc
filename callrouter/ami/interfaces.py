"""Interface names as Asterisk spells them, normalised so members, devices and channels meet."""

from __future__ import annotations

import re
from collections.abc import Mapping

from callrouter.domain.model import Operator

# "PJSIP/1001-0000000a", "Local/op1@operators-0000002d;1": a device plus a channel counter.
_CHANNEL_SUFFIX = re.compile(r"-[0-9a-fA-F]{8}$")


def interface_key(interface: str) -> str:
    """Key of a member interface or device: ``Local/op1@operators/n`` -> ``local/op1@operators``.

    Local channel options (``/n``, ``/m``) do not change which operator rings, and
    DeviceStateChange reports ``Local/op1@operators`` without them.
    """
    s = interface.strip()
    tech, sep, rest = s.partition("/")
    if sep and tech.lower() == "local":
        rest = rest.split("/", 1)[0]
        s = f"{tech}/{rest}"
    return s.lower()


def channel_key(channel: str) -> str:
    """Interface key of a channel: ``Local/op1@operators-0000002d;1`` -> ``local/op1@operators``."""
    s = channel.split(";", 1)[0]
    s = _CHANNEL_SUFFIX.sub("", s)
    return interface_key(s)


class InterfaceMap:
    """Which operator an interface belongs to, from the operator directory.

    One object is shared by the tracker and the presence book: ``replace()`` swaps its
    contents in place, so a reloaded directory reaches both at once.
    """

    def __init__(self, operators: Mapping[str, Operator]) -> None:
        self.operators: dict[str, Operator] = {}
        self._by_key: dict[str, str] = {}
        self._configured: dict[str, str] = {}
        self.replace(operators)

    def replace(self, operators: Mapping[str, Operator]) -> bool:
        """Take a new directory (operators added, removed, re-bound); True if it changed."""
        fresh = dict(operators)
        by_key: dict[str, str] = {}
        configured: dict[str, str] = {}
        for op in fresh.values():
            for iface in op.interfaces:
                by_key[interface_key(iface)] = op.id
                configured[interface_key(iface)] = iface
        changed = fresh != self.operators
        self.operators, self._by_key, self._configured = fresh, by_key, configured
        return changed

    def operator_for_interface(self, interface: str | None) -> str | None:
        if not interface:
            return None
        return self._by_key.get(interface_key(interface))

    def operator_for_channel(self, channel: str | None) -> str | None:
        if not channel:
            return None
        return self._by_key.get(channel_key(channel))

    def interface_of_channel(self, channel: str) -> str:
        """The configured interface a channel belongs to, else the channel without its counter."""
        key = channel_key(channel)
        if key in self._configured:
            return self._configured[key]
        return _CHANNEL_SUFFIX.sub("", channel.split(";", 1)[0])

    def keys_of(self, operator_id: str) -> tuple[str, ...]:
        op = self.operators.get(operator_id)
        return tuple(interface_key(i) for i in op.interfaces) if op else ()
