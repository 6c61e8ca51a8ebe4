"""Alembic migrations of the cardsvc database; run with :func:`upgrade_to_head`.

Example::

    upgrade_to_head("sqlite:////var/lib/cardsvc/cardsvc.db")
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from cardsvc.db import normalize_url

__all__ = ["alembic_config", "upgrade_to_head"]

_HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    """An Alembic config that needs no alembic.ini (the scripts ship inside the package)."""
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    # Alembic's config interpolates %; the URL may hold a percent-encoded password.
    config.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")
