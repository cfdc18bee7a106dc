"""The CALLROUTER_* channel variables the daemon sets and the dialplan reads: one place."""

from __future__ import annotations

ACTION = "CALLROUTER_ACTION"  # operator | specialist | queue
TARGET = "CALLROUTER_TARGET"  # Asterisk interface to ring first, empty for queue
QUEUE = "CALLROUTER_QUEUE"  # queue to join at once, or when the target does not answer
PRIORITY = "CALLROUTER_PRIORITY"  # QUEUE_PRIO for this caller
WAIT = "CALLROUTER_WAIT"  # seconds to ring TARGET; positive whenever TARGET is set
ANNOUNCE = "CALLROUTER_ANNOUNCE"  # sound to play before connecting, or empty
OPERATOR = "CALLROUTER_OPERATOR"  # operator id of TARGET, or empty
REASON = "CALLROUTER_REASON"  # the first reason's machine code
DECISION = "CALLROUTER_DECISION"  # decision id, for correlation and the screen-pop

# The order the daemon sets them in (ACTION last would be safer for a reader that only checks
# ACTION, but the daemon sets them all in one MSet, so they appear together).
ALL: tuple[str, ...] = (
    ACTION,
    TARGET,
    QUEUE,
    PRIORITY,
    WAIT,
    ANNOUNCE,
    OPERATOR,
    REASON,
    DECISION,
)

__all__ = [
    "ACTION",
    "ALL",
    "ANNOUNCE",
    "DECISION",
    "OPERATOR",
    "PRIORITY",
    "QUEUE",
    "REASON",
    "TARGET",
    "WAIT",
]
