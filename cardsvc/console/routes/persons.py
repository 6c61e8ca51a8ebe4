"""Enrolment (with likely duplicates to resolve), a person's page, portrait and passports."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from cardsvc.console import _forms as forms
from cardsvc.console import _i18n as i18n
from cardsvc.console._codes import code_view, provisioning_page
from cardsvc.console._deps import (
    Reader,
    Registrar,
    RegistrarForm,
    actor_of,
    check_code,
    load_person,
    notice_of,
    read,
    upload,
)
from cardsvc.console._pages import ConsoleRoute, Refusal, Visit, in_db, redirect, render
from cardsvc.console._views import PersonView, format_time, person_view
from cardsvc.services import cards, persons
from cardsvc.services.errors import Conflict, DomainError

__all__ = ["router"]

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
_MISMATCH_FIELDS = ("name", "nationality", "birth_date", "sex")
_ENROL_FIELDS = ("surname", "given_names", "nationality", "birth_date", "sex",
                 "passport_number", "passport_country", "passport_expires", "portrait_b64")


# --- enrolment ----------------------------------------------------------------------------

def _enrol_page(visit: Visit, values: dict[str, str], errors: dict[str, str], *,
                form_error: str | None = None, status: int = 200) -> Response:
    blank = {name: "" for name in _ENROL_FIELDS}
    return render(visit, "enrol.html", status=status, nav="enrol",
                  values={**blank, **values}, errors=errors, form_error=form_error,
                  portrait_max_mb=round(visit.ctx.settings.portrait_max_bytes / 1_048_576, 1))


@router.get("/persons/new")
async def enrol_form(visit: Registrar) -> Response:
    return _enrol_page(visit, {}, {})


@router.post("/persons/new")
async def enrol(post: RegistrarForm) -> Response:
    visit, form = post.visit, post.fields
    settings = visit.ctx.settings
    uploaded = await upload(post.form, "portrait", max_bytes=settings.portrait_max_bytes)
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
            actor=actor_of(session, visit), now=now, portrait=cleaned.portrait_jpeg,
            portrait_max_bytes=settings.portrait_max_bytes, link_to=link_to,
            confirm_new=confirm_new, issuer=settings.issuer)
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

    urls = await read(visit, portraits)
    shown = [{**candidate, "portrait_url": urls.get(str(candidate["foreigner_code"]))}
             for candidate in candidates]
    hidden = {name: values.get(name, "") for name in _ENROL_FIELDS}
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


# --- a person, the portrait ---------------------------------------------------------------

@router.get("/persons/{foreigner_code}")
async def person_page(request: Request, foreigner_code: str, visit: Reader) -> Response:
    person = await load_person(visit, foreigner_code)
    mismatches = [name for name in request.query_params.get("mismatch", "").split(",")
                  if name in _MISMATCH_FIELDS]
    return render(visit, "person.html", nav="search", notice_key=notice_of(request),
                  person=person, mismatches=mismatches, portrait_error=None)


@router.post("/persons/{foreigner_code}/portrait")
async def replace_portrait(foreigner_code: str, post: RegistrarForm) -> Response:
    """A new photo; cards get its digest with their next bundle (new code or refresh)."""
    visit = post.visit
    person = await load_person(visit, foreigner_code)
    max_bytes = visit.ctx.settings.portrait_max_bytes
    image = await upload(post.form, "portrait", max_bytes=max_bytes)
    problem = "PORTRAIT_REQUIRED" if not image else None
    if image:
        now = visit.now()

        def work(session: Session) -> None:
            persons.set_portrait(session, foreigner_code=foreigner_code, image=image,
                                 max_bytes=max_bytes, actor=actor_of(session, visit), now=now)

        try:
            await in_db(visit.ctx, work)
        except DomainError as error:
            problem = error.code
    if problem is not None:
        return render(visit, "person.html", status=422, nav="search", person=person,
                      mismatches=[], portrait_error=problem)
    return redirect(visit, f"/persons/{foreigner_code}?notice=portrait_set")


@router.get("/persons/{foreigner_code}/portrait")
async def portrait(foreigner_code: str, visit: Reader) -> Response:
    check_code(visit, foreigner_code)

    def work(session: Session) -> bytes:
        person = persons.get_person(session, foreigner_code=foreigner_code)
        if person.portrait_digest is None:
            raise Refusal(404, "PORTRAIT_NOT_FOUND", visit=visit)
        return persons.portrait_bytes(session, digest=person.portrait_digest)

    jpeg = await read(visit, work)
    return Response(jpeg, media_type="image/jpeg", headers={
        "Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})


# --- passports ----------------------------------------------------------------------------

def _passport_page(visit: Visit, person: PersonView, values: dict[str, str],
                   errors: dict[str, str], *, form_error: str | None = None,
                   status: int = 200) -> Response:
    return render(visit, "passport.html", status=status, nav="search", person=person,
                  values=values, errors=errors, form_error=form_error)


@router.get("/persons/{foreigner_code}/passports/new")
async def passport_form(foreigner_code: str, visit: Registrar) -> Response:
    person = await load_person(visit, foreigner_code)
    values = {"number": "", "country": person.nationality, "expires": "",
              "surname": person.surname, "given_names": person.given_names,
              "nationality": person.nationality}
    return _passport_page(visit, person, values, {})


@router.post("/persons/{foreigner_code}/passports/new")
async def record_passport(foreigner_code: str, post: RegistrarForm) -> Response:
    visit = post.visit
    person = await load_person(visit, foreigner_code)
    now = visit.now()
    values, cleaned, problems = forms.read_passport(post.fields, today=now.date())
    if cleaned is None:
        return _passport_page(visit, person, values, problems, status=422)
    ttl = visit.ctx.settings.provisioning_ttl_seconds

    def work(session: Session) -> tuple[bool, list[dict[str, str]], PersonView]:
        change = persons.record_passport(
            session, foreigner_code=foreigner_code, passport=cleaned.passport,
            actor=actor_of(session, visit), now=now, surname=cleaned.surname,
            given_names=cleaned.given_names, nationality=cleaned.nationality,
            provisioning_ttl_seconds=ttl)
        codes = [code_view(issued.card_number, issued.provisioning_code,
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
        return provisioning_page(visit, updated, codes,
                                 heading=i18n.translate(visit.lang, "prov.reissued"))
    notice = "passport_recorded" if added else "passport_known"
    return redirect(visit, f"/persons/{foreigner_code}?notice={notice}")
