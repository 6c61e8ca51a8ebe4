"""The officer roles: one vocabulary for the database, the API, the CLI and the console.

A ``StrEnum``, so a role is stored and sent as its plain name (``"registrar"``). What each
may do is docs/DESIGN.md section 1; the routes' ``roles(...)`` dependencies enforce it.

Example::

    roles(Role.registrar)                       # an API dependency
    Role.supervisor in officer.role_set
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ALL_ROLES", "Role"]


class Role(StrEnum):
    registrar = "registrar"  # enrols foreigners, records passports, issues cards, reads them
    supervisor = "supervisor"  # revokes, suspends, reinstates cards; rotates keys; officers
    auditor = "auditor"  # reads the audit log
    cashier = "cashier"  # tops up stored-value accounts
    terminal = "terminal"  # charges pay codes; fetches portraits
    verifier = "verifier"  # fetches portraits for counters


ALL_ROLES: frozenset[Role] = frozenset(Role)
