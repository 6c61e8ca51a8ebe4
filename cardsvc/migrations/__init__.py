"""Alembic migrations of the cardsvc database; run with :func:`upgrade_to_head`.

Example::

    upgrade_to_head("sqlite:////var/lib/cardsvc/cardsvc.db")
    upgrade_to_head(url, key_store=store)   # seals an existing plaintext register (P13)

A migration that must read the key store (``0190_p13_sealed`` converting a register of
persons in place) finds it in ``config.attributes["key_store"]``; without one it refuses
to convert rows (an empty database needs none).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cardsvc.db import normalize_url
from keys import KeyStore

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["alembic_config", "upgrade_to_head"]

_HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    """An Alembic config that needs no alembic.ini (the scripts ship inside the package)."""
    # Alembic (with Mako and Pygments) is imported only to migrate: every CLI command
    # imports this package, and most never migrate.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_HERE))
    # Alembic's config interpolates %; the URL may hold a percent-encoded password.
    config.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str, *, key_store: KeyStore | None = None) -> None:
    config = alembic_config(database_url)
    config.attributes["key_store"] = key_store
    from alembic import command

    command.upgrade(config, "head")
