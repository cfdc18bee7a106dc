"""call_legs and call_notes: every operator who handled a call, and each one's follow-up.

``call_legs``: one row per party that had the call (the first answer, then one per
transfer), written by the AMI listener; ``calls.operator_id``/``transferred_from`` stay
as they were (the last and the first operator), so the FastAGI hot path reads nothing new.

``call_notes``: each operator's own note and verdict on a call they handled. The call's
own ``calls.note`` stays (a note from a supervisor, or from before this revision);
``calls.resolved`` stays the call's verdict, now derived from the handlers' verdicts.

Existing data is not rewritten: calls recorded before this revision have no legs (their
handlers are still ``operator_id`` and ``transferred_from``) and keep their note in
``calls.note``, whose author was not recorded. The downgrade drops both tables: the legs
and the per-operator notes are lost; ``calls`` is untouched either way.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 15:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_legs",
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=True),
        sa.Column("interface", sa.String(length=100), nullable=True),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("answered_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("hold_seconds", sa.Integer(), nullable=False),
        sa.Column("talk_seconds", sa.Integer(), nullable=False),
        sa.Column("ended_how", sa.String(length=20), nullable=True),
        sa.Column("hangup_by", sa.String(length=20), nullable=True),
        sa.Column("transferred_to", sa.String(length=64), nullable=True),
        sa.Column("transfer_target", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "ended_how IN ('hung_up', 'blind_transfer', 'attended_transfer', 'transfer')",
            name=op.f("ck_call_legs_ended_how"),
        ),
        sa.CheckConstraint(
            "hangup_by IN ('caller', 'operator')", name=op.f("ck_call_legs_hangup_by")
        ),
        sa.CheckConstraint("via IN ('queue', 'dial', 'transfer')", name=op.f("ck_call_legs_via")),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_legs_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_id", "seq", name=op.f("pk_call_legs")),
    )
    op.create_index("ix_call_legs_operator_id", "call_legs", ["operator_id"])
    op.create_table(
        "call_notes",
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("resolved", sa.Boolean(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_notes_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_id", "operator_id", name=op.f("pk_call_notes")),
    )


def downgrade() -> None:
    op.drop_table("call_notes")
    op.drop_index("ix_call_legs_operator_id", table_name="call_legs")
    op.drop_table("call_legs")
