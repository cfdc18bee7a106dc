"""Values the store returns that the routing core has no type for (tokens, call rows, audit)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum

from callrouter.domain.model import Action, Outcome
from callrouter.legs import CallLeg


class Unset(Enum):
    """Marks an update argument that was not given (``None`` means "clear it")."""

    UNSET = "unset"


UNSET = Unset.UNSET


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    OPERATOR = "operator"
    READONLY = "readonly"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An API token as stored: never the plaintext, only who it is for and what it may do."""

    id: str
    name: str
    role: Role
    created_at: datetime
    operator_id: str | None = None
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly created token: ``plaintext`` is shown once and never stored."""

    info: TokenInfo
    plaintext: str


@dataclass(frozen=True, slots=True)
class CallNote:
    """One operator's follow-up on a call they handled: their note and their verdict."""

    operator_id: str
    note: str | None
    resolved: bool | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredCall:
    """One row of the call log, for display and for the operator's follow-up (resolved, note).

    ``operator_id`` is who handled the call last, ``transferred_from`` who answered it
    first (after a transfer); ``legs`` every party's part in order, ``notes`` each
    handler's own note and verdict. ``note`` is the call's own note (a supervisor's, or one
    written before per-operator notes); ``resolved`` the call's verdict (see
    ``callrouter.store.call_legs.call_verdict``).
    """

    id: str
    caller_raw: str
    caller_number: str | None
    queue: str | None
    server_id: str
    uniqueid: str | None
    started_at: datetime
    outcome: Outcome
    linkedid: str | None = None
    channel: str | None = None
    decision_id: str | None = None
    action: Action | None = None
    target_operator_id: str | None = None
    operator_id: str | None = None
    answered_interface: str | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    hold_seconds: int = 0
    talk_seconds: int = 0
    hangup_by: str | None = None
    transferred: bool = False
    sticky_hit: bool | None = None
    fallback_cause: str | None = None
    escalated: bool = False
    resolved: bool | None = None
    note: str | None = None
    transferred_from: str | None = None
    legs: tuple[CallLeg, ...] = ()
    notes: tuple[CallNote, ...] = ()

    @property
    def handlers(self) -> tuple[str, ...]:
        """Every operator who had the call, in the order they first took it. Calls recorded
        before legs existed know only the first (``transferred_from``) and the last."""
        order = [leg.operator_id for leg in self.legs]
        order += [self.transferred_from, self.operator_id]
        return tuple(dict.fromkeys(op for op in order if op))

    def handled_by(self, operator_id: str) -> bool:
        return operator_id in self.handlers


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One administrative change: who did what to which subject, when, with details."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)
