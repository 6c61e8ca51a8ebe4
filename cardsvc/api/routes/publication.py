"""What verifiers sync: the root-signed trust list, the signed status lists and the signed
timestamp naming them (public)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Response
from sqlalchemy.orm import Session

from cardsvc.api.deps import Ctx
from cardsvc.api.routes._common import problems
from cardsvc.api.schemas import StatusListRef, StatusListsOut
from cardsvc.services import status, timestamp, trust
from cardsvc.services.trust import SignedObject

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["publication"])


def _serve(
    signed: SignedObject, media_type: str, if_none_match: str | None, max_age: int
) -> Response:
    headers = {"ETag": signed.etag, "Cache-Control": f"public, max-age={max(max_age, 0)}"}
    if if_none_match is not None and signed.etag in {
        tag.strip() for tag in if_none_match.split(",")
    } | ({signed.etag} if if_none_match.strip() == "*" else set()):
        return Response(status_code=304, headers=headers)
    return Response(signed.jwt, media_type=media_type, headers=headers)


def _current_trust_list(ctx: Ctx, now: datetime) -> SignedObject:
    settings = ctx.settings
    lifetime = settings.trust_list_lifetime_days * 86_400
    # Verifiers poll: answer from the cache without a write lock, re-sign only when due.
    signed = ctx.database.transact(lambda session: trust.cached_trust_list(
        session, now=now, lifetime_seconds=lifetime), readonly=True)
    if signed is None:
        signed = ctx.database.transact(lambda session: trust.signed_trust_list(
            session, keyring=ctx.keyring, issuer=settings.issuer, now=now,
            lifetime_seconds=lifetime))
    return signed


def _current_status_list(ctx: Ctx, list_id: str, now: datetime) -> SignedObject:
    settings = ctx.settings

    def work(session: Session) -> SignedObject:  # re-sign (or take another's fresh one)
        return status.signed_status_list(
            session, list_id=list_id, keyring=ctx.keyring, now=now,
            uri=ctx.url(f"/v1/status-lists/{list_id}"), ttl=settings.status_ttl_seconds,
            lifetime_seconds=settings.status_lifetime_seconds)

    signed = ctx.database.transact(lambda session: status.cached_status_list(
        session, list_id=list_id, keyring=ctx.keyring, now=now,
        ttl=settings.status_ttl_seconds), readonly=True)
    return signed if signed is not None else ctx.database.transact(work)


@router.get("/trust-list", response_class=Response, responses={
    200: {"content": {"application/jwt": {}}, "description": "the root-signed trust list"},
    304: {"description": "not modified"}, **problems(503)})
def trust_list(
    ctx: Ctx, if_none_match: Annotated[str | None, Header(max_length=500)] = None
) -> Response:
    signed = _current_trust_list(ctx, ctx.clock())
    return _serve(signed, "application/jwt", if_none_match, ctx.settings.status_ttl_seconds)


@router.get("/timestamp", response_class=Response, responses={
    200: {"content": {"application/jwt": {}},
          "description": "the signed timestamp naming the current trust and status lists"},
    304: {"description": "not modified"}, **problems(404, 503)})
def signed_timestamp(
    ctx: Ctx, if_none_match: Annotated[str | None, Header(max_length=500)] = None
) -> Response:
    """The lists it names are brought up to date first (re-signed when due), so a verifier
    that fetches this, then the lists, always gets lists at least as new as named."""
    settings = ctx.settings
    now = ctx.clock()
    lifetime = settings.timestamp_lifetime_seconds
    _current_trust_list(ctx, now)
    for list_id in ctx.database.transact(status.list_status_list_ids, readonly=True):
        _current_status_list(ctx, list_id, now)
    signed = ctx.database.transact(lambda session: timestamp.cached_timestamp(
        session, now=now, lifetime_seconds=lifetime), readonly=True)
    if signed is None:
        signed = ctx.database.transact(lambda session: timestamp.signed_timestamp(
            session, keyring=ctx.keyring, issuer=settings.issuer, now=now,
            lifetime_seconds=lifetime))
    # Well below the lifetime: it changes whenever a status list is re-signed.
    return _serve(signed, "application/jwt", if_none_match,
                  min(settings.status_ttl_seconds, lifetime // 8))


@router.get("/status-lists", response_model=StatusListsOut)
def status_lists(ctx: Ctx) -> StatusListsOut:
    ids = ctx.database.transact(status.list_status_list_ids, readonly=True)
    return StatusListsOut(status_lists=[
        StatusListRef(id=list_id, uri=ctx.url(f"/v1/status-lists/{list_id}")) for list_id in ids
    ])


@router.get("/status-lists/{list_id}", response_class=Response, responses={
    200: {"content": {"application/statuslist+jwt": {}}, "description": "the signed list"},
    304: {"description": "not modified"}, **problems(404, 422)})
def status_list(
    list_id: Annotated[str, Path(pattern=r"^[0-9A-Za-z_-]{1,16}$")], ctx: Ctx,
    if_none_match: Annotated[str | None, Header(max_length=500)] = None,
) -> Response:
    """Served from a cache re-signed when a status changed or half the ttl has passed;
    max-age is what is left of the ttl so that no cache holds a stale list."""
    settings = ctx.settings
    now = ctx.clock()
    signed = _current_status_list(ctx, list_id, now)
    remaining = signed.issued_at + settings.status_ttl_seconds - int(now.timestamp())
    return _serve(signed, "application/statuslist+jwt", if_none_match, remaining)
