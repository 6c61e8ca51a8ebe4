"""The national side of enrolment (P10): ask every other city of the federation whether
it knows this person, and audit what was asked.

A module of its own, apart from the routes, because both the API's and the console's
enrolment call it (the console importing a route module would import the whole API).

Example::

    elsewhere = enrolment_check(ctx, details=details, passport=passport, officer_id=7)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cardsvc.federation.interauth import InterauthClient
from cardsvc.federation.lookup import (
    CityAnswer,
    LookupQuery,
    audit_hash_key,
    known_elsewhere,
    national_lookup,
    record_lookup_sent,
)
from cardsvc.services import persons
from cardsvc.services.audit import Actor
from cardsvc.services.errors import Invalid
from cardsvc.services.interchange import open_interauth_client
from cardsvc.services.persons import PassportDetails, PersonDetails

if TYPE_CHECKING:
    from cardsvc.api._context import AppContext

__all__ = ["ask_other_cities", "client_or_none", "enrolment_check"]


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
