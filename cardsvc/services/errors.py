"""Domain errors: each carries a stable ``code``; the API maps the class to an HTTP status.

Example::

    raise NotFound("PERSON_NOT_FOUND", "no person with this foreigner code")
    raise Conflict("POSSIBLE_DUPLICATE", "likely the same person", candidates=[...])
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Conflict",
    "DomainError",
    "Forbidden",
    "Gone",
    "Invalid",
    "NotFound",
    "PaymentRefused",
    "Unauthenticated",
    "Unavailable",
]


class DomainError(Exception):
    """A refused request. ``code`` is stable and machine-readable; ``extra`` joins the body."""

    def __init__(self, code: str, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or code)
        self.code = code
        self.detail = detail or code
        self.extra = extra


class Invalid(DomainError):
    """The request is well-formed but its content is not acceptable (422)."""


class NotFound(DomainError):
    """The thing named does not exist (404)."""


class Conflict(DomainError):
    """The request clashes with the current state (409)."""


class Gone(DomainError):
    """The thing existed but is no longer usable, e.g. an expired code (410)."""


class Forbidden(DomainError):
    """A proof or permission did not hold (403)."""


class Unauthenticated(DomainError):
    """No or an unknown credential (401)."""


class PaymentRefused(DomainError):
    """Not enough money (402)."""


class Unavailable(DomainError):
    """The authority cannot do this now, e.g. not initialised (503)."""
