"""SQLAlchemy table mappings. Adapter-internal: repositories turn rows into domain values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from callrouter.store.types import UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TIERS = "'first_line', 'specialist'"
OUTCOMES = "'in_progress', 'answered', 'abandoned', 'no_answer', 'failed'"
ACTIONS = "'operator', 'specialist', 'queue'"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class OperatorRow(Base):
    __tablename__ = "operators"
    __table_args__ = (CheckConstraint(f"tier IN ({TIERS})", name="tier"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(20), default="first_line")
    queues: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class OperatorInterfaceRow(Base):
    """One Asterisk interface (``PJSIP/1001``) of an operator; an interface has one owner."""

    __tablename__ = "operator_interfaces"

    interface: Mapped[str] = mapped_column(String(100), primary_key=True)
    operator_id: Mapped[str] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)


class CallRow(Base):
    """One inbound call, opened by the routing decision and completed from AMI events."""

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("server_id", "uniqueid"),
        Index("ix_calls_caller_number_started_at", "caller_number", "started_at"),
        Index("ix_calls_operator_id_started_at", "operator_id", "started_at"),
        Index("ix_calls_started_at", "started_at"),
        CheckConstraint(f"outcome IN ({OUTCOMES})", name="outcome"),
        CheckConstraint("hangup_by IN ('caller', 'operator')", name="hangup_by"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    caller_raw: Mapped[str] = mapped_column(String(80), default="")
    caller_number: Mapped[str | None] = mapped_column(String(32))
    queue: Mapped[str | None] = mapped_column(String(80))
    server_id: Mapped[str] = mapped_column(String(64), default="default")
    uniqueid: Mapped[str | None] = mapped_column(String(64))
    linkedid: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(200))
    decision_id: Mapped[str | None] = mapped_column(String(64), index=True)
    action: Mapped[str | None] = mapped_column(String(20))
    target_operator_id: Mapped[str | None] = mapped_column(String(64))
    operator_id: Mapped[str | None] = mapped_column(String(64))
    answered_interface: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    hold_seconds: Mapped[int] = mapped_column(Integer, default=0)
    talk_seconds: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(20), default="in_progress")
    hangup_by: Mapped[str | None] = mapped_column(String(20))
    transferred: Mapped[bool] = mapped_column(Boolean, default=False)
    # After a transfer: who answered first (operator_id is who handled the call last).
    transferred_from: Mapped[str | None] = mapped_column(String(64))
    # After a transfer: operator_id's own talk time (their legs' added up); talk_seconds
    # is everyone's. NULL for a call not transferred (talk_seconds is theirs).
    operator_talk_seconds: Mapped[int | None] = mapped_column(Integer)
    sticky_hit: Mapped[bool | None] = mapped_column(Boolean)
    fallback_cause: Mapped[str | None] = mapped_column(String(40))
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved: Mapped[bool | None] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(Text)


LEG_ENDS = "'hung_up', 'blind_transfer', 'attended_transfer', 'transfer'"


class CallLegRow(Base):
    """One party's part of a call: the first answer, then one per transfer (AMI legs)."""

    __tablename__ = "call_legs"
    __table_args__ = (
        Index("ix_call_legs_operator_id", "operator_id"),
        CheckConstraint(f"ended_how IN ({LEG_ENDS})", name="ended_how"),
        CheckConstraint("hangup_by IN ('caller', 'operator')", name="hangup_by"),
        CheckConstraint("via IN ('queue', 'dial', 'transfer')", name="via"),
    )

    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[str | None] = mapped_column(String(64))
    interface: Mapped[str | None] = mapped_column(String(100))
    via: Mapped[str] = mapped_column(String(20))
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    hold_seconds: Mapped[int] = mapped_column(Integer, default=0)
    talk_seconds: Mapped[int] = mapped_column(Integer, default=0)
    ended_how: Mapped[str | None] = mapped_column(String(20))
    hangup_by: Mapped[str | None] = mapped_column(String(20))
    transferred_to: Mapped[str | None] = mapped_column(String(64))
    transfer_target: Mapped[str | None] = mapped_column(String(200))


class CallNoteRow(Base):
    """One operator's follow-up on a call they handled: their note and their verdict."""

    __tablename__ = "call_notes"

    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    operator_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    note: Mapped[str | None] = mapped_column(Text)
    resolved: Mapped[bool | None] = mapped_column(Boolean)
    updated_at: Mapped[datetime]


class TicketRow(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_caller_number_created_at", "caller_number", "created_at"),
        CheckConstraint("status IN ('open', 'pending', 'closed')", name="status"),
        CheckConstraint(f"tier IN ({TIERS})", name="tier"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    caller_number: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(20), default="open")
    tier: Mapped[str] = mapped_column(String(20), default="first_line")
    assignee_id: Mapped[str | None] = mapped_column(String(64), index=True)
    external_ref: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CallerFlagsRow(Base):
    __tablename__ = "caller_flags"

    caller_number: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    vip_class: Mapped[str | None] = mapped_column(String(40))
    abusive: Mapped[bool] = mapped_column(Boolean, default=False)
    abusive_flagged_by: Mapped[str | None] = mapped_column(String(64))
    abusive_flagged_at: Mapped[datetime | None]
    notes: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime]


class CallerOptOutRow(Base):
    """Operator X asked not to be routed this caller again."""

    __tablename__ = "caller_opt_outs"

    caller_number: Mapped[str] = mapped_column(String(32), primary_key=True)
    operator_id: Mapped[str] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime]


class DecisionRow(Base):
    """The audit log of routing decisions, one row per call that reached the FastAGI route."""

    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_caller_number_decided_at", "caller_number", "decided_at"),
        Index("ix_decisions_target_operator_id_decided_at", "target_operator_id", "decided_at"),
        Index("ix_decisions_decided_at", "decided_at"),
        Index("ix_decisions_server_id_uniqueid", "server_id", "uniqueid"),
        CheckConstraint(f"action IN ({ACTIONS})", name="action"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    decided_at: Mapped[datetime]
    caller_raw: Mapped[str] = mapped_column(String(80), default="")
    caller_number: Mapped[str | None] = mapped_column(String(32))
    queue: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(20))
    target_operator_id: Mapped[str | None] = mapped_column(String(64))
    target_interface: Mapped[str | None] = mapped_column(String(100))
    target_queue: Mapped[str] = mapped_column(String(80))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    wait_seconds: Mapped[int] = mapped_column(Integer, default=0)
    announcement: Mapped[str | None] = mapped_column(String(200))
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    reason_code: Mapped[str] = mapped_column(String(60))
    reason_codes: Mapped[list[Any]] = mapped_column(default=list)
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    server_id: Mapped[str] = mapped_column(String(64), default="default")
    uniqueid: Mapped[str | None] = mapped_column(String(64))
    linkedid: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(200))


class IncidentRow(Base):
    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    announcement: Mapped[str] = mapped_column(String(200))
    prefixes: Mapped[list[Any]] = mapped_column(default=list)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(index=True)
    started_by: Mapped[str | None] = mapped_column(String(64))


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'supervisor', 'operator', 'readonly')", name="role"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    operator_id: Mapped[str | None] = mapped_column(ForeignKey("operators.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class AuditRow(Base):
    """Who changed what (rules reloads, flag and operator changes) and when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
