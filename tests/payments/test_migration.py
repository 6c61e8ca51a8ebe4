"""The payments migration: one head, its tables exactly as the models say, and it can be
undone and applied again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from cardsvc_kit import migrated_schema_diffs
from sqlalchemy import create_engine, inspect

from cardsvc.migrations import alembic_config, upgrade_to_head
from cardsvc.payments import models

PAYMENT_TABLES = {
    "merchants", "terminals", "ledger_accounts", "card_balances", "ledger_transactions",
    "ledger_entries", "payments", "refunds", "topups", "double_spends", "idempotency_records",
}


def _table_of(diff: Any) -> str:
    """The table an Alembic autogenerate difference is about."""
    if isinstance(diff, list):  # modifications of one column
        return str(diff[0][2])
    kind, subject = diff[0], diff[1]
    if kind in ("add_table", "remove_table"):
        return str(subject.name)
    table = getattr(subject, "table", None)
    if table is not None:
        return str(table.name)
    return str(diff[2])  # (add|remove)_column, schema, table, column


def test_the_migrations_have_one_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, heads


def test_the_payment_tables_match_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    diffs = migrated_schema_diffs(url)
    engine = create_engine(url)
    try:
        assert [diff for diff in diffs if _table_of(diff) in PAYMENT_TABLES] == []
        assert set(inspect(engine).get_table_names()) >= PAYMENT_TABLES
        assert {table.name for table in models.Base.metadata.sorted_tables} >= PAYMENT_TABLES
    finally:
        engine.dispose()


def test_the_payments_migration_goes_down_and_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    upgrade_to_head(url)
    command.downgrade(alembic_config(url), "0001")
    engine = create_engine(url)
    try:
        assert not PAYMENT_TABLES & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    upgrade_to_head(url)
