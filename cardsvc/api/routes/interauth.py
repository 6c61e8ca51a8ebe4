"""Routes between authorities (P10): ``/v1/interauth/...`` is called by another city and
takes its verified signed request (:data:`cardsvc.api.deps.InterauthCaller`; an officer
token is never accepted there); ``/v1/persons/national-lookup`` is a registrar's search
across every other city of the federation."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cardsvc.api._context import AppContext
from cardsvc.api.deps import Ctx, InterauthCaller, roles
from cardsvc.api.routes._common import problems
from cardsvc.federation import transfer
from cardsvc.federation.interauth import InterauthClient
from cardsvc.federation.lookup import (
    CityAnswer,
    LookupQuery,
    LookupRateLimit,
    answer_lookup,
    audit_hash_key,
    known_elsewhere,
    national_lookup,
    record_lookup_sent,
)
from cardsvc.models import Officer
from cardsvc.roles import Role
from cardsvc.services import persons
from cardsvc.services.audit import Actor
from cardsvc.services.errors import Invalid, Unavailable
from cardsvc.services.interchange import interchange_signer, open_interauth_client
from cardsvc.services.persons import PassportDetails, PersonDetails
from schemas.credential import FOREIGNER_CODE_PATTERN

__all__ = ["enrolment_check", "officer_router", "router"]

router = APIRouter(prefix="/v1/interauth", tags=["between authorities"])
officer_router = APIRouter(prefix="/v1", tags=["persons"])


@router.post("/ping", responses=problems(401, 403, 503))
def ping(ctx: Ctx, caller: InterauthCaller) -> dict[str, Any]:
    """Who called, as this city verified it: a link check between two authorities."""
    return {"caller": caller.issuer, "callee": ctx.settings.issuer,
            "officer": caller.officer_id, "jti": caller.jti}


def _rate_limit(request: Request, per_minute: int) -> LookupRateLimit:
    limit = getattr(request.app.state, "lookup_rate_limit", None)
    if not isinstance(limit, LookupRateLimit):
        limit = LookupRateLimit(per_minute)
        request.app.state.lookup_rate_limit = limit
    return limit


@router.post("/person-lookups", responses=problems(401, 403, 422, 429, 503))
async def person_lookup(request: Request, ctx: Ctx, caller: InterauthCaller) -> dict[str, Any]:
    """Persons this city knows by a passport (exact) and/or by name + birth date +
    nationality (the enrolment matcher): the minimal answer, audited."""
    _rate_limit(request, ctx.settings.interauth_lookups_per_minute).take(
        caller.issuer, now=ctx.clock().timestamp())
    try:
        unverified = await request.json()
    except ValueError:
        unverified = None
    query = LookupQuery.from_payload(unverified)

    def work(session: Session) -> dict[str, Any]:
        hash_key = audit_hash_key(session, keyring=ctx.keyring)
        matches = answer_lookup(session, caller=caller, query=query,
                                own_city=ctx.settings.issuer, hash_key=hash_key,
                                now=ctx.clock())
        return {"city": ctx.settings.issuer, "matches": [m.to_payload() for m in matches]}

    return await run_in_threadpool(ctx.database.transact, work)


class PassportQueryIn(BaseModel):
    number: str = Field(pattern=r"^[A-Za-z0-9 -]{4,24}$")
    country: str = Field(pattern=r"^[A-Za-z]{3}$")


class PersonQueryIn(BaseModel):
    surname: str = Field(min_length=1, max_length=128)
    given_names: str = Field(default="", max_length=128)
    birth_date: date
    nationality: str = Field(pattern=r"^[A-Za-z]{3}$")


class NationalLookupIn(BaseModel):
    passport: PassportQueryIn | None = None
    person: PersonQueryIn | None = None


def client_or_none(ctx: AppContext) -> InterauthClient | None:
    """This city's interauth client (None: no federation held)."""
    return ctx.database.transact(lambda session: open_interauth_client(
        session, keyring=ctx.keyring, issuer=ctx.settings.issuer, http=ctx.http,
        now=ctx.clock(), clock=lambda: int(ctx.clock().timestamp())), readonly=True)


def ask_other_cities(
    ctx: AppContext, query: LookupQuery, officer_id: int, client: InterauthClient
) -> list[CityAnswer]:
    """Fan out to every other active city and audit what was sent."""
    answers = national_lookup(client=client, query=query, own_city=ctx.settings.issuer,
                              officer_id=officer_id,
                              timeout=ctx.settings.interauth_timeout_seconds)
    ctx.database.transact(lambda session: record_lookup_sent(
        session, answers=answers, query=query,
        hash_key=audit_hash_key(session, keyring=ctx.keyring),
        actor=Actor.for_officer_id(officer_id), now=ctx.clock()))
    return answers


def enrolment_check(
    ctx: AppContext, *, details: PersonDetails, passport: PassportDetails, officer_id: int
) -> list[dict[str, Any]]:
    """At enrolment with a federation held: the persons other cities know by this
    passport or this name + birth date + nationality (empty: none, or no federation, or
    the passport is known here already, which enrolment answers itself)."""
    client = client_or_none(ctx)
    if client is None:
        return []
    try:
        here = ctx.database.transact(lambda session: persons.passport_known(
            session, number=passport.number, country=passport.country), readonly=True)
    except Invalid:
        return []  # enrolment refuses it with its own code
    if here:
        return []
    try:
        query = LookupQuery.from_payload({
            "passport": {"number": passport.number, "country": passport.country},
            "person": {"surname": details.surname, "given_names": details.given_names,
                       "birth_date": details.birth_date.isoformat(),
                       "nationality": details.nationality}})
    except Invalid:
        return []  # enrolment refuses it with its own code
    return known_elsewhere(ask_other_cities(ctx, query, officer_id, client))


