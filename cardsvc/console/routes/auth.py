"""Signing in with an officer token (login-CSRF bound to a pre-session cookie) and out."""

from __future__ import annotations

import re
import secrets

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from cardsvc.console._auth import PRE_COOKIE, SESSION_COOKIE, SESSION_SECONDS
from cardsvc.console._deps import AnyOfficerForm, Public, notice_of, read_form, text_fields
from cardsvc.console._pages import (
    AUDITORS,
    READERS,
    ConsoleRoute,
    Refusal,
    Visit,
    in_db,
    redirect,
    render,
)
from cardsvc.roles import Role
from cardsvc.services import officers
from cardsvc.services.errors import Unauthenticated

__all__ = ["router"]

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _safe_next(unverified_path: str | None) -> str:
    """Only a path on this site (never //host or a scheme) is a place to come back to."""
    path = unverified_path or "/"
    if (not path.startswith("/") or path.startswith(("//", "/\\")) or len(path) > 500
            or any(ord(char) < 0x20 for char in path)):
        return "/"
    return path


def _sign_in_page(visit: Visit, *, next_path: str, errors: dict[str, str], status: int = 200,
                  notice_key: str | None = None) -> Response:
    nonce = visit.request.cookies.get(PRE_COOKIE, "")
    if not _NONCE.match(nonce):
        nonce = secrets.token_urlsafe(24)
        visit.cookies_to_set[PRE_COOKIE] = (nonce, 3600)
    return render(visit, "sign_in.html", status=status, notice_key=notice_key,
                  next_path=next_path, errors=errors, csrf=visit.keys.pre_token(nonce))


@router.get("/sign-in")
async def sign_in_form(request: Request, visit: Public) -> Response:
    next_path = _safe_next(request.query_params.get("next"))
    if visit.officer is not None:
        return redirect(visit, next_path)
    return _sign_in_page(visit, next_path=next_path, errors={}, notice_key=notice_of(request))


@router.post("/sign-in")
async def sign_in(request: Request, visit: Public) -> Response:
    form = text_fields(await read_form(request))
    # No session yet: the form's token is bound to the pre-session cookie instead.
    if not visit.keys.check_pre_token(request.cookies.get(PRE_COOKIE, ""),
                                      form.get("csrf", "")):
        raise Refusal(403, "CSRF_FAILED", visit=visit)
    next_path = _safe_next(form.get("next"))
    token = form.get("token", "").strip()
    if not token:
        return _sign_in_page(visit, next_path=next_path, errors={"token": "REQUIRED"},
                             status=422)

    def find(session: Session) -> tuple[int, str, frozenset[Role]]:
        officer = officers.authenticate(session, unverified_token=token)
        return officer.id, officer.token_hash, officer.role_set

    try:
        officer_id, token_hash, roles = await in_db(visit.ctx, find, readonly=True)
    except Unauthenticated:
        return _sign_in_page(visit, next_path=next_path,
                             errors={"token": "UNAUTHENTICATED"}, status=401)
    if not roles & (READERS | AUDITORS):
        return _sign_in_page(visit, next_path=next_path,
                             errors={"token": "NO_CONSOLE_ROLE"}, status=403)
    claims = visit.keys.new_session(officer_id=officer_id, token_hash=token_hash,
                                    now=int(visit.now().timestamp()))
    visit.cookies_to_set[SESSION_COOKIE] = (visit.keys.seal(claims), SESSION_SECONDS)
    visit.cookies_to_set[PRE_COOKIE] = ("", 0)
    return redirect(visit, next_path)


@router.post("/sign-out")
async def sign_out(post: AnyOfficerForm) -> Response:
    visit = post.visit
    claims = visit.session
    assert claims is not None and visit.officer is not None
    now = int(visit.now().timestamp())

    def end(session: Session) -> None:
        officers.end_console_session(session, officer_id=claims.officer_id,
                                     session_id=claims.session_id,
                                     expires_at=claims.expires, now=now)

    await in_db(visit.ctx, end)
    visit.cookies_to_set[SESSION_COOKIE] = ("", 0)
    return redirect(visit, "/sign-in?notice=signed_out")
