"""Fixtures for the authority's tests: every service test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cardsvc_kit import Authority, Template, authority_from

BACKEND_PARAMS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session", params=BACKEND_PARAMS)
def authority_template(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Template]:
    template = Template.create(request.param, tmp_path_factory.mktemp("authority"))
    yield template
    template.drop()


@pytest.fixture
def authority(authority_template: Template, tmp_path: Path) -> Iterator[Authority]:
    """A fresh authority (own database, own keys copy) with a fixed clock."""
    with authority_from(authority_template, tmp_path) as instance:
        yield instance
