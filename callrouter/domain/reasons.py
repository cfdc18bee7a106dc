"""Stable machine codes for why a call went where it went, each with a human sentence."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ReasonCode(StrEnum):
    """Reason codes are part of the public interface (channel variable, API, metrics labels).

    Never rename one; add new ones.
    """

    # the caller
    NEW_CALLER = "new_caller"
    WITHHELD = "withheld"
    SHARED_NUMBER = "shared_number"
    VIP = "vip"
    INCIDENT = "incident"
    # sticky
    STICKY_AVAILABLE = "sticky_available"
    STICKY_BUSY_WAIT = "sticky_busy_wait"
    STICKY_UNAVAILABLE = "sticky_unavailable"
    STICKY_OPERATOR_INACTIVE = "sticky_operator_inactive"
    STICKY_OFF = "sticky_off"
    STICKY_STRICT_FALLBACK = "sticky_strict_fallback"
    SHORT_CALL_IGNORED = "short_call_ignored"
    OPTED_OUT = "opted_out"
    ABUSIVE_PROTECTED = "abusive_protected"
    # specialists and escalation
    SPECIALIST_LAST_CONTACT = "specialist_last_contact"
    SPECIALIST_TICKET = "specialist_ticket"
    SPECIALIST_BUSY_WAIT = "specialist_busy_wait"
    SPECIALIST_UNAVAILABLE = "specialist_unavailable"
    TICKET_ESCALATED = "ticket_escalated"
    ESCALATED_REPEAT = "escalated_repeat"
    ESCALATION_CAPPED = "escalation_capped"
    ESCALATION_SUPPRESSED_INCIDENT = "escalation_suppressed_incident"
    NO_SECOND_LINE = "no_second_line"
    NO_SPECIALIST_AVAILABLE = "no_specialist_available"
    # queue placement
    REPEAT_PRIORITY = "repeat_priority"
    DEFAULT_QUEUE = "default_queue"
    # failures of the machinery, not business outcomes (set by adapters, never by decide)
    FALLBACK_TIMEOUT = "fallback_timeout"
    FALLBACK_STORE_DOWN = "fallback_store_down"
    FALLBACK_BAD_INPUT = "fallback_bad_input"
    FALLBACK_ERROR = "fallback_error"


@dataclass(frozen=True, slots=True)
class Reason:
    code: ReasonCode
    text: str

    def __str__(self) -> str:
        return f"{self.code}: {self.text}"
