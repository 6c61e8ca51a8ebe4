"""payments between cities: the acquirer's outbox (forwarded_charges), the issuer's
answers per (acquirer, forward id) (interchange_charges), and ledger transactions without
a local card (an acquirer's clearing of another city's card)

Revision ID: 0160_p10_interchange
Revises: 0150_p10_interauth
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0160_p10_interchange"
down_revision: str | None = "0150_p10_interauth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "forwarded_charges",
        sa.Column("g", sa.String(160), primary_key=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("issuer", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("terminal_id", sa.Integer(), sa.ForeignKey("terminals.id"), nullable=False),
        sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("officer_id", sa.Integer(), sa.ForeignKey("officers.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("pay_code", sa.Text(), nullable=False),
        sa.Column("challenge", sa.Text(), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("status_code", sa.SmallInteger(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("receipt", sa.Text(), nullable=True),
        sa.Column("issued_at", sa.BigInteger(), nullable=True),
        sa.Column("transaction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  sa.ForeignKey("ledger_transactions.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_forwarded_charges_state", "forwarded_charges", ["state"])
    op.create_index("ix_forwarded_charges_issuer_issued", "forwarded_charges",
                    ["issuer", "issued_at"])
    op.create_table(
        "interchange_charges",
        sa.Column("acquirer", sa.String(16), primary_key=True),
        sa.Column("g", sa.String(160), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("payment_id", sa.String(32), sa.ForeignKey("payments.id"), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=True),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("void_response", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_interchange_charges_acquirer_issued", "interchange_charges",
                    ["acquirer", "issued_at"])
    with op.batch_alter_table("ledger_transactions") as batch:
        batch.alter_column("card_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("ledger_transactions") as batch:
        batch.alter_column("card_id", existing_type=sa.Integer(), nullable=False)
    op.drop_index("ix_interchange_charges_acquirer_issued", "interchange_charges")
    op.drop_table("interchange_charges")
    op.drop_index("ix_forwarded_charges_issuer_issued", "forwarded_charges")
    op.drop_index("ix_forwarded_charges_state", "forwarded_charges")
    op.drop_table("forwarded_charges")
