"""The console's pages. Each POST checks the role and the CSRF token, validates every
field, then calls cardsvc's services in one transaction: all of it is saved or none."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from cardsvc.console import _forms as forms
from cardsvc.console import _i18n as i18n
from cardsvc.console._auth import PRE_COOKIE, SESSION_COOKIE, SESSION_SECONDS
from cardsvc.console._pages import (
    AUDITORS,
    READERS,
    REGISTRARS,
    SUPERVISORS,
    ConsoleRoute,
    Refusal,
    Visit,
    in_db,
    open_visit,
    redirect,
    render,
)
from cardsvc.console._qr import qr_svg
from cardsvc.console._search import search_persons
from cardsvc.console._views import (
    AuditRow,
    CardView,
    PersonView,
    SearchRow,
    audit_row,
    card_target,
    card_view,
    format_time,
    person_view,
    search_row,
)
from cardsvc.models import Officer
from cardsvc.services import audit, cards, officers, persons, trust
from cardsvc.services.audit import Actor
from cardsvc.services.errors import Conflict, DomainError, Unauthenticated
from schemas.credential import FOREIGNER_CODE_PATTERN

__all__ = ["router"]

T = TypeVar("T")
router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png"}
_STATIC = {path.name: (path.read_bytes(), _MEDIA_TYPES[path.suffix])
           for path in STATIC_DIR.iterdir() if path.suffix in _MEDIA_TYPES}
_NOTICES = frozenset({"enrolled", "linked", "existing", "passport_recorded", "passport_known",
                      "revoked", "suspended", "reinstated", "signed_out", "rotated", "portrait_set",
                      "deactivated"})
_MISMATCH_FIELDS = ("name", "nationality", "birth_date", "sex")
_ACTIONS: dict[str, str] = {"revoke": "revoked", "suspend": "suspended",
                            "reinstate": "reinstated"}
_STATE_OF_NOTICE = {"revoked": "revoked", "suspended": "suspended", "reinstated": "active"}
_CODE_PATH = re.compile(FOREIGNER_CODE_PATTERN)
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_MAX_FORM_FIELDS = 40


# --- plumbing -----------------------------------------------------------------------------

async def _form(request: Request) -> FormData:
    return await request.form(max_files=1, max_fields=_MAX_FORM_FIELDS)


def _fields(form: FormData) -> dict[str, str]:
    return {name: value for name, value in form.multi_items() if isinstance(value, str)}


async def _upload(form: FormData, name: str, *, max_bytes: int) -> bytes | None:
    upload = form.get(name)
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None
    return await upload.read(max_bytes + 1)  # one byte over the cap is enough to refuse


async def _read(visit: Visit, work: Callable[[Session], T]) -> T:
    """Read-only work; a domain error (an unknown person, say) becomes its page."""
    try:
        return await in_db(visit.ctx, work, readonly=True)
    except DomainError as error:
        raise Refusal(error.status, error.code, visit=visit) from error


def _actor(session: Session, visit: Visit) -> Actor:
    assert visit.officer is not None
    officer = session.get(Officer, visit.officer.id)
    assert officer is not None
    return Actor.for_officer(officer)


def _notice(request: Request) -> str | None:
    notice = request.query_params.get("notice")
    return notice if notice in _NOTICES else None


def _page_number(request: Request) -> int:
    text = request.query_params.get("page", "1")
    return int(text) if text.isdigit() and len(text) < 7 else 1


def _safe_next(unverified_path: str | None) -> str:
    """Only a path on this site (never //host or a scheme) is a place to come back to."""
    path = unverified_path or "/"
    if (not path.startswith("/") or path.startswith(("//", "/\\")) or len(path) > 500
            or any(ord(char) < 0x20 for char in path)):
        return "/"
    return path


def _check_code(visit: Visit, foreigner_code: str) -> None:
    if not _CODE_PATH.match(foreigner_code):
        raise Refusal(404, "PERSON_NOT_FOUND", visit=visit)


# --- static assets and sign-in ------------------------------------------------------------

@router.get("/console/static/{name}")
async def static_asset(name: str) -> Response:
    asset = _STATIC.get(name)
    if asset is None:
        raise Refusal(404, "NOT_FOUND")
    content, media_type = asset
    return Response(content, media_type=media_type, headers={
        "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


def _sign_in_page(visit: Visit, *, next_path: str, errors: dict[str, str], status: int = 200,
                  notice_key: str | None = None) -> Response:
    nonce = visit.request.cookies.get(PRE_COOKIE, "")
    if not _NONCE.match(nonce):
        nonce = secrets.token_urlsafe(24)
        visit.cookies_to_set[PRE_COOKIE] = (nonce, 3600)
    return render(visit, "sign_in.html", status=status, notice_key=notice_key,
                  next_path=next_path, errors=errors, csrf=visit.keys.pre_token(nonce))


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    visit = await open_visit(request, need=None)
    next_path = _safe_next(request.query_params.get("next"))
    if visit.officer is not None:
        return redirect(visit, next_path)
    return _sign_in_page(visit, next_path=next_path, errors={}, notice_key=_notice(request))


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    visit = await open_visit(request, need=None)
    form = _fields(await _form(request))
    if not visit.keys.check_pre_token(request.cookies.get(PRE_COOKIE, ""),
                                      form.get("csrf", "")):
        raise Refusal(403, "CSRF_FAILED", visit=visit)
    next_path = _safe_next(form.get("next"))
    token = form.get("token", "").strip()
    if not token:
        return _sign_in_page(visit, next_path=next_path, errors={"token": "REQUIRED"},
                             status=422)

    def find(session: Session) -> tuple[int, str, frozenset[str]]:
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
async def sign_out(request: Request) -> Response:
    visit = await open_visit(request, need=frozenset())
    visit.check_csrf(_fields(await _form(request)).get("csrf", ""))
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


# --- search -------------------------------------------------------------------------------

@router.get("/")
async def home(request: Request) -> Response:
    visit = await open_visit(request, need=frozenset())
    if not visit.can.read:
        if visit.can.audit:
            return redirect(visit, "/audit")
        return render(visit, "home.html", result=None, query="", page_url=str)
    query = " ".join(request.query_params.get("q", "").split())[:100]
    page = _page_number(request)

    def work(session: Session) -> dict[str, Any]:
        found = search_persons(session, query=query, page=page)
        rows: list[SearchRow] = [search_row(person) for person in found.persons]
        return {"rows": rows, "total": found.total, "page": found.page, "pages": found.pages}

    result = await _read(visit, work)
    return render(visit, "home.html", nav="search", notice_key=_notice(request), query=query,
                  result=result,
                  page_url=lambda number: "/?" + urlencode({"q": query, "page": number}))


# --- enrolment ----------------------------------------------------------------------------

def _enrol_page(visit: Visit, values: dict[str, str], errors: dict[str, str], *,
                form_error: str | None = None, status: int = 200) -> Response:
    blank = {name: "" for name in ("surname", "given_names", "nationality", "birth_date",
                                   "sex", "passport_number", "passport_country",
                                   "passport_expires", "portrait_b64")}
    return render(visit, "enrol.html", status=status, nav="enrol",
                  values={**blank, **values}, errors=errors, form_error=form_error,
                  portrait_max_mb=round(visit.ctx.settings.portrait_max_bytes / 1_048_576, 1))


@router.get("/persons/new")
async def enrol_form(request: Request) -> Response:
    visit = await open_visit(request, need=REGISTRARS)
    return _enrol_page(visit, {}, {})


@router.post("/persons/new")
async def enrol(request: Request) -> Response:
    visit = await open_visit(request, need=REGISTRARS)
    settings = visit.ctx.settings
    raw_form = await _form(request)
    form = _fields(raw_form)
    visit.check_csrf(form.get("csrf", ""))
    uploaded = await _upload(raw_form, "portrait", max_bytes=settings.portrait_max_bytes)
    now = visit.now()
    values, cleaned, problems = forms.read_enrol(
        form, uploaded_portrait=uploaded, today=now.date(),
        portrait_max_bytes=settings.portrait_max_bytes)
    if cleaned is None:
        return _enrol_page(visit, values, problems, status=422)
    link_to = form.get("link_to") or None
    confirm_new = form.get("confirm_new") == "1"

    def work(session: Session) -> tuple[str, str, list[str]]:
        outcome = persons.enrol_person(
            session, details=cleaned.details, passport=cleaned.passport,
            actor=_actor(session, visit), now=now, portrait=cleaned.portrait_jpeg,
            portrait_max_bytes=settings.portrait_max_bytes, link_to=link_to,
            confirm_new=confirm_new)
        notice = ("enrolled" if outcome.created else "linked" if outcome.linked
                  else "existing")
        return outcome.person.foreigner_code, notice, list(outcome.mismatches)

    try:
        code, notice, mismatches = await in_db(visit.ctx, work)
    except Conflict as error:
        if error.code == "POSSIBLE_DUPLICATE":
            return await _duplicates_page(visit, values, error.extra.get("candidates", []))
        return _enrol_error(visit, values, error)
    except DomainError as error:
        return _enrol_error(visit, values, error)
    query = {"notice": notice}
    if mismatches:
        query["mismatch"] = ",".join(mismatches)
    return redirect(visit, f"/persons/{code}?" + urlencode(query))


def _enrol_error(visit: Visit, values: dict[str, str], error: DomainError) -> Response:
    field = forms.field_for("enrol", error.code)
    if field is not None:
        return _enrol_page(visit, values, {field: error.code}, status=error.status)
    return _enrol_page(visit, values, {}, form_error=error.code, status=error.status)


async def _duplicates_page(
    visit: Visit, values: dict[str, str], candidates: list[dict[str, Any]]
) -> Response:
    codes = [str(candidate["foreigner_code"]) for candidate in candidates]

    def portraits(session: Session) -> dict[str, str | None]:
        return {code: person_view(persons.get_person(session, foreigner_code=code))
                .portrait_url for code in codes}

    urls = await _read(visit, portraits)
    shown = [{**candidate, "portrait_url": urls.get(str(candidate["foreigner_code"]))}
             for candidate in candidates]
    hidden = {name: values.get(name, "") for name in (
        "surname", "given_names", "nationality", "birth_date", "sex", "passport_number",
        "passport_country", "passport_expires", "portrait_b64")}
    new = {
        "surname": values.get("surname", ""), "given_names": values.get("given_names", ""),
        "birth_date": values.get("birth_date", ""),
        "nationality": values.get("nationality", "").upper(), "sex": values.get("sex", "X"),
        "passport_number": values.get("passport_number", "").upper(),
        "passport_country": values.get("passport_country", "").upper(),
        "portrait_src": ("data:image/jpeg;base64," + values["portrait_b64"]
                         if values.get("portrait_b64") else None),
    }
    return render(visit, "duplicates.html", status=409, nav="enrol", candidates=shown,
                  hidden=hidden, new=new, form_error=None)


# --- persons ------------------------------------------------------------------------------

@router.get("/persons/{foreigner_code}")
async def person_page(request: Request, foreigner_code: str) -> Response:
    visit = await open_visit(request, need=READERS)
    _check_code(visit, foreigner_code)
    person = await _read(visit, lambda session: person_view(
        persons.get_person(session, foreigner_code=foreigner_code)))
    mismatches = [name for name in request.query_params.get("mismatch", "").split(",")
                  if name in _MISMATCH_FIELDS]
    return render(visit, "person.html", nav="search", notice_key=_notice(request),
                  person=person, mismatches=mismatches, portrait_error=None)


@router.post("/persons/{foreigner_code}/portrait")
async def replace_portrait(request: Request, foreigner_code: str) -> Response:
    """A new photo; cards get its digest with their next bundle (new code or refresh)."""
    visit = await open_visit(request, need=REGISTRARS)
    raw_form = await _form(request)
    visit.check_csrf(_fields(raw_form).get("csrf", ""))
    person = await _person(visit, foreigner_code)
    max_bytes = visit.ctx.settings.portrait_max_bytes
    image = await _upload(raw_form, "portrait", max_bytes=max_bytes)
    problem = "PORTRAIT_REQUIRED" if not image else None
    if image:
        now = visit.now()

        def work(session: Session) -> None:
            persons.set_portrait(session, foreigner_code=foreigner_code, image=image,
                                 max_bytes=max_bytes, actor=_actor(session, visit), now=now)

        try:
            await in_db(visit.ctx, work)
        except DomainError as error:
            problem = error.code
    if problem is not None:
        return render(visit, "person.html", status=422, nav="search", person=person,
                      mismatches=[], portrait_error=problem)
    return redirect(visit, f"/persons/{foreigner_code}?notice=portrait_set")


@router.get("/persons/{foreigner_code}/portrait")
async def portrait(request: Request, foreigner_code: str) -> Response:
    visit = await open_visit(request, need=READERS)
    _check_code(visit, foreigner_code)

    def work(session: Session) -> bytes:
        person = persons.get_person(session, foreigner_code=foreigner_code)
        if person.portrait_digest is None:
            raise Refusal(404, "PORTRAIT_NOT_FOUND", visit=visit)
        return persons.portrait_bytes(session, digest=person.portrait_digest)

    jpeg = await _read(visit, work)
    return Response(jpeg, media_type="image/jpeg", headers={
        "Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})


def _passport_page(visit: Visit, person: PersonView, values: dict[str, str],
                   errors: dict[str, str], *, form_error: str | None = None,
                   status: int = 200) -> Response:
    return render(visit, "passport.html", status=status, nav="search", person=person,
                  values=values, errors=errors, form_error=form_error)


async def _person(visit: Visit, foreigner_code: str) -> PersonView:
    _check_code(visit, foreigner_code)
    return await _read(visit, lambda session: person_view(
        persons.get_person(session, foreigner_code=foreigner_code)))


@router.get("/persons/{foreigner_code}/passports/new")
async def passport_form(request: Request, foreigner_code: str) -> Response:
    visit = await open_visit(request, need=REGISTRARS)
    person = await _person(visit, foreigner_code)
    values = {"number": "", "country": person.nationality, "expires": "",
              "surname": person.surname, "given_names": person.given_names,
              "nationality": person.nationality}
    return _passport_page(visit, person, values, {})


@router.post("/persons/{foreigner_code}/passports/new")
async def record_passport(request: Request, foreigner_code: str) -> Response:
    visit = await open_visit(request, need=REGISTRARS)
    form = _fields(await _form(request))
    visit.check_csrf(form.get("csrf", ""))
    person = await _person(visit, foreigner_code)
    now = visit.now()
    values, cleaned, problems = forms.read_passport(form, today=now.date())
    if cleaned is None:
        return _passport_page(visit, person, values, problems, status=422)
    ttl = visit.ctx.settings.provisioning_ttl_seconds

    def work(session: Session) -> tuple[bool, list[dict[str, str]], PersonView]:
        change = persons.record_passport(
            session, foreigner_code=foreigner_code, passport=cleaned.passport,
            actor=_actor(session, visit), now=now, surname=cleaned.surname,
            given_names=cleaned.given_names, nationality=cleaned.nationality,
            provisioning_ttl_seconds=ttl)
        codes = [_code_view(issued.card_number, issued.provisioning_code,
                            format_time(issued.provisioning_expires))
                 for issued in change.reissued_cards if isinstance(issued, cards.ReissuedCard)]
        return change.added, codes, person_view(change.person)

    try:
        added, codes, updated = await in_db(visit.ctx, work)
    except DomainError as error:
        field = forms.field_for("passport", error.code)
        return _passport_page(visit, person, values, {field: error.code} if field else {},
                              form_error=None if field else error.code,
                              status=error.status)
    if codes:
        return _provisioning_page(visit, updated, codes,
                                  heading=i18n.translate(visit.lang, "prov.reissued"))
    notice = "passport_recorded" if added else "passport_known"
    return redirect(visit, f"/persons/{foreigner_code}?notice={notice}")


# --- cards --------------------------------------------------------------------------------

def _code_view(card_number: str, code: str, expires: str) -> dict[str, str]:
    return {"card_number": card_number, "code": code, "expires": expires,
            "qr_svg": qr_svg(code, label=code)}


def _provisioning_page(visit: Visit, holder: PersonView, codes: list[dict[str, str]], *,
                       heading: str) -> Response:
    return render(visit, "provisioning.html", nav="search", holder=holder, codes=codes,
                  heading=heading, server=visit.ctx.settings.public_base)


def _issue_page(visit: Visit, person: PersonView, values: dict[str, object],
                errors: dict[str, str], *, form_error: str | None = None,
                status: int = 200) -> Response:
    return render(visit, "issue.html", status=status, nav="search", person=person,
                  values=values, errors=errors, form_error=form_error,
                  usable_card=person.usable_card, entitlement_names=forms.ENTITLEMENT_NAMES)


@router.get("/persons/{foreigner_code}/cards/new")
async def issue_form(request: Request, foreigner_code: str) -> Response:
    visit = await open_visit(request, need=REGISTRARS)
    person = await _person(visit, foreigner_code)
    values = forms.card_defaults(
        today=visit.now().date(),
        default_offline_limit_fen=visit.ctx.settings.default_offline_limit_fen)
    return _issue_page(visit, person, values, {})


@router.post("/persons/{foreigner_code}/cards/new")
async def issue(request: Request, foreigner_code: str) -> Response:
    visit = await open_visit(request, need=REGISTRARS)
    raw_form = await _form(request)
    form = _fields(raw_form)
    visit.check_csrf(form.get("csrf", ""))
    person = await _person(visit, foreigner_code)
    settings = visit.ctx.settings
    values, cleaned, problems = forms.read_card(
        form, [value for value in raw_form.getlist("entitlements") if isinstance(value, str)],
        default_offline_limit_fen=settings.default_offline_limit_fen)
    if cleaned is None:
        return _issue_page(visit, person, values, problems, status=422)
    now = visit.now()

    def work(session: Session) -> tuple[dict[str, str], PersonView]:
        issued = cards.issue_card(
            session, foreigner_code=foreigner_code, entitlements=cleaned.entitlements,
            valid_until=cleaned.valid_until, actor=_actor(session, visit), now=now,
            offline_limit_fen=cleaned.offline_limit_fen,
            replace_active=cleaned.replace_active,
            provisioning_ttl_seconds=settings.provisioning_ttl_seconds,
            status_list_size=settings.status_list_size)
        code = _code_view(issued.card.card_number, issued.provisioning_code,
                          format_time(issued.provisioning_expires))
        return code, person_view(issued.card.person)

    try:
        code, holder = await in_db(visit.ctx, work)
    except DomainError as error:
        field = forms.field_for("card", error.code)
        if field == "replace_active" and person.usable_card is None:
            field = None
        return _issue_page(visit, person, values, {field: error.code} if field else {},
                           form_error=None if field else error.code, status=error.status)
    return _provisioning_page(visit, holder, [code],
                              heading=i18n.translate(visit.lang, "prov.issued"))


async def _card(visit: Visit, card_number: str) -> CardView:
    return await _read(visit, lambda session: card_view(
        cards.get_card(session, card_number=card_number)))


@router.get("/cards/{card_number}")
async def card_page(request: Request, card_number: str) -> Response:
    visit = await open_visit(request, need=READERS)
    card = await _card(visit, card_number)
    notice = _notice(request)
    if notice in _STATE_OF_NOTICE and _STATE_OF_NOTICE[notice] != card.state:
        notice = None  # a link cannot announce a change the card does not show
    return render(visit, "card.html", nav="search", notice_key=notice, card=card)


@router.post("/cards/{card_number}/provisioning-code")
async def new_code(request: Request, card_number: str) -> Response:
    visit = await open_visit(request, need=REGISTRARS)
    visit.check_csrf(_fields(await _form(request)).get("csrf", ""))
    now = visit.now()
    ttl = visit.ctx.settings.provisioning_ttl_seconds

    def work(session: Session) -> tuple[dict[str, str], PersonView]:
        issued = cards.new_provisioning_code(session, card_number=card_number,
                                             actor=_actor(session, visit), now=now,
                                             provisioning_ttl_seconds=ttl)
        holder = person_view(cards.get_card(session, card_number=card_number).person)
        return _code_view(issued.card_number, issued.provisioning_code,
                          format_time(issued.provisioning_expires)), holder

    try:
        code, holder = await in_db(visit.ctx, work)
    except DomainError as error:
        raise Refusal(error.status, error.code, visit=visit) from error
    return _provisioning_page(visit, holder, [code],
                              heading=i18n.translate(visit.lang, "prov.new_code"))


def _change_page(visit: Visit, card: CardView, action: str, values: dict[str, str],
                 errors: dict[str, str], *, form_error: str | None = None,
                 status: int = 200) -> Response:
    return render(visit, "state_change.html", status=status, nav="search", card=card,
                  action=action, values=values, errors=errors, form_error=form_error)


async def _changeable(visit: Visit, card_number: str, action: str) -> CardView:
    if action not in _ACTIONS:
        raise Refusal(404, "NOT_FOUND", visit=visit)
    card = await _card(visit, card_number)
    if action not in card.actions:
        raise Refusal(409, f"CARD_{card.state.upper()}", visit=visit)
    return card


@router.get("/cards/{card_number}/{action}")
async def change_form(request: Request, card_number: str, action: str) -> Response:
    visit = await open_visit(request, need=SUPERVISORS)
    card = await _changeable(visit, card_number, action)
    return _change_page(visit, card, action, {"reason": ""}, {})


@router.post("/cards/{card_number}/{action}")
async def change_state(request: Request, card_number: str, action: str) -> Response:
    visit = await open_visit(request, need=SUPERVISORS)
    form = _fields(await _form(request))
    visit.check_csrf(form.get("csrf", ""))
    card = await _changeable(visit, card_number, action)
    values, reason, problems = forms.read_reason(form)
    if reason is None:
        return _change_page(visit, card, action, values, problems, status=422)
    if form.get("confirmed") != "1":
        target = card_target(action)
        return render(visit, "confirm.html", nav="search", card=card, action=action,
                      reason=reason, target=target)
    now = visit.now()

    def work(session: Session) -> None:
        cards.change_card_state(session, card_number=card_number,
                                action=action,  # type: ignore[arg-type]  # checked above
                                reason=reason, actor=_actor(session, visit), now=now)

    try:
        await in_db(visit.ctx, work)
    except DomainError as error:
        field = forms.field_for("change", error.code)
        return _change_page(visit, card, action, values, {field: error.code} if field else {},
                            form_error=None if field else error.code, status=error.status)
    return redirect(visit, f"/cards/{card_number}?notice={_ACTIONS[action]}")


# --- audit --------------------------------------------------------------------------------

@router.get("/audit")
async def audit_page(request: Request) -> Response:
    visit = await open_visit(request, need=AUDITORS)
    subject = request.query_params.get("subject", "").strip()[:128]
    if any(ord(char) < 0x20 for char in subject):
        subject = ""
    wanted = _page_number(request)
    lang = visit.lang

    def actor_label(label: str, names: dict[int, str]) -> str:
        kind, _, number = label.partition(":")
        if kind == "officer" and number.isdigit():
            return f"{names.get(int(number), '?')} (#{number})"
        key = "actor." + label
        return i18n.translate(lang, key) if i18n.has_key(key) else label

    def action_label(action: str) -> str:
        key = "audit.action." + action
        return i18n.translate(lang, key) if i18n.has_key(key) else action

    def work(session: Session) -> tuple[audit.ChainCheck, list[AuditRow], int, int]:
        chain = audit.verify_chain(session)
        names = {officer.id: officer.name for officer in officers.list_officers(session)}
        paged = audit.audit_page(session, page=wanted, subject=subject or None)
        rows = [audit_row(entry, actor_label=actor_label(entry.actor, names),
                          action_label=action_label(entry.action)) for entry in paged.entries]
        return chain, rows, paged.page, paged.pages

    chain, rows, page, pages = await _read(visit, work)
    return render(visit, "audit.html", nav="audit", chain=chain, entries=rows, page=page,
                  pages=pages, subject=subject,
                  page_url=lambda number: "/audit?" + urlencode(
                      {"subject": subject, "page": number} if subject else {"page": number}))


# --- supervisors: issuer keys and officers ------------------------------------------------

@router.get("/keys")
async def keys_page(request: Request) -> Response:
    visit = await open_visit(request, need=SUPERVISORS)
    ctx = visit.ctx

    def work(session: Session) -> tuple[str, list[dict[str, str]]]:
        return trust.root_fingerprint(session), [
            {"kid": key.kid, "state": key.state.value,
             "valid_from": format_time(_from_epoch(key.valid_from)),
             "valid_until": format_time(_from_epoch(key.valid_until))}
            for key in trust.issuer_keys(session)]

    fingerprint, issuer_keys = await _read(visit, work)
    return render(visit, "keys.html", nav="keys", notice_key=_notice(request),
                  fingerprint=fingerprint, issuer_keys=issuer_keys,
                  trust_list_url=ctx.settings.public_base + "/v1/trust-list")


@router.post("/keys/rotate")
async def rotate_keys(request: Request) -> Response:
    visit = await open_visit(request, need=SUPERVISORS)
    form = _fields(await _form(request))
    visit.check_csrf(form.get("csrf", ""))
    if form.get("confirmed") != "1":
        return render(visit, "confirm_simple.html", nav="keys", action="/keys/rotate",
                      question="keys.confirm_question", effect="keys.confirm_effect",
                      yes="keys.confirm_yes", cancel="/keys")
    now = visit.now()
    keyring = visit.ctx.keyring

    def work(session: Session) -> str:
        return trust.rotate_keys(session, keyring=keyring, actor=_actor(session, visit),
                                 now=now)

    try:
        await in_db(visit.ctx, work)
    except DomainError as error:
        raise Refusal(error.status, error.code, visit=visit) from error
    return redirect(visit, "/keys?notice=rotated")


def _from_epoch(epoch: int | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


async def _officers_page(visit: Visit, values: dict[str, object], errors: dict[str, str],
                         *, status: int = 200, notice_key: str | None = None,
                         created: dict[str, str] | None = None) -> Response:
    def work(session: Session) -> list[dict[str, object]]:
        return [{"id": officer.id, "name": officer.name, "roles": sorted(officer.role_set),
                 "active": officer.active, "created_at": format_time(officer.created_at)}
                for officer in officers.list_officers(session)]

    listed = await _read(visit, work)
    return render(visit, "officers.html", status=status, nav="officers", notice_key=notice_key,
                  officer_list=listed, values=values, errors=errors, created=created,
                  role_names=sorted(officers.ALL_ROLES))


@router.get("/officers")
async def officers_page(request: Request) -> Response:
    visit = await open_visit(request, need=SUPERVISORS)
    return await _officers_page(visit, {"name": "", "roles": []}, {},
                                notice_key=_notice(request))


@router.post("/officers")
async def add_officer(request: Request) -> Response:
    visit = await open_visit(request, need=SUPERVISORS)
    raw_form = await _form(request)
    form = _fields(raw_form)
    visit.check_csrf(form.get("csrf", ""))
    name = " ".join(form.get("name", "").split())
    roles = [value for value in raw_form.getlist("roles") if isinstance(value, str)]
    values: dict[str, object] = {"name": name, "roles": roles}
    errors = {}
    if not name:
        errors["name"] = "REQUIRED"
    if not roles:
        errors["roles"] = "NO_ROLE"
    if errors:
        return await _officers_page(visit, values, errors, status=422)
    now = visit.now()

    def work(session: Session) -> dict[str, str]:
        officer, token = officers.create_officer(session, name=name, roles=roles,
                                                 actor=_actor(session, visit), now=now)
        return {"id": str(officer.id), "name": officer.name, "token": token}

    try:
        created = await in_db(visit.ctx, work)
    except DomainError as error:
        field = {"INVALID_NAME": "name", "UNKNOWN_ROLE": "roles"}.get(error.code)
        return await _officers_page(visit, values, {field or "name": error.code},
                                    status=error.status)
    return await _officers_page(visit, {"name": "", "roles": []}, {}, created=created)


@router.post("/officers/{officer_id}/deactivate")
async def deactivate_officer(request: Request, officer_id: str) -> Response:
    visit = await open_visit(request, need=SUPERVISORS)
    form = _fields(await _form(request))
    visit.check_csrf(form.get("csrf", ""))
    if not officer_id.isdigit() or len(officer_id) > 9:
        raise Refusal(404, "OFFICER_NOT_FOUND", visit=visit)
    assert visit.officer is not None
    try:  # refused before the confirmation page, not after
        officers.check_may_deactivate(officer_id=int(officer_id),
                                      actor=Actor(f"officer:{visit.officer.id}",
                                                  visit.officer.id))
    except DomainError as error:
        raise Refusal(error.status, error.code, visit=visit) from error
    if form.get("confirmed") != "1":
        return render(visit, "confirm_simple.html", nav="officers",
                      action=f"/officers/{officer_id}/deactivate",
                      question="officers.confirm_question", effect="officers.confirm_effect",
                      yes="officers.confirm_yes", cancel="/officers")
    now = visit.now()

    def work(session: Session) -> None:
        officers.deactivate_officer(session, officer_id=int(officer_id),
                                    actor=_actor(session, visit), now=now)

    try:
        await in_db(visit.ctx, work)
    except DomainError as error:
        raise Refusal(error.status, error.code, visit=visit) from error
    return redirect(visit, "/officers?notice=deactivated")
