"""one-use pay credentials bound to one day: each handle's day, its ol, the day's limit, its key

Revision ID: 0211_p13_pay_days
Revises: 0210_p13_pay_handles
Create Date: 2026-11-29

Each one-use pay credential is valid on one UTC day (``valid_from`` = its ``iat``, the
start of that day); a day gets at most N credentials carrying an offline limit
(``offline_limit_fen`` > 0), the day's sum of them at most the card's tier
(``day_limit_fen``, the cap offline settlement holds the card's day to). ``kid`` names the
key that signed it, so a rotation that retires the key ends the days it can no longer date.
Rows written before this revision have none of these (NULL): they count as carrying an
offline limit on the day they were issued.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0211_p13_pay_days"
down_revision: str | None = "0210_p13_pay_handles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pay_handles") as batch:
        batch.add_column(sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("offline_limit_fen", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("day_limit_fen", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("kid", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pay_handles") as batch:
        batch.drop_column("kid")
        batch.drop_column("day_limit_fen")
        batch.drop_column("offline_limit_fen")
        batch.drop_column("valid_from")
