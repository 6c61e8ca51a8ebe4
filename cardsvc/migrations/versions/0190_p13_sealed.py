"""personal data sealed at rest: passport numbers and portraits (P13)

Adds ``data_keys`` (DEKs and the blind-index key, wrapped by the key store's data-kek)
and ``passports.number_index``; ``passports.number`` (was text) and ``portraits.jpeg``
then hold sealed bytes. An existing register is converted in place, in batches, inside
this migration's transaction: it needs the key store, handed in by ``cardsvc upgrade``
/ ``serve`` / ``init`` (``upgrade_to_head(url, key_store=...)``); without one it refuses
rather than leave a half-sealed register. Rows already sealed are skipped (idempotent).
SQLite: ``secure_delete`` is on while it runs, so freed pages holding the plaintext are
zeroed, not left in the file.

Revision ID: 0190_p13_sealed
Revises: 0170_p15_portrait_bundle
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op

if TYPE_CHECKING:
    from cardsvc.services.sealing import Sealer

revision: str = "0190_p13_sealed"
down_revision: str | None = "0170_p15_portrait_bundle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500


def _key_store() -> object:
    config = op.get_context().config
    return None if config is None else config.attributes.get("key_store")


def _has_rows(connection: sa.Connection) -> bool:
    return any(connection.scalar(sa.text(f"SELECT COUNT(*) FROM {name}"))  # noqa: S608
               for name in ("passports", "portraits"))


def _store_or_refuse() -> object:
    from keys import KeyStore

    store = _key_store()
    if not isinstance(store, KeyStore):
        raise RuntimeError(
            "0190_p13_sealed converts existing passports and portraits: it needs the key "
            "store; run `cardsvc upgrade` (with CARDSVC_KEY_PASSPHRASE), see OPERATIONS.md")
    return store


def upgrade() -> None:
    connection = op.get_bind()
    # Refuse before any change: SQLite may not roll DDL back.
    store = _store_or_refuse() if _has_rows(connection) else None
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA secure_delete = ON")
    inspector = sa.inspect(connection)
    if not inspector.has_table("data_keys"):  # idempotent after an interrupted run
        op.create_table(
            "data_keys",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("purpose", sa.String(length=16), nullable=False),
            sa.Column("wrapped", sa.LargeBinary(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_data_keys")),
        )
    if "number_index" not in {column["name"] for column in inspector.get_columns("passports")}:
        with op.batch_alter_table("passports") as batch:
            batch.add_column(sa.Column("number_index", sa.String(length=64), nullable=True))
            batch.add_column(sa.Column("number_sealed", sa.LargeBinary(), nullable=True))
    if store is not None:
        sealer = _file_sealer(connection, store, make=True)
        _seal_passports(connection, sealer)
        _seal_portraits(connection, sealer)
    with op.batch_alter_table("passports") as batch:
        batch.drop_constraint("uq_passports_number_country", type_="unique")
        batch.drop_column("number")
        batch.alter_column("number_sealed", new_column_name="number",
                           existing_type=sa.LargeBinary(), nullable=False)
        batch.alter_column("number_index", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint(op.f("uq_passports_number_index"), ["number_index"])


_DATA_KEYS = sa.table("data_keys", sa.column("id", sa.Integer), sa.column("purpose", sa.String),
                      sa.column("wrapped", sa.LargeBinary), sa.column("created_at"))

def _file_sealer(connection: sa.Connection, store: object, *, make: bool) -> Sealer:
    """The data keys as this revision knew them: wrapped by ``data-kek`` of the passphrase
    store (0191_p13_kek names each row's KEK; a token KEK comes after it). Frozen here so
    later changes to the sealing service do not change what this revision does."""
    import os

    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

    from cardsvc.services.sealing import Sealer
    from keys import KeyStore

    assert isinstance(store, KeyStore)
    if make and not store.has_secret("data-kek"):
        store.save_secret("data-kek", os.urandom(32))
    kek = store.load_secret("data-kek")
    rows = list(connection.execute(sa.select(_DATA_KEYS.c.id, _DATA_KEYS.c.purpose,
                                             _DATA_KEYS.c.wrapped)))
    for purpose in ("seal", "index"):
        if make and purpose not in {row.purpose for row in rows}:
            connection.execute(_DATA_KEYS.insert().values(
                purpose=purpose, wrapped=aes_key_wrap(kek, os.urandom(32)),
                created_at=datetime.now(UTC)))
    rows = list(connection.execute(sa.select(_DATA_KEYS.c.id, _DATA_KEYS.c.purpose,
                                             _DATA_KEYS.c.wrapped).order_by(_DATA_KEYS.c.id)))
    deks = {int(row.id): aes_key_unwrap(kek, bytes(row.wrapped)) for row in rows
            if row.purpose == "seal"}
    index = next(aes_key_unwrap(kek, bytes(row.wrapped)) for row in rows
                 if row.purpose == "index")
    return Sealer(deks, max(deks), index)


def _seal_passports(connection: sa.Connection, sealer: object) -> None:
    from cardsvc.services.sealing import Sealer

    assert isinstance(sealer, Sealer)
    table = sa.table("passports", sa.column("id", sa.Integer), sa.column("person_id"),
                     sa.column("number", sa.String), sa.column("country", sa.String),
                     sa.column("number_index", sa.String),
                     sa.column("number_sealed", sa.LargeBinary))
    last = 0
    while True:
        rows = list(connection.execute(
            sa.select(table.c.id, table.c.person_id, table.c.number, table.c.country)
            .where(table.c.id > last, table.c.number_sealed.is_(None))
            .order_by(table.c.id).limit(BATCH)))
        if not rows:
            return
        for row in rows:
            index = sealer.passport_index(row.number, row.country)
            sealed = sealer.seal(row.number.encode("ascii"), table="passports",
                                 column="number", row=f"{row.person_id}:{index}")
            connection.execute(table.update().where(table.c.id == row.id).values(
                number_index=index, number_sealed=sealed, number=f"#{row.id}"))
        last = rows[-1].id


def _seal_portraits(connection: sa.Connection, sealer: object) -> None:
    from cardsvc.services.sealing import SealedDataError, Sealer

    assert isinstance(sealer, Sealer)
    table = sa.table("portraits", sa.column("digest", sa.String),
                     sa.column("person_id", sa.Integer), sa.column("jpeg", sa.LargeBinary))
    last = ""
    while True:
        rows = list(connection.execute(
            sa.select(table.c.digest, table.c.person_id, table.c.jpeg)
            .where(table.c.digest > last).order_by(table.c.digest).limit(BATCH)))
        if not rows:
            return
        for row in rows:
            ad = {"table": "portraits", "column": "jpeg", "row": f"{row.digest}:{row.person_id}"}
            try:
                sealer.open(bytes(row.jpeg), **ad)
                continue  # sealed already (a rerun)
            except SealedDataError:
                pass
            connection.execute(table.update().where(table.c.digest == row.digest).values(
                jpeg=sealer.seal(bytes(row.jpeg), **ad)))
        last = rows[-1].digest


def downgrade() -> None:
    """Back to plaintext columns; with rows, this too needs the key store."""
    connection = op.get_bind()
    with op.batch_alter_table("passports") as batch:
        batch.drop_constraint("uq_passports_number_index", type_="unique")
        batch.alter_column("number", new_column_name="number_sealed",
                           existing_type=sa.LargeBinary(), nullable=True)
    with op.batch_alter_table("passports") as batch:
        batch.add_column(sa.Column("number", sa.String(length=20), nullable=True))
    rows = int(connection.scalar(sa.text("SELECT COUNT(*) FROM passports")) or 0) + int(
        connection.scalar(sa.text("SELECT COUNT(*) FROM portraits")) or 0)
    if rows:
        sealer = _file_sealer(connection, _store_or_refuse(), make=False)
        passports = sa.table("passports", sa.column("id", sa.Integer), sa.column("person_id"),
                             sa.column("number", sa.String),
                             sa.column("number_index", sa.String),
                             sa.column("number_sealed", sa.LargeBinary))
        for row in list(connection.execute(sa.select(passports))):
            number = sealer.open(bytes(row.number_sealed), table="passports", column="number",
                                 row=f"{row.person_id}:{row.number_index}").decode()
            connection.execute(passports.update().where(passports.c.id == row.id)
                               .values(number=number))
        portraits = sa.table("portraits", sa.column("digest", sa.String),
                             sa.column("person_id", sa.Integer),
                             sa.column("jpeg", sa.LargeBinary))
        for row in list(connection.execute(sa.select(portraits))):
            jpeg = sealer.open(bytes(row.jpeg), table="portraits", column="jpeg",
                               row=f"{row.digest}:{row.person_id}")
            connection.execute(portraits.update().where(portraits.c.digest == row.digest)
                               .values(jpeg=jpeg))
    with op.batch_alter_table("passports") as batch:
        batch.drop_column("number_index")
        batch.drop_column("number_sealed")
        batch.alter_column("number", existing_type=sa.String(length=20), nullable=False)
        batch.create_unique_constraint("uq_passports_number_country", ["number", "country"])
    op.drop_table("data_keys")
