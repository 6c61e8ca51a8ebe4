"""timestamp state: the delegated timestamp key and the last signed timestamp (P8.5)

Revision ID: 0130_m_timestamp
Revises: 0120_b_pay_codes_seen_online
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0130_m_timestamp"
down_revision: str | None = "0120_b_pay_codes_seen_online"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "timestamp_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("signed_jwt", sa.Text(), nullable=True),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("names", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timestamp_state")),
    )


def downgrade() -> None:
    op.drop_table("timestamp_state")
