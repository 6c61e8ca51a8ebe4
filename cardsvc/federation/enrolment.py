"""What an enrolment asks other cities (P10): "known in CN-YW" before a new person is
made here, for the API's ``POST /v1/persons`` and the console alike. It needs only what
an app context holds (settings, database, keys, the outgoing HTTP client, the clock).

Example::

    elsewhere = enrolment_check(ctx, details=details, passport=passport, officer_id=7)
    # [{"city": "CN-YW", "foreigner_code": "...", "matched_by": "passport", ...}]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import httpx

from cardsvc.db import Database
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
from cardsvc.services.errors import Invalid, Unavailable
from cardsvc.services.interchange import open_interauth_client
from cardsvc.services.persons import PassportDetails, PersonDetails
from cardsvc.services.trust import Keyring
from cardsvc.settings import Settings

__all__ = ["AuthorityContext", "ask_other_cities", "client_or_none", "enrolment_check"]

_log = logging.getLogger(__name__)


class AuthorityContext(Protocol):
    """The parts of ``cardsvc.api.AppContext`` used here."""

    @property
    def settings(self) -> Settings: ...

    @property
    def database(self) -> Database: ...

    @property
    def keyring(self) -> Keyring: ...

    @property
    def http(self) -> httpx.Client: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...


def client_or_none(ctx: AuthorityContext) -> InterauthClient | None:
    """This city's interauth client (None: no federation held)."""
    return ctx.database.transact(lambda session: open_interauth_client(
        session, keyring=ctx.keyring, issuer=ctx.settings.issuer, http=ctx.http,
        now=ctx.clock(), clock=lambda: int(ctx.clock().timestamp())), readonly=True)


def ask_other_cities(
    ctx: AuthorityContext, query: LookupQuery, officer_id: int, client: InterauthClient
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
    ctx: AuthorityContext, *, details: PersonDetails, passport: PassportDetails, officer_id: int
) -> list[dict[str, Any]]:
    """At enrolment with a federation held: the persons other cities know by this
    passport or this name + birth date + nationality (empty: none, or no federation, or
    the passport is known here already, which enrolment answers itself)."""
    try:
        client = client_or_none(ctx)
    except Unavailable as error:
        if error.code != "INTERAUTH_NO_KEY":
            raise
        # The national list does not name this city's interchange key yet (a new city, or
        # a rotation not yet published): the city cannot ask, and must not stop enrolling.
        _log.warning("enrolment not checked with other cities: %s", error.code)
        return []
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
