"""Routes another authority calls (``/v1/interauth/...``, P10): every one takes the
verified signed request of the calling city (:data:`cardsvc.api.deps.InterauthCaller`);
an officer bearer token is never accepted here."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from cardsvc.api.deps import Ctx, InterauthCaller
from cardsvc.api.routes._common import problems

__all__ = ["router"]

router = APIRouter(prefix="/v1/interauth", tags=["between authorities"])


@router.post("/ping", responses=problems(401, 403, 503))
def ping(ctx: Ctx, caller: InterauthCaller) -> dict[str, Any]:
    """Who called, as this city verified it: a link check between two authorities."""
    return {"caller": caller.issuer, "callee": ctx.settings.issuer,
            "officer": caller.officer_id, "jti": caller.jti}
