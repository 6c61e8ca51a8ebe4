"""The officer roles: one vocabulary for the database, the API, the CLI and the console.

A ``StrEnum``, so a role is stored and sent as its plain name (``"registrar"``). What each
may do is docs/DESIGN.md section 1; the routes' ``roles(...)`` dependencies enforce it.

Example::

    roles(Role.registrar)                       # an API dependency
    Role.supervisor in officer.role_set
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ALL_ROLES", "Role", "roles_in"]


class Role(StrEnum):
    registrar = "registrar"  # enrols foreigners, records passports, issues cards, reads them
    supervisor = "supervisor"  # revokes, suspends, reinstates cards; rotates keys; officers
    auditor = "auditor"  # reads the audit log
    cashier = "cashier"  # tops up stored-value accounts
    terminal = "terminal"  # charges pay codes; fetches portraits
    verifier = "verifier"  # fetches portraits for counters


ALL_ROLES: frozenset[Role] = frozenset(Role)


def roles_in(stored: str) -> frozenset[Role]:
    """The roles of an officer row's ``roles`` column (sorted, comma-separated); a name
    that is no role (never written by create_officer) grants nothing."""
    return frozenset(Role(role) for role in stored.split(",") if role in ALL_ROLES)
