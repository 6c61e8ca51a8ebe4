"""The sealed portrait bundle (P15), public like the status lists: a signed manifest and
content-addressed segments that answer HTTP Range requests (resumable downloads)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Path, Response

from cardsvc.api.deps import Ctx
from cardsvc.api.routes._common import problems
from cardsvc.services import portrait_bundle

__all__ = ["router"]

router = APIRouter(prefix="/v1/portrait-bundle", tags=["publication"])
_RANGE_RE = re.compile(r"^bytes=(\d{1,12})-$")


@router.get("/manifest", response_class=Response, responses={
    200: {"content": {"application/jwt": {}}, "description": "the signed manifest"},
    304: {"description": "not modified"}, **problems(503)})
def manifest(
    ctx: Ctx, if_none_match: Annotated[str | None, Header(max_length=500)] = None
) -> Response:
    settings = ctx.settings
    now = ctx.clock()
    lifetime = settings.portrait_bundle_lifetime_seconds
    # Changes wait for the status ttl at most: one segment per batch, not per card.
    signed = ctx.database.transact(lambda session: portrait_bundle.cached_manifest(
        session, now=now, lifetime_seconds=lifetime,
        batch_seconds=settings.status_ttl_seconds), readonly=True)
    if signed is None:
        signed = ctx.database.transact(lambda session: portrait_bundle.publish(
            session, keyring=ctx.keyring, issuer=settings.issuer, now=now,
            lifetime_seconds=lifetime))
    headers = {"ETag": signed.etag, "Cache-Control": "public, max-age=60"}
    if if_none_match is not None and signed.etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(signed.jwt, media_type="application/jwt", headers=headers)


@router.get("/segments/{sha256}", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}}, "description": "one segment"},
    206: {"description": "the rest of a segment from the asked offset"},
    **problems(404, 416, 422)})
def segment(
    sha256: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{43}$")], ctx: Ctx,
    range_header: Annotated[str | None, Header(alias="Range", max_length=100)] = None,
) -> Response:
    """Immutable (named by its SHA-256); ``Range: bytes=N-`` resumes a broken download."""
    body = ctx.database.transact(lambda session: portrait_bundle.segment_body(
        session, sha256=sha256), readonly=True)
    headers = {"Cache-Control": "public, max-age=31536000, immutable",
               "Accept-Ranges": "bytes"}
    match = _RANGE_RE.fullmatch(range_header or "")
    if range_header is not None and match is not None:
        start = int(match.group(1))
        if start >= len(body):
            return Response(status_code=416,
                            headers={**headers, "Content-Range": f"bytes */{len(body)}"})
        headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        return Response(body[start:], status_code=206, media_type="application/octet-stream",
                        headers=headers)
    return Response(body, media_type="application/octet-stream", headers=headers)
