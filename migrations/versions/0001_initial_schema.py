"""Initial schema: operators, calls, tickets, flags, decisions, incidents, tokens, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 10:31:07.198231
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Timestamps are aware UTC (callrouter.store.types.UTCDateTime maps onto this type).
TS = sa.DateTime(timezone=True)


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])

    op.create_table(
        "caller_flags",
        sa.Column("caller_number", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("vip_class", sa.String(length=40), nullable=True),
        sa.Column("abusive", sa.Boolean(), nullable=False),
        sa.Column("abusive_flagged_by", sa.String(length=64), nullable=True),
        sa.Column("abusive_flagged_at", TS, nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("caller_number", name=op.f("pk_caller_flags")),
    )
    op.create_table(
        "calls",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("caller_raw", sa.String(length=80), nullable=False),
        sa.Column("caller_number", sa.String(length=32), nullable=True),
        sa.Column("queue", sa.String(length=80), nullable=True),
        sa.Column("server_id", sa.String(length=64), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=True),
        sa.Column("linkedid", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=200), nullable=True),
        sa.Column("decision_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=20), nullable=True),
        sa.Column("target_operator_id", sa.String(length=64), nullable=True),
        sa.Column("operator_id", sa.String(length=64), nullable=True),
        sa.Column("answered_interface", sa.String(length=100), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("answered_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("hold_seconds", sa.Integer(), nullable=False),
        sa.Column("talk_seconds", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("hangup_by", sa.String(length=20), nullable=True),
        sa.Column("transferred", sa.Boolean(), nullable=False),
        sa.Column("sticky_hit", sa.Boolean(), nullable=True),
        sa.Column("fallback_cause", sa.String(length=40), nullable=True),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("hangup_by IN ('caller', 'operator')", name=op.f("ck_calls_hangup_by")),
        sa.CheckConstraint(
            "outcome IN ('in_progress', 'answered', 'abandoned', 'no_answer', 'failed')",
            name=op.f("ck_calls_outcome"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("server_id", "uniqueid", name=op.f("uq_calls_server_id_uniqueid")),
    )
    op.create_index("ix_calls_caller_number_started_at", "calls", ["caller_number", "started_at"])
    op.create_index(op.f("ix_calls_decision_id"), "calls", ["decision_id"])
    op.create_index("ix_calls_operator_id_started_at", "calls", ["operator_id", "started_at"])
    op.create_index("ix_calls_started_at", "calls", ["started_at"])

    op.create_table(
        "decisions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("decided_at", TS, nullable=False),
        sa.Column("caller_raw", sa.String(length=80), nullable=False),
        sa.Column("caller_number", sa.String(length=32), nullable=True),
        sa.Column("queue", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("target_operator_id", sa.String(length=64), nullable=True),
        sa.Column("target_interface", sa.String(length=100), nullable=True),
        sa.Column("target_queue", sa.String(length=80), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("wait_seconds", sa.Integer(), nullable=False),
        sa.Column("announcement", sa.String(length=200), nullable=True),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("reason_code", sa.String(length=60), nullable=False),
        sa.Column("reason_codes", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("server_id", sa.String(length=64), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=True),
        sa.Column("linkedid", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "action IN ('operator', 'specialist', 'queue')", name=op.f("ck_decisions_action")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    op.create_index(
        "ix_decisions_caller_number_decided_at", "decisions", ["caller_number", "decided_at"]
    )
    op.create_index("ix_decisions_decided_at", "decisions", ["decided_at"])
    op.create_index("ix_decisions_server_id_uniqueid", "decisions", ["server_id", "uniqueid"])
    op.create_index(
        "ix_decisions_target_operator_id_decided_at",
        "decisions",
        ["target_operator_id", "decided_at"],
    )

    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("announcement", sa.String(length=200), nullable=False),
        sa.Column("prefixes", sa.JSON(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("started_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index(op.f("ix_incidents_ended_at"), "incidents", ["ended_at"])

    op.create_table(
        "operators",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("tier", sa.String(length=20), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("tier IN ('first_line', 'specialist')", name=op.f("ck_operators_tier")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("caller_number", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("tier", sa.String(length=20), nullable=False),
        sa.Column("assignee_id", sa.String(length=64), nullable=True),
        sa.Column("external_ref", sa.String(length=200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'pending', 'closed')", name=op.f("ck_tickets_status")
        ),
        sa.CheckConstraint("tier IN ('first_line', 'specialist')", name=op.f("ck_tickets_tier")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
    )
    op.create_index(op.f("ix_tickets_assignee_id"), "tickets", ["assignee_id"])
    op.create_index(
        "ix_tickets_caller_number_created_at", "tickets", ["caller_number", "created_at"]
    )

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.CheckConstraint(
            "role IN ('admin', 'supervisor', 'operator', 'readonly')",
            name=op.f("ck_api_tokens_role"),
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_api_tokens_operator_id_operators"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_tokens_token_sha256")),
    )
    op.create_table(
        "caller_opt_outs",
        sa.Column("caller_number", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_caller_opt_outs_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("caller_number", "operator_id", name=op.f("pk_caller_opt_outs")),
    )
    op.create_index(op.f("ix_caller_opt_outs_operator_id"), "caller_opt_outs", ["operator_id"])

    op.create_table(
        "operator_interfaces",
        sa.Column("interface", sa.String(length=100), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_operator_interfaces_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("interface", name=op.f("pk_operator_interfaces")),
    )
    op.create_index(
        op.f("ix_operator_interfaces_operator_id"), "operator_interfaces", ["operator_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_operator_interfaces_operator_id"), table_name="operator_interfaces")

    op.drop_table("operator_interfaces")
    op.drop_index(op.f("ix_caller_opt_outs_operator_id"), table_name="caller_opt_outs")

    op.drop_table("caller_opt_outs")
    op.drop_table("api_tokens")
    op.drop_index("ix_tickets_caller_number_created_at", table_name="tickets")
    op.drop_index(op.f("ix_tickets_assignee_id"), table_name="tickets")

    op.drop_table("tickets")
    op.drop_table("operators")
    op.drop_index(op.f("ix_incidents_ended_at"), table_name="incidents")

    op.drop_table("incidents")
    op.drop_index("ix_decisions_target_operator_id_decided_at", table_name="decisions")
    op.drop_index("ix_decisions_server_id_uniqueid", table_name="decisions")
    op.drop_index("ix_decisions_decided_at", table_name="decisions")
    op.drop_index("ix_decisions_caller_number_decided_at", table_name="decisions")

    op.drop_table("decisions")
    op.drop_index("ix_calls_started_at", table_name="calls")
    op.drop_index("ix_calls_operator_id_started_at", table_name="calls")
    op.drop_index(op.f("ix_calls_decision_id"), table_name="calls")
    op.drop_index("ix_calls_caller_number_started_at", table_name="calls")

    op.drop_table("calls")
    op.drop_table("caller_flags")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")

    op.drop_table("audit_log")
