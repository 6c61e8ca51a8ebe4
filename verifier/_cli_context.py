"""What every ``verifier`` sub-command takes from the root command: the cache directory
(``--cache``) and how a ``--at`` time is read. Kept apart from ``verifier.cli`` so that
sub-apps (``verifier.terminal``) need not import the module that includes them.

Example::

    directory = cache_dir(ctx)            # inside any verifier sub-command
    moment = parse_time("2027-01-15T08:00:00Z")
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import typer

from verifier.cache import VerifierCache

__all__ = ["RootSettings", "cache_dir", "parse_time", "settings_of"]


@dataclass(frozen=True)
class RootSettings:
    """What the root callback keeps in ``ctx.obj``."""

    cache: VerifierCache


def settings_of(ctx: typer.Context) -> RootSettings:
    root = ctx.find_root()
    if not isinstance(root.obj, RootSettings):
        raise RuntimeError("the verifier callback did not run")
    return root.obj


def cache_dir(ctx: typer.Context) -> Path:
    """The ``--cache`` directory, for commands in sub-apps."""
    return settings_of(ctx).cache.directory


def parse_time(text: str) -> int:
    """Epoch seconds from ISO 8601 (``Z`` or an offset; no offset means UTC) or a number."""
    stripped = text.strip()
    if re.fullmatch(r"\d{9,11}", stripped):
        return int(stripped)
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise typer.BadParameter("an ISO 8601 time such as 2027-01-15T08:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return int(moment.timestamp())
    except (OverflowError, OSError, ValueError):  # year 1 or 9999 with an offset
        raise typer.BadParameter("a time between the years 1970 and 9999") from None
