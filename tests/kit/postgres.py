"""Throwaway databases on the machine's PostgreSQL (127.0.0.1:5432, trust auth).

Every helper fails loudly, never skips, when the server is unreachable."""

from __future__ import annotations

import secrets

import psycopg

__all__ = ["PG_ADMIN", "conninfo", "pg_create", "pg_drop", "pg_url", "unique_name"]

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def pg_url(name: str) -> str:
    """The SQLAlchemy URL of database ``name``."""
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def conninfo(name: str) -> str:
    """The libpq connection string of database ``name``."""
    return f"host=127.0.0.1 port=5432 user=postgres dbname={name}"


def unique_name(purpose: str) -> str:
    return f"fmc_{purpose}_{secrets.token_hex(6)}"


def pg_create(name: str, template: str | None = None) -> None:
    """Create a database (from a template)."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        clause = f" TEMPLATE {template}" if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{clause}')  # type: ignore[arg-type]


def pg_drop(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
