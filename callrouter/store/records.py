"""Values the store returns that the routing core has no type for (tokens, call rows, audit)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum

from callrouter.domain.model import Action, Outcome


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
class StoredCall:
    """One row of the call log, for display and for the operator's follow-up (resolved, note)."""

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


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One administrative change: who did what to which subject, when, with details."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)
