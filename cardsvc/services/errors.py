"""Domain errors: each carries a stable ``code``; its class carries the HTTP ``status`` that
the API's problem handler and the console both answer with.

Example::

    raise NotFound("PERSON_NOT_FOUND", "no person with this foreigner code")
    raise Conflict("POSSIBLE_DUPLICATE", "likely the same person", candidates=[...])
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "DomainError",
    "Forbidden",
    "Gone",
    "Invalid",
    "NotFound",
    "PaymentRefused",
    "TooManyRequests",
    "Unauthenticated",
    "Unavailable",
]


class DomainError(Exception):
    """A refused request. ``code`` is stable and machine-readable; ``extra`` joins the body."""

    status: ClassVar[int] = 400

    def __init__(self, code: str, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or code)
        self.code = code
        self.detail = detail or code
        self.extra = extra


class Invalid(DomainError):
    """The request is well-formed but its content is not acceptable (422)."""

    status = 422


class NotFound(DomainError):
    """The thing named does not exist (404)."""

    status = 404


class Conflict(DomainError):
    """The request clashes with the current state (409)."""

    status = 409


class Gone(DomainError):
    """The thing existed but is no longer usable, e.g. an expired code (410)."""

    status = 410


class Forbidden(DomainError):
    """A proof or permission did not hold (403)."""

    status = 403


class Unauthenticated(DomainError):
    """No or an unknown credential (401)."""

    status = 401


class PaymentRefused(DomainError):
    """Not enough money (402)."""

    status = 402


class Unavailable(DomainError):
    """The authority cannot do this now, e.g. not initialised (503)."""

    status = 503


class TooManyRequests(DomainError):
    """A caller exceeded its rate (429)."""

    status = 429
