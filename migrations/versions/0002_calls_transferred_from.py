"""calls.transferred_from: the operator who answered first and transferred the call.

After a transfer ``calls.operator_id`` names the operator who handled the call last (the
next repeat call's sticky operator); the first one is kept here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 09:12:40.518774
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("transferred_from", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("transferred_from")
