"""one-use pay credentials: the handle of each, the card it pays from, its status entry

Revision ID: 0210_p13_pay_handles
Revises: 0191_p13_kek
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0210_p13_pay_handles"
down_revision: str | None = "0191_p13_kek"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pay_handles",
        sa.Column("handle", sa.String(length=32), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("status_list_id", sa.String(length=16), nullable=False),
        sa.Column("status_index", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payment_id", sa.String(length=32), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"],
                                name=op.f("fk_pay_handles_card_id_cards")),
        sa.PrimaryKeyConstraint("handle", name=op.f("pk_pay_handles")),
    )
    op.create_index(op.f("ix_pay_handles_card_id"), "pay_handles", ["card_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_pay_handles_card_id"), table_name="pay_handles")
    op.drop_table("pay_handles")
