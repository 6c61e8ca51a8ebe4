"""trust state: the announced cut-over to RFC 9864's "Ed25519" (P14)

An authority upgraded in place has "EdDSA" credentials in phones and verifiers that may
not know "Ed25519" yet: it keeps signing "EdDSA" for 30 more days while its trust list
announces the date (docs/FORMATS.md, "Rolling out a format change"). `cardsvc keys
alg-cutover --at` moves it. A new authority's `init` sets the cut-over to its own start.

Revision ID: 0200_p14_alg_cutover
Revises: 0130_m_timestamp
Create Date: 2026-11-29
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0200_p14_alg_cutover"
down_revision: str | None = "0130_m_timestamp"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTICE_SECONDS = 30 * 86_400


def upgrade() -> None:
    with op.batch_alter_table("trust_state") as batch:
        batch.add_column(sa.Column("alg_cutover", sa.BigInteger(), nullable=True))
    trust_state = sa.table("trust_state", sa.column("alg_cutover", sa.BigInteger()),
                           sa.column("version", sa.BigInteger()))
    # The trust list is re-signed (version + 1) so verifiers learn the date at next sync.
    op.execute(trust_state.update().values(alg_cutover=int(time.time()) + NOTICE_SECONDS,
                                           version=trust_state.c.version + 1))


def downgrade() -> None:
    with op.batch_alter_table("trust_state") as batch:
        batch.drop_column("alg_cutover")
