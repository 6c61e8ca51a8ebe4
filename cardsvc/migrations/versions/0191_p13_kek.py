"""each data key names the KEK that wraps it (P13: the KEK in the HSM)

``data_keys.kek``: ``file:<name>`` (a 32-byte key in the passphrase store, ``keys/<name>.key``)
or ``pkcs11:<label>`` (an AES-256 key inside the authority's token). Rows made before this
revision were wrapped by ``file:data-kek``. A name, never key bytes: a backup of the
database holds the wrapped data keys and which KEK opens them.

Revision ID: 0191_p13_kek
Revises: 0190_p13_sealed
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0191_p13_kek"
down_revision: str | None = "0190_p13_sealed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FIRST_KEK = "file:data-kek"


def upgrade() -> None:
    with op.batch_alter_table("data_keys") as batch:
        batch.add_column(sa.Column("kek", sa.String(length=80), nullable=True))
    op.execute(sa.text("UPDATE data_keys SET kek = :kek").bindparams(kek=_FIRST_KEK))
    with op.batch_alter_table("data_keys") as batch:
        batch.alter_column("kek", existing_type=sa.String(length=80), nullable=False)


def downgrade() -> None:
    names = set(op.get_bind().scalars(sa.text("SELECT DISTINCT kek FROM data_keys")))
    if names - {_FIRST_KEK}:
        # Below this revision every row is taken to be wrapped by file:data-kek.
        raise RuntimeError("0191_p13_kek down: some data keys are wrapped by another KEK "
                           f"({sorted(names - {_FIRST_KEK})}); rotate back to it first")
    with op.batch_alter_table("data_keys") as batch:
        batch.drop_column("kek")
