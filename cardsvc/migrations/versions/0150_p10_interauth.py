"""interauth: interchange keys, the replay store of signed requests between authorities,
person transfers and the person's state (P10)

Revision ID: 0150_p10_interauth
Revises: 0140_p10_federation
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0150_p10_interauth"
down_revision: str | Sequence[str] | None = "0140_p10_federation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "interchange_keys",
        sa.Column("kid", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.BigInteger(), nullable=False),
        sa.Column("valid_until", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_interchange_keys")),
        sa.UniqueConstraint("seq", name=op.f("uq_interchange_keys_seq")),
    )
    op.create_table(
        "interauth_seen",
        sa.Column("issuer", sa.String(length=32), nullable=False),
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti", name=op.f("pk_interauth_seen")),
    )
    op.create_index(op.f("ix_interauth_seen_expires_at"), "interauth_seen", ["expires_at"])
    op.create_table(
        "person_transfers",
        sa.Column("transfer_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("peer_city", sa.String(length=32), nullable=False),
        sa.Column("foreigner_code", sa.String(length=18), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("bundle", sa.Text(), nullable=True),
        sa.Column("officer_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"],
                                name=op.f("fk_person_transfers_person_id_persons")),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_person_transfers")),
    )
    op.create_index(op.f("ix_person_transfers_foreigner_code"), "person_transfers",
                    ["foreigner_code"])
    with op.batch_alter_table("persons") as batch:
        batch.add_column(sa.Column("state", sa.String(length=16), nullable=False,
                                   server_default="active"))
        batch.add_column(sa.Column("moved_to", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("persons") as batch:
        batch.drop_column("moved_to")
        batch.drop_column("state")
    op.drop_index(op.f("ix_person_transfers_foreigner_code"), table_name="person_transfers")
    op.drop_table("person_transfers")
    op.drop_index(op.f("ix_interauth_seen_expires_at"), table_name="interauth_seen")
    op.drop_table("interauth_seen")
    op.drop_table("interchange_keys")
