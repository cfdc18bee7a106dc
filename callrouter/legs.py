"""Who handled a call, leg by leg: what the AMI listener records and the store keeps.

A call answered by one operator has one leg; each transfer that hands it to someone else
adds one. The AMI tracker sends the whole list with every record of the call
(``LeggedCallRecord``: the live ones while it lasts, the final one at hangup), so the
last record written is the complete story.

These values extend ``service.ports.CallRecord`` from outside that module because it was
being reworked by someone else when legs were added; ``legs`` belongs on ``CallRecord``
itself, and moves there when that is convenient (nothing else would change).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from callrouter.service.ports import CallRecord


class LegEnd(StrEnum):
    """How one operator's part of a call ended."""

    HUNG_UP = "hung_up"  # the call ended on this leg (``hangup_by`` says who)
    BLIND_TRANSFER = "blind_transfer"  # a BlindTransfer event
    ATTENDED_TRANSFER = "attended_transfer"  # an AttendedTransfer event
    # Handed over without a transfer event saying how (app_queue's AgentComplete
    # ``Reason: transfer``, or someone else took the call).
    TRANSFER = "transfer"


TRANSFERS = frozenset({LegEnd.BLIND_TRANSFER, LegEnd.ATTENDED_TRANSFER, LegEnd.TRANSFER})


@dataclass(frozen=True, slots=True)
class CallLeg:
    """One party's part of a call, from when they took it to when they left it."""

    seq: int  # 0 for the first answer, then one per hand-over
    operator_id: str | None  # None: a party no operator claims (an outside number)
    interface: str | None
    via: str  # "queue" (AgentConnect) | "dial" (a Dial() answered) | "transfer" (attended)
    answered_at: datetime | None
    ended_at: datetime | None = None  # None while the leg is live
    hold_seconds: int = 0  # the caller's wait before this leg (queue, or ringing)
    talk_seconds: int = 0  # this party's time with the caller (0 while live)
    end: LegEnd | None = None  # None while the leg is live
    hangup_by: str | None = None  # "caller" | "operator", for HUNG_UP
    transferred_to: str | None = None  # the operator of the next leg, when there is one
    # What the transfer named: "op2@transfer" (blind: Extension@Context), the target's
    # interface (attended), or the application (attended to an App).
    transfer_target: str | None = None

    @property
    def transferred(self) -> bool:
        return self.end in TRANSFERS


@dataclass(frozen=True, slots=True)
class LeggedCallRecord(CallRecord):
    """A ``CallRecord`` with every leg of the call as the tracker knows it now; an empty
    tuple means nobody answered (or the record does not say)."""

    legs: tuple[CallLeg, ...] = ()


def legs_of(record: CallRecord) -> tuple[CallLeg, ...]:
    """The legs a record carries (none for a plain ``CallRecord``)."""
    return record.legs if isinstance(record, LeggedCallRecord) else ()


def operator_talk_seconds(record: CallRecord) -> int | None:
    """The own time with the caller of the operator a finished, transferred call ends with
    (``operator_id``, its last handler): the talk of their legs, added up (A -> B -> A:
    both of A's). What ``min_talk_seconds`` is checked against for the next call.

    None when it is not known or not needed: a live record (talk is 0 until a leg ends), a
    call with one leg (its talk time is that operator's), a record without legs, or a last
    handler with no leg of their own.
    """
    legs = legs_of(record)
    if record.outcome == "in_progress" or len(legs) < 2 or record.operator_id is None:
        return None
    own = [leg.talk_seconds for leg in legs if leg.operator_id == record.operator_id]
    return sum(own) if own else None


__all__ = [
    "TRANSFERS", "CallLeg", "LegEnd", "LeggedCallRecord", "legs_of", "operator_talk_seconds",
]
