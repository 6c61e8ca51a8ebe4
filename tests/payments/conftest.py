"""Fixtures for payments: every test runs on SQLite and on PostgreSQL (its own new
database per session, dropped at the end; no PostgreSQL means failure, not a skip), and
after every test the whole ledger must sum to zero with every balance in step."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from payments_kit import NOW, PayWorld, pay_world

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session", params=BACKENDS)
def _world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PayWorld]:
    with pay_world(request.param, tmp_path_factory.mktemp(f"pay-{request.param}")) as world:
        yield world


@pytest.fixture
def world(_world: PayWorld) -> Iterator[PayWorld]:
    """The session's authority, clock at support.NOW; the ledger is checked afterwards."""
    _world.clock.now = NOW
    if _world.slow is not None:
        _world.slow.delay_seconds = 0.0
    yield _world
    check = _world.ledger()
    assert check.ok, check
