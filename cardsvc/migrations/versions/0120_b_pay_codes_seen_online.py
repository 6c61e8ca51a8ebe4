"""pay codes seen online: a code the online path refused never settles offline

Revision ID: 0120_b_pay_codes_seen_online
Revises: 0110
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0120_b_pay_codes_seen_online"
down_revision: str | None = "0110"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pay_codes_seen_online",
        sa.Column("replay_key", sa.String(length=64), nullable=False),
        sa.Column("terminal_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["terminal_id"], ["terminals.id"],
            name=op.f("fk_pay_codes_seen_online_terminal_id_terminals"),
        ),
        sa.PrimaryKeyConstraint("replay_key", name=op.f("pk_pay_codes_seen_online")),
    )


def downgrade() -> None:
    op.drop_table("pay_codes_seen_online")
