"""portrait bundle: sealed portraits, credential slots, segments, the signed manifest (P15)

Revision ID: 0170_p15_portrait_bundle
Revises: 0160_p10_interchange
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0170_p15_portrait_bundle"
down_revision: str | None = "0160_p10_interchange"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "portrait_blobs",
        sa.Column("blob_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("portrait_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("added_seq", sa.BigInteger(), nullable=True),
        sa.Column("removed_seq", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("blob_id", name=op.f("pk_portrait_blobs")),
    )
    op.create_index(op.f("ix_portrait_blobs_digest"), "portrait_blobs", ["digest"])
    op.create_table(
        "portrait_slots",
        sa.Column("index", sa.LargeBinary(length=16), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("blob_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("entry", sa.LargeBinary(length=76), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("added_seq", sa.BigInteger(), nullable=True),
        sa.Column("removed_seq", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"],
                                name=op.f("fk_portrait_slots_card_id_cards")),
        sa.ForeignKeyConstraint(["blob_id"], ["portrait_blobs.blob_id"],
                                name=op.f("fk_portrait_slots_blob_id_portrait_blobs")),
        sa.PrimaryKeyConstraint("index", name=op.f("pk_portrait_slots")),
    )
    op.create_index(op.f("ix_portrait_slots_card_id"), "portrait_slots", ["card_id"])
    op.create_index(op.f("ix_portrait_slots_blob_id"), "portrait_slots", ["blob_id"])
    op.create_table(
        "portrait_segments",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("sha256", sa.String(length=43), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_portrait_segments")),
        sa.UniqueConstraint("sha256", name=op.f("uq_portrait_segments_sha256")),
    )
    op.create_table(
        "portrait_bundle_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("signed_jwt", sa.Text(), nullable=True),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portrait_bundle_state")),
    )


def downgrade() -> None:
    op.drop_table("portrait_bundle_state")
    op.drop_table("portrait_segments")
    op.drop_index(op.f("ix_portrait_slots_blob_id"), table_name="portrait_slots")
    op.drop_index(op.f("ix_portrait_slots_card_id"), table_name="portrait_slots")
    op.drop_table("portrait_slots")
    op.drop_index(op.f("ix_portrait_blobs_digest"), table_name="portrait_blobs")
    op.drop_table("portrait_blobs")
