"""The officer roles: one vocabulary for the database, the API, the CLI and the console.

A ``StrEnum``, so a role is stored and sent as its plain name (``"registrar"``).

Example::

    roles(Role.registrar)                       # an API dependency
    Role.supervisor in officer.role_set
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ALL_ROLES", "ROLE_DUTIES", "Role"]


class Role(StrEnum):
    registrar = "registrar"
    supervisor = "supervisor"
    auditor = "auditor"
    cashier = "cashier"
    terminal = "terminal"
    verifier = "verifier"


# What each role may do (DESIGN.md section 1); "verifier" reads portraits only.
ROLE_DUTIES: dict[Role, str] = {
    Role.registrar: "enrols foreigners, records passports, issues cards, reads persons and cards",
    Role.supervisor: "revokes, suspends and reinstates cards; rotates keys; adds officers",
    Role.auditor: "reads the audit log",
    Role.cashier: "tops up stored-value accounts",
    Role.terminal: "charges pay codes; fetches portraits",
    Role.verifier: "fetches portraits for counters",
}
ALL_ROLES: frozenset[Role] = frozenset(Role)
