"""console sign-outs: ended console sessions, shared by every process

Revision ID: 0110
Revises: 0100
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0110"
down_revision: str | None = "0100"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_sign_outs",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("officer_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["officer_id"], ["officers.id"], name=op.f("fk_console_sign_outs_officer_id_officers")
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_console_sign_outs")),
    )
    with op.batch_alter_table("console_sign_outs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_console_sign_outs_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("console_sign_outs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_sign_outs_expires_at"))
    op.drop_table("console_sign_outs")
