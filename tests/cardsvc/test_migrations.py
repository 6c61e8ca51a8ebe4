"""Every migration together builds exactly the tables the models describe, and each step
can be undone and applied again."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from cardsvc_kit import migrated_schema_diffs
from sqlalchemy import Engine, create_engine, inspect

from cardsvc.migrations import alembic_config, upgrade_to_head


def test_the_migrated_schema_is_the_models_schema(tmp_path: Path) -> None:
    assert migrated_schema_diffs(f"sqlite:///{tmp_path / 'm.db'}") == []


def _revisions() -> list[tuple[str, str]]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    # A merge step (two parents, while branches meet) goes down to its first parent.
    return [(rev.revision, rev.down_revision if isinstance(rev.down_revision, str)
             else rev.down_revision[0])
            for rev in script.walk_revisions() if rev.down_revision is not None]


def _shape(engine: Engine) -> set[tuple[str, str]]:
    """Every (table, column): a step may add a table or only a column."""
    inspector = inspect(engine)
    return {(table, column["name"]) for table in inspector.get_table_names()
            for column in inspector.get_columns(table)}


@pytest.mark.parametrize(("revision", "previous"), _revisions())
def test_each_step_goes_down_and_up(tmp_path: Path, revision: str, previous: str) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    upgrade_to_head(url)
    engine = create_engine(url)
    try:
        before = _shape(engine)
        command.downgrade(alembic_config(url), previous)
        engine.dispose()
        assert _shape(engine) < before
        upgrade_to_head(url)
        engine.dispose()
        assert _shape(engine) == before
    finally:
        engine.dispose()
