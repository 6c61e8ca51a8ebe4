"""Dependencies: the app context and officer authentication with a role check.

Example::

    @router.post("/v1/cards")
    def issue(body: CardIssueIn, ctx: Ctx, officer: Officer = Depends(roles(Role.registrar))):
        ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cardsvc.api._context import AppContext
from cardsvc.federation.interauth import (
    AUTH_SCHEME,
    InterauthClaims,
    remember_interauth,
    verify_interauth_request,
)
from cardsvc.federation.state import held_federation
from cardsvc.models import Officer
from cardsvc.roles import ALL_ROLES, Role
from cardsvc.services.errors import DomainError, Forbidden, Unauthenticated, Unavailable
from cardsvc.services.officers import authenticate

__all__ = ["Ctx", "InterauthCaller", "PendingOfficer", "UnverifiedToken", "bearer_token",
           "get_context", "interauth_caller", "officer_in", "refused_before_validation", "roles",
           "roles_in_transaction"]

_bearer = HTTPBearer(auto_error=False, description="an officer or terminal token")


async def get_context(request: Request) -> AppContext:
    # async: FastAPI runs a plain def dependency in the thread pool, a hop per request
    # for one attribute read.
    context = request.app.state.context
    assert isinstance(context, AppContext)
    return context


Ctx = Annotated[AppContext, Depends(get_context)]


async def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The bearer token as sent, not yet checked (async: no thread-pool hop). A route
    that takes it checks it with ``officer_in`` first thing in its own transaction."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("UNAUTHENTICATED", "a bearer token is required")
    return credentials.credentials


UnverifiedToken = Annotated[str, Depends(bearer_token)]


def officer_in(session: Session, *, unverified_token: str, allowed: tuple[Role, ...]) -> Officer:
    """The active officer holding this token, if it holds one of ``allowed``
    (Unauthenticated, Forbidden)."""
    officer = authenticate(session, unverified_token=unverified_token)
    if not officer.role_set & set(allowed):
        raise Forbidden("FORBIDDEN", f"this needs one of the roles {sorted(allowed)}",
                        required_roles=sorted(allowed))
    return officer


def _known(allowed: tuple[Role, ...]) -> None:
    unknown = set(allowed) - ALL_ROLES
    if unknown or not allowed:
        raise ValueError(f"unknown roles {sorted(unknown)}")


def roles(*allowed: Role) -> Callable[..., Officer]:
    """A dependency that returns the authenticated officer if it holds one of ``allowed``."""
    _known(allowed)

    def officer_with_role(ctx: Ctx, unverified_token: UnverifiedToken) -> Officer:
        return ctx.database.transact(  # one SELECT: no BEGIN/COMMIT on PostgreSQL
            lambda session: officer_in(session, unverified_token=unverified_token,
                                       allowed=allowed), single_read=True)

    return officer_with_role


@dataclass(frozen=True, slots=True)
class PendingOfficer:
    """A bearer token not checked yet and the roles a route admits: the route calls
    :meth:`check` first thing in its own transaction (P11: the token check shares the
    route's pooled connection and thread-pool hop instead of taking its own)."""

    unverified_token: str
    allowed: tuple[Role, ...]

    def check(self, session: Session) -> Officer:
        """The officer (Unauthenticated, Forbidden): call before reading anything else."""
        return officer_in(session, unverified_token=self.unverified_token,
                          allowed=self.allowed)


# The roles of each roles_in_transaction dependency, for refused_before_validation.
_CHECKED_IN_TRANSACTION: dict[Callable[..., object], tuple[Role, ...]] = {}


def roles_in_transaction(*allowed: Role) -> Callable[..., Awaitable[PendingOfficer]]:
    """Like :func:`roles`, the check left to the route's transaction. A request without a
    bearer token is refused here (401); a malformed body is answered 422 only once its
    token has passed the check (:func:`refused_before_validation`), as with :func:`roles`."""
    _known(allowed)

    async def officer_to_check(unverified_token: UnverifiedToken) -> PendingOfficer:
        return PendingOfficer(unverified_token, allowed)

    _CHECKED_IN_TRANSACTION[officer_to_check] = allowed
    return officer_to_check


async def refused_before_validation(request: Request) -> DomainError | None:
    """For a request that failed validation: the refusal of its bearer token (401, 403)
    when its route leaves the token check to its transaction, so that a caller without a
    good token learns nothing about the body it should send; None when the token passes
    (or the route checks it in a dependency, which has run already)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return None
    allowed = next((_CHECKED_IN_TRANSACTION[dependency.call]
                    for dependency in route.dependant.dependencies
                    if dependency.call in _CHECKED_IN_TRANSACTION), None)
    credentials = await _bearer(request)
    if allowed is None or credentials is None:
        return None  # no bearer token: bearer_token refused it before validation
    context = await get_context(request)
    pending = PendingOfficer(credentials.credentials, allowed)
    try:
        await run_in_threadpool(context.database.transact, pending.check, single_read=True)
    except DomainError as refusal:
        return refusal
    return None


async def interauth_caller(request: Request, ctx: Ctx) -> InterauthClaims:
    """For routes under ``/v1/interauth/...``: the verified signed request of another
    authority (``Authorization: FMC-Interauth <jws>``), checked against the federation
    list this authority holds and recorded in the replay store. The signed ``htu`` must
    be this city's ``api_url`` from that list plus the request's path and query."""
    header = request.headers.get("authorization", "")
    scheme, _, unverified_token = header.partition(" ")
    if scheme.lower() != AUTH_SCHEME.lower() or not unverified_token.strip():
        raise Unauthenticated("INTERAUTH_MISSING", f"a {AUTH_SCHEME} signed request is required")
    body = await request.body()
    settings, now = ctx.settings, int(ctx.clock().timestamp())

    def verify_and_remember(session: Session) -> InterauthClaims:
        federation = held_federation(session)
        own = None if federation is None else federation.issuers_by_code.get(settings.issuer)
        if federation is None or own is None:
            raise Unavailable("INTERAUTH_NOT_FEDERATED",
                              "this authority holds no federation list naming it")
        url = own.api_url.rstrip("/") + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        claims = verify_interauth_request(
            unverified_token.strip(), federation=federation, receiver=settings.issuer,
            method=request.method, url=url, body=body, now=now)
        remember_interauth(session, claims)
        return claims

    return await run_in_threadpool(ctx.database.transact, verify_and_remember)


InterauthCaller = Annotated[InterauthClaims, Depends(interauth_caller)]