def run_national_lookup(
    ctx: AppContext, query: LookupQuery, officer: Officer
) -> list[dict[str, Any]]:
    """Fan out to every other active city, audit what was sent; the answers as JSON."""
    client = client_or_none(ctx)
    if client is None:
        raise Unavailable("FEDERATION_NOT_CONFIGURED", "this authority holds no federation"
                          " list: there is no other city to ask")
    answers = ask_other_cities(ctx, query, officer.id, client)
    return [answer.to_payload() for answer in answers]


@officer_router.post("/persons/national-lookup", responses=problems(401, 403, 422, 503))
def national_lookup_post(
    body: NationalLookupIn, ctx: Ctx,
    officer: Annotated[Officer, Depends(roles(Role.registrar))],
) -> dict[str, Any]:
    """Ask every other city whether it knows this person (by passport and/or by name +
    birth date + nationality); a city that does not answer in time is ``not_checked``."""
    query = LookupQuery.from_payload(body.model_dump(mode="json", exclude_none=True))
    return {"cities": run_national_lookup(ctx, query, officer)}


@officer_router.get("/persons/national-lookup", responses=problems(401, 403, 422, 503))
def national_lookup_get(
    ctx: Ctx, officer: Annotated[Officer, Depends(roles(Role.registrar))],
    passport: Annotated[str, Query(pattern=r"^[A-Za-z0-9 -]{4,24}$")],
    country: Annotated[str, Query(pattern=r"^[A-Za-z]{3}$")],
) -> dict[str, Any]:
    """The same by passport only, as a GET."""
    query = LookupQuery.from_payload({"passport": {"number": passport, "country": country}})
    return {"cities": run_national_lookup(ctx, query, officer)}


# --- transfers: the old city's side ------------------------------------------------------

async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


@router.post("/transfers", responses=problems(401, 403, 404, 409, 422, 503))
async def transfer_prepare(request: Request, ctx: Ctx, caller: InterauthCaller
                           ) -> dict[str, Any]:
    """Step 1 (docs/FEDERATION.md): the person becomes ``transfer_pending`` here; the
    answer is the person bundle signed by this city's interchange key. Idempotent by id."""
    unverified = await _json_body(request)

    def work(session: Session) -> dict[str, Any]:
        now = ctx.clock()
        signer = interchange_signer(session, keyring=ctx.keyring, issuer=ctx.settings.issuer,
                                    now=now)
        return {"bundle": transfer.prepare_outgoing(
            session, caller=caller, unverified_body=unverified, own_city=ctx.settings.issuer,
            signer=signer, now=now)}

    return await run_in_threadpool(ctx.database.transact, work)


@router.post("/transfers/{transfer_id}/commit", responses=problems(401, 403, 404, 409, 503))
def transfer_commit(transfer_id: str, ctx: Ctx, caller: InterauthCaller) -> dict[str, Any]:
    """Step 3: every card of the person revoked (reason ``transferred``), the person
    ``moved`` to the calling city. Idempotent."""
    return ctx.database.transact(lambda session: transfer.commit_outgoing(
        session, caller=caller, transfer_id=transfer_id, now=ctx.clock()))


@router.delete("/transfers/{transfer_id}", responses=problems(401, 403, 404, 409, 503))
def transfer_abort(transfer_id: str, ctx: Ctx, caller: InterauthCaller) -> dict[str, Any]:
    """Before the commit: ``transfer_pending`` is cleared. Idempotent."""
    return ctx.database.transact(lambda session: transfer.abort_outgoing(
        session, caller=caller, transfer_id=transfer_id, now=ctx.clock()))


# --- transfers: the new city's side (officers) -------------------------------------------

class TransferIn(BaseModel):
    from_city: str = Field(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,8}){1,3}$")
    foreigner_code: str = Field(pattern=FOREIGNER_CODE_PATTERN)
    transfer_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{8,64}$",
                                    description="choose one to retry safely; default: new")


def _client(ctx: AppContext) -> InterauthClient:
    client = client_or_none(ctx)
    if client is None:
        raise Unavailable("FEDERATION_NOT_CONFIGURED", "this authority holds no federation"
                          " list: there is no other city")
    return client


@officer_router.post("/persons/transfers", responses=problems(401, 403, 409, 422, 503))
def transfer_person(
    body: TransferIn, ctx: Ctx, officer: Annotated[Officer, Depends(roles(Role.registrar))],
) -> dict[str, Any]:
    """Move a person known in ``from_city`` here under the same foreigner code: prepare,
    create, commit (the old city's cards end ``transferred``). 503
    TRANSFER_PEER_UNREACHABLE names the ``transfer_id`` to retry with."""
    outcome = transfer.run_transfer(
        ctx.database, client=_client(ctx), own_city=ctx.settings.issuer,
        transfer_id=body.transfer_id, from_city=body.from_city,
        foreigner_code=body.foreigner_code, officer_id=officer.id, clock=ctx.clock,
        timeout=ctx.settings.interauth_timeout_seconds)
    return outcome.to_payload()


@officer_router.delete("/persons/transfers/{transfer_id}",
                       responses=problems(401, 403, 404, 409, 503))
def abort_transfer(
    transfer_id: str, ctx: Ctx, officer: Annotated[Officer, Depends(roles(Role.registrar))],
) -> dict[str, Any]:
    """Abort a transfer before its commit, on both sides."""
    return transfer.run_abort(ctx.database, client=_client(ctx), transfer_id=transfer_id,
                              officer_id=officer.id, clock=ctx.clock,
                              timeout=ctx.settings.interauth_timeout_seconds).to_payload()
