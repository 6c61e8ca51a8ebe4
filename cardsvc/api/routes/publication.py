"""What verifiers sync: the root-signed trust list, the signed status lists and the signed
timestamp naming them (public)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Response
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import Ctx
from cardsvc.api.routes._common import problems
from cardsvc.api.schemas import StatusListRef, StatusListsOut
from cardsvc.services.trust import SignedObject

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["publication"])

# The signed objects are async routes: what is held in memory is answered on the event
# loop (no thread-pool hop, the same work as a health request); only an answer that must
# be read again (past its recheck, or changed here) goes to a thread to read the database.


def _serve(
    signed: SignedObject, media_type: str, if_none_match: str | None, max_age: int
) -> Response:
    headers = {"ETag": signed.etag, "Cache-Control": f"public, max-age={max(max_age, 0)}"}
    if if_none_match is not None and signed.etag in {
        tag.strip() for tag in if_none_match.split(",")
    } | ({signed.etag} if if_none_match.strip() == "*" else set()):
        return Response(status_code=304, headers=headers)
    return Response(signed.jwt, media_type=media_type, headers=headers)


@router.get("/trust-list", response_class=Response, responses={
    200: {"content": {"application/jwt": {}}, "description": "the root-signed trust list"},
    304: {"description": "not modified"}, **problems(503)})
async def trust_list(
    ctx: Ctx, if_none_match: Annotated[str | None, Header(max_length=500)] = None
) -> Response:
    now = ctx.clock()
    signed = ctx.publisher.held("trust", now)
    if signed is None:
        signed = await run_in_threadpool(ctx.publisher.trust_list, now)
    return _serve(signed, "application/jwt", if_none_match, ctx.settings.status_ttl_seconds)


@router.get("/timestamp", response_class=Response, responses={
    200: {"content": {"application/jwt": {}},
          "description": "the signed timestamp naming the current trust and status lists"},
    304: {"description": "not modified"}, **problems(404, 503)})
async def signed_timestamp(
    ctx: Ctx, if_none_match: Annotated[str | None, Header(max_length=500)] = None
) -> Response:
    """The lists it names are brought up to date first (re-signed when due), so a verifier
    that fetches this, then the lists, always gets lists at least as new as named."""
    settings = ctx.settings
    now = ctx.clock()
    signed = ctx.publisher.held("timestamp", now)
    if signed is None:
        signed = await run_in_threadpool(ctx.publisher.timestamp, now)
    lifetime = settings.timestamp_lifetime_seconds
    # Well below the lifetime: it changes whenever a status list is re-signed.
    return _serve(signed, "application/jwt", if_none_match,
                  min(settings.status_ttl_seconds, lifetime // 8))


@router.get("/status-lists", response_model=StatusListsOut)
def status_lists(ctx: Ctx) -> StatusListsOut:
    ids = ctx.publisher.status_list_ids(ctx.clock())
    return StatusListsOut(status_lists=[
        StatusListRef(id=list_id, uri=ctx.url(f"/v1/status-lists/{list_id}")) for list_id in ids
    ])


@router.get("/status-lists/index.json", response_model=StatusListsOut)
def status_lists_index(ctx: Ctx) -> StatusListsOut:
    """The same index under the name ``cardsvc publish`` gives it on a static mirror."""
    return status_lists(ctx)


@router.get("/status-lists/{list_id}", response_class=Response, responses={
    200: {"content": {"application/statuslist+jwt": {}}, "description": "the signed list"},
    304: {"description": "not modified"}, **problems(404, 422)})
async def status_list(
    list_id: Annotated[str, Path(pattern=r"^[0-9A-Za-z_-]{1,16}$")], ctx: Ctx,
    if_none_match: Annotated[str | None, Header(max_length=500)] = None,
) -> Response:
    """Served from a cache re-signed when a status changed or half the ttl has passed;
    max-age is what is left of the ttl so that no cache holds a stale list."""
    settings = ctx.settings
    now = ctx.clock()
    signed = ctx.publisher.held(f"status:{list_id}", now)
    if signed is None:
        signed = await run_in_threadpool(ctx.publisher.status_list, list_id, now)
    remaining = signed.issued_at + settings.status_ttl_seconds - int(now.timestamp())
    return _serve(signed, "application/statuslist+jwt", if_none_match, remaining)
