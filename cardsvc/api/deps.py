"""Dependencies: the app context and officer authentication with a role check.

Example::

    @router.post("/v1/cards")
    def issue(body: CardIssueIn, ctx: Ctx, officer: Officer = Depends(roles(Role.registrar))):
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cardsvc.api._context import AppContext
from cardsvc.models import Officer
from cardsvc.roles import ALL_ROLES, Role
from cardsvc.services.errors import Forbidden, Unauthenticated
from cardsvc.services.officers import authenticate

__all__ = ["Ctx", "get_context", "roles"]

_bearer = HTTPBearer(auto_error=False, description="an officer or terminal token")


def get_context(request: Request) -> AppContext:
    context = request.app.state.context
    assert isinstance(context, AppContext)
    return context


Ctx = Annotated[AppContext, Depends(get_context)]


def roles(*allowed: Role) -> Callable[..., Officer]:
    """A dependency that returns the authenticated officer if it holds one of ``allowed``."""
    unknown = set(allowed) - ALL_ROLES
    if unknown or not allowed:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    def officer_with_role(
        ctx: Ctx,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Officer:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthenticated("UNAUTHENTICATED", "a bearer token is required")
        token = credentials.credentials
        officer = ctx.database.transact(  # one SELECT: no BEGIN/COMMIT on PostgreSQL
            lambda session: authenticate(session, unverified_token=token), single_read=True
        )
        if not officer.role_set & set(allowed):
            raise Forbidden("FORBIDDEN", f"this needs one of the roles {sorted(allowed)}",
                            required_roles=sorted(allowed))
        return officer

    return officer_with_role
