"""Row locks that also refresh the identity map (a stale object would undo a lock's point)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select

__all__ = ["for_update"]

S = TypeVar("S", bound=Select[Any])


def for_update(statement: S) -> S:
    """SELECT ... FOR UPDATE on PostgreSQL; SQLite already holds the write lock (IMMEDIATE)."""
    return statement.with_for_update().execution_options(populate_existing=True)
