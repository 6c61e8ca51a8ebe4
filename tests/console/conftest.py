"""Fixtures for the console tests: a fresh in-process authority per test, copied from one
initialised template (init once per session, a file copy per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_kit import Authority, Template


@pytest.fixture(scope="session")
def authority_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return Template.create(tmp_path_factory.mktemp("console-template"))


@pytest.fixture
def authority(authority_template: Template, tmp_path: Path) -> Iterator[Authority]:
    instance = authority_template.authority(tmp_path)
    yield instance
    instance.database.dispose()
