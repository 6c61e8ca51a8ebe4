"""Issuer keys for supervisors: the root fingerprint to pin, key states, rotation."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from cardsvc.console._deps import Supervisor, SupervisorForm, actor_of, notice_of, read
from cardsvc.console._pages import ConsoleRoute, Refusal, in_db, redirect, render
from cardsvc.console._views import format_time
from cardsvc.services import trust
from cardsvc.services.errors import DomainError

__all__ = ["router"]

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def _from_epoch(epoch: int | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


@router.get("/keys")
async def keys_page(request: Request, visit: Supervisor) -> Response:
    ctx = visit.ctx

    def work(session: Session) -> tuple[str, list[dict[str, str]]]:
        return trust.root_fingerprint(session), [
            {"kid": key.kid, "state": key.state.value,
             "valid_from": format_time(_from_epoch(key.valid_from)),
             "valid_until": format_time(_from_epoch(key.valid_until))}
            for key in trust.issuer_keys(session)]

    fingerprint, issuer_keys = await read(visit, work)
    return render(visit, "keys.html", nav="keys", notice_key=notice_of(request),
                  fingerprint=fingerprint, issuer_keys=issuer_keys,
                  trust_list_url=ctx.settings.public_base + "/v1/trust-list")


@router.post("/keys/rotate")
async def rotate_keys(post: SupervisorForm) -> Response:
    visit = post.visit
    if post.fields.get("confirmed") != "1":
        return render(visit, "confirm_simple.html", nav="keys", action="/keys/rotate",
                      question="keys.confirm_question", effect="keys.confirm_effect",
                      yes="keys.confirm_yes", cancel="/keys")
    now = visit.now()
    keyring = visit.ctx.keyring

    def work(session: Session) -> str:
        return trust.rotate_keys(session, keyring=keyring,
                                 kid_prefix=visit.ctx.settings.kid_prefix,
                                 actor=actor_of(session, visit),
                                 now=now)

    try:
        await in_db(visit.ctx, work)
    except DomainError as error:
        raise Refusal(error.status, error.code, visit=visit) from error
    return redirect(visit, "/keys?notice=rotated")
