"""The national federation list this authority holds (P10), served as accepted: verifiers
and other authorities may use any authority as a mirror, since only the national root's
signature counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from cardsvc.api.deps import Ctx
from cardsvc.api.routes._common import problems
from cardsvc.services.errors import NotFound

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["publication"])


@router.get("/federation-list", response_class=Response, responses={
    200: {"content": {"application/jwt": {}},
          "description": "the national federation list (fmc-federation+jwt) as held"},
    304: {"description": "not modified"}, **problems(404)})
def federation_list(
    ctx: Ctx, if_none_match: Annotated[str | None, Header(max_length=500)] = None
) -> Response:
    signed = ctx.publisher.federation_list(ctx.clock())  # from memory, like the lists
    if signed is None:
        raise NotFound("FEDERATION_NOT_CONFIGURED", "this authority holds no federation list")
    headers = {"ETag": signed.etag,
               "Cache-Control": f"public, max-age={ctx.settings.federation_refresh_seconds}"}
    if if_none_match is not None and (if_none_match.strip() == "*" or signed.etag in {
            tag.strip() for tag in if_none_match.split(",")}):
        return Response(status_code=304, headers=headers)
    return Response(signed.jwt, media_type="application/jwt", headers=headers)
