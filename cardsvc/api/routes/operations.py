"""What operators and orchestrators ask: readiness and metrics (no personal data).

``GET /v1/health`` (in ``meta``) is liveness: the process answers. ``GET /v1/ready`` says
whether this process can do its work now: the database answers, the signing keys open,
the authority is initialised with its lists. ``GET /metrics`` is Prometheus text.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cardsvc.api.deps import Ctx
from cardsvc.api.errors import problem
from cardsvc.metrics import render
from cardsvc.models import StatusListRecord, TrustState
from cardsvc.services import trust
from cardsvc.services.errors import DomainError

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/v1/ready", responses={
    200: {"description": "ready: database, keys and lists"},
    503: {"description": "not ready; `checks` says which part"}})
def ready(ctx: Ctx) -> Response:
    checks: dict[str, str] = {}
    try:
        ctx.database.transact(lambda session: session.execute(text("SELECT 1")), readonly=True)
        checks["database"] = "ok"
    except Exception as error:  # any failure to reach it is "not ready", never a 500
        checks["database"] = type(error).__name__
        return problem(503, "NOT_READY", "the database does not answer", checks=checks,
                       headers={"Retry-After": "1"})

    def keys_and_lists(session: Session) -> dict[str, str]:
        found: dict[str, str] = {}
        try:
            trust.active_signer(session, keyring=ctx.keyring)
            ctx.keyring.root()
            found["keys"] = "ok"
        except DomainError as error:
            found["keys"] = error.code
        state = session.get(TrustState, 1)
        lists = session.scalars(select(StatusListRecord.id)).all()
        found["lists"] = "ok" if state is not None and lists else "NOT_INITIALISED"
        return found

    checks |= ctx.database.transact(keys_and_lists, readonly=True)
    if any(value != "ok" for value in checks.values()):
        return problem(503, "NOT_READY", "this process cannot serve yet", checks=checks,
                       headers={"Retry-After": "5"})
    body: dict[str, Any] = {"status": "ready", "checks": checks}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def metrics(ctx: Ctx) -> Response:
    body, media_type = render(database=ctx.database, now=ctx.clock().timestamp())
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})
