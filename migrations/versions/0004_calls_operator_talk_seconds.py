"""calls.operator_talk_seconds: the last handler's own talk time after a transfer.

``min_talk_seconds`` was checked against the whole call's talk time (``talk_seconds``, every
party's time added up), so after Anna talked ten minutes and transferred to Boris, who
dropped the caller after five seconds, the next call went to Boris. The sticky rule now
checks the time of the operator the call went back to (``operator_id``): this column, the
talk of that operator's legs, written with the AMI listener's final record. NULL for a
call that was not transferred (``talk_seconds`` is that operator's), where the rule falls
back to ``talk_seconds``.

Calls recorded with legs (since 0003) get it from ``call_legs``; older calls have no legs
and stay NULL (the whole call's time, as before). The downgrade drops the column and
nothing else (on SQLite without batch mode, which would cascade to the legs and notes).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As ``callrouter.legs.operator_talk_seconds`` computes it for a final record: finished
# calls with two legs or more, the talk of operator_id's own legs added up.
_BACKFILL = """
UPDATE calls SET operator_talk_seconds = (
    SELECT SUM(l.talk_seconds) FROM call_legs l
    WHERE l.call_id = calls.id AND l.operator_id = calls.operator_id)
WHERE calls.transferred
  AND calls.outcome <> 'in_progress'
  AND calls.operator_id IS NOT NULL
  AND (SELECT COUNT(*) FROM call_legs l WHERE l.call_id = calls.id) > 1
"""


def upgrade() -> None:
    op.add_column("calls", sa.Column("operator_talk_seconds", sa.Integer(), nullable=True))
    op.execute(_BACKFILL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Not batch mode: it copies ``calls`` and drops the old table, and with foreign
        # keys on, SQLite deletes the old rows first, which cascades to call_legs and
        # call_notes (every leg and note was lost). SQLite drops a plain column itself
        # since 3.35.
        op.execute("ALTER TABLE calls DROP COLUMN operator_talk_seconds")
    else:
        op.drop_column("calls", "operator_talk_seconds")
