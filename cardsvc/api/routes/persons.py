"""Enrolment, lookups, passport changes and portraits."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy.orm import Session

from cardsvc.api._present import code_out, person_fields, person_out
from cardsvc.api.deps import Ctx, PendingOfficer, roles, roles_in_transaction
from cardsvc.api.routes._common import json_answer, problems
from cardsvc.api.schemas import (
    EnrolIn,
    EnrolmentOut,
    PassportChangeIn,
    PassportChangeOut,
    PersonOut,
    PortraitIn,
)
from cardsvc.federation.enrolment import enrolment_check
from cardsvc.federation.state import federation_held
from cardsvc.models import Officer
from cardsvc.roles import Role
from cardsvc.services import persons
from cardsvc.services.audit import Actor
from cardsvc.services.errors import Conflict, Invalid
from schemas.credential import FOREIGNER_CODE_PATTERN, PORTRAIT_DIGEST_PATTERN

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["persons"])

CodePath = Annotated[str, Path(pattern=FOREIGNER_CODE_PATTERN)]
_READERS = (Role.registrar, Role.supervisor)
_PROBLEMS = problems(401, 403, 404, 409, 422)


class _AskOtherCitiesFirst(Exception):
    """A federation is held: other cities are asked before the enrolment's transaction."""


def _image(unverified_base64: str) -> bytes:
    try:
        return base64.b64decode(unverified_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid("PORTRAIT_INVALID", "portrait must be base64") from exc


@router.post("/persons", response_model=EnrolmentOut, status_code=201, responses=_PROBLEMS)
def enrol(
    body: EnrolIn, ctx: Ctx,
    pending: Annotated[PendingOfficer, Depends(roles_in_transaction(Role.registrar))],
) -> Response:
    """Enrol a foreigner; 200 with ``existing: true`` when a passport names a known person,
    409 POSSIBLE_DUPLICATE with candidates when someone similar exists. In a federation,
    409 KNOWN_IN_OTHER_CITY when another city knows the passport (always) or a similar
    person (unless ``confirm_new``): move them here with ``POST /v1/persons/transfers``."""
    portrait = None if body.portrait is None else _image(body.portrait)
    details = persons.PersonDetails(body.surname, body.given_names, body.nationality.upper(),
                                    body.birth_date, body.sex)
    passport = persons.PassportDetails(body.passport.number, body.passport.country.upper(),
                                       body.passport.expires)
    # Other cities are asked outside the transaction, before it. Without a federation
    # (one city) there is no one to ask: the transaction finds that itself, instead of a
    # transaction of its own before it to read that no federation list is held.
    asked = body.link_to is not None
    # The token is checked in the enrolment's own transaction (P11: no pooled checkout
    # and thread-pool hop of its own); the officer's id outlives a rolled-back attempt.
    officer_ids: list[int] = []

    def work(session: Session) -> EnrolmentOut:
        officer = pending.check(session)
        officer_ids.append(officer.id)
        federated = None
        if not asked:
            federated = federation_held(session)
            if federated:
                raise _AskOtherCitiesFirst  # rolled back: nothing was written
        outcome = persons.enrol_person(
            session, details=details, passport=passport, actor=Actor.for_officer(officer),
            now=ctx.clock(), portrait=portrait,
            portrait_max_bytes=ctx.settings.portrait_max_bytes, link_to=body.link_to,
            confirm_new=body.confirm_new, issuer=ctx.settings.issuer, federated=federated,
        )
        return EnrolmentOut(**person_fields(outcome.person),  # type: ignore[arg-type]
                            existing=not outcome.created, linked=outcome.linked,
                            mismatches=outcome.mismatches)

    try:
        out = ctx.database.transact(work)
    except _AskOtherCitiesFirst:
        elsewhere = enrolment_check(ctx, details=details, passport=passport,
                                    officer_id=officer_ids[-1])
        if any(m["matched_by"] == "passport" for m in elsewhere) or (
                elsewhere and not body.confirm_new):
            raise Conflict("KNOWN_IN_OTHER_CITY", "another city knows this person: move them"
                           " here (POST /v1/persons/transfers) or, for a name match only,"
                           " confirm a new person", known_elsewhere=elsewhere) from None
        asked = True
        out = ctx.database.transact(work)
    return json_answer(out, status_code=200 if out.existing else 201)


@router.get("/persons", response_model=PersonOut, responses=_PROBLEMS)
def find_by_passport(
    ctx: Ctx, _officer: Annotated[Officer, Depends(roles(*_READERS))],
    passport: Annotated[str, Query(pattern=r"^[A-Za-z0-9 -]{4,24}$")],
    country: Annotated[str, Query(pattern=r"^[A-Za-z]{3}$")],
) -> PersonOut:
    """The person who holds or ever held this passport."""
    return ctx.database.transact(
        lambda session: person_out(persons.find_by_passport(session, number=passport,
                                                            country=country.upper())),
        readonly=True,
    )


@router.get("/persons/{foreigner_code}", response_model=PersonOut, responses=_PROBLEMS)
def get_person(
    foreigner_code: CodePath, ctx: Ctx,
    _officer: Annotated[Officer, Depends(roles(*_READERS))],
) -> PersonOut:
    return ctx.database.transact(
        lambda session: person_out(persons.get_person(session, foreigner_code=foreigner_code)),
        readonly=True,
    )


@router.post("/persons/{foreigner_code}/passports", response_model=PassportChangeOut,
             responses=_PROBLEMS)
def record_passport(
    foreigner_code: CodePath, body: PassportChangeIn, ctx: Ctx,
    officer: Annotated[Officer, Depends(roles(Role.registrar))],
) -> PassportChangeOut:
    """Record a new passport: the foreigner code stays; cards are re-issued if the
    personal data in their credentials changed."""

    def work(session: Session) -> PassportChangeOut:
        change = persons.record_passport(
            session, foreigner_code=foreigner_code,
            passport=persons.PassportDetails(body.number, body.country.upper(), body.expires),
            actor=Actor.for_officer(officer), now=ctx.clock(), surname=body.surname,
            given_names=body.given_names,
            nationality=None if body.nationality is None else body.nationality.upper(),
            provisioning_ttl_seconds=ctx.settings.provisioning_ttl_seconds,
        )
        reissued = [code_out(card) for card in change.reissued_cards]
        return PassportChangeOut(**person_fields(change.person),  # type: ignore[arg-type]
                                 added=change.added,
                                 personal_data_changed=change.personal_data_changed,
                                 cards_reissued=reissued)

    return ctx.database.transact(work)


@router.put("/persons/{foreigner_code}/portrait", response_model=PersonOut, responses=_PROBLEMS)
def set_portrait(
    foreigner_code: CodePath, body: PortraitIn, ctx: Ctx,
    officer: Annotated[Officer, Depends(roles(Role.registrar))],
) -> PersonOut:
    """JPEG or PNG; re-encoded by the authority. Cards get the new digest when re-issued."""
    image = _image(body.portrait)
    return ctx.database.transact(lambda session: person_out(persons.set_portrait(
        session, foreigner_code=foreigner_code, image=image,
        max_bytes=ctx.settings.portrait_max_bytes, actor=Actor.for_officer(officer),
        now=ctx.clock())))


@router.get("/portraits/{digest}", response_class=Response, responses={
    200: {"content": {"image/jpeg": {}}, "description": "the portrait"}, **_PROBLEMS})
def get_portrait(
    digest: Annotated[str, Path(pattern=PORTRAIT_DIGEST_PATTERN)], ctx: Ctx,
    _officer: Annotated[Officer, Depends(roles(Role.terminal, Role.verifier, *_READERS))],
) -> Response:
    """The JPEG whose digest a credential carries (check it against the digest)."""
    jpeg = ctx.database.transact(
        lambda session: persons.portrait_bytes(session, digest=digest), readonly=True)
    return Response(jpeg, media_type="image/jpeg", headers={
        "Cache-Control": "private, max-age=86400, immutable", "ETag": f'"{digest}"'})


