"""Finding a person known in another city (P10, docs/FEDERATION.md "Lookup").

The receiving city answers ``POST /v1/interauth/person-lookups`` by passport (number +
issuing country, exact, any past or present passport) and/or by name + birth date +
nationality (the enrolment matcher), with a minimal answer: foreigner code, names,
birth date, nationality, portrait digest, the city holding the person now and the state.
Both sides append to their audit chain (``interauth.lookup.received`` / ``.sent``) with
the caller, officer, ``jti`` and keyed hashes of query and answer: never a passport
number in clear. The keyed hash uses a secret derived from the city's first interchange
key (a deterministic Ed25519 signature), so no other party can test guesses against the
log.

Example::

    query = LookupQuery.from_payload({"passport": {"number": "A123", "country": "NGA"}})
    answers = national_lookup(client=client, query=query, own_city="CN-HZ", officer_id=7,
                              timeout=3.0)      # one CityAnswer per other active city
    [a.status for a in answers]                 # ["answered"] or ["not_checked"], ...
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc._countries import is_country
from cardsvc.federation.interauth import InterauthClaims, InterauthClient, peer_code
from cardsvc.models import InterchangeKeyRecord
from cardsvc.services import _validate as check
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.errors import Invalid, NotFound, TooManyRequests, Unavailable
from cardsvc.services.persons import (
    PersonDetails,
    find_by_passport,
    get_person,
    likely_duplicates,
)
from cardsvc.services.trust import Keyring
from schemas._jose import b64url_encode, dump_json
from schemas.credential import FOREIGNER_CODE_PATTERN, PORTRAIT_DIGEST_PATTERN
from schemas.federation import IssuerState
from schemas.text import has_hidden_characters

__all__ = [
    "LOOKUP_PATH",
    "CityAnswer",
    "LookupMatch",
    "LookupQuery",
    "LookupRateLimit",
    "answer_lookup",
    "audit_hash_key",
    "keyed_hash",
    "known_elsewhere",
    "national_lookup",
    "record_lookup_sent",
]

LOOKUP_PATH = "/v1/interauth/person-lookups"
MAX_MATCHES = 20


def audit_hash_key(session: Session, *, keyring: Keyring) -> bytes:
    """This city's secret for keyed hashes in its audit log: derived from its first
    interchange key (a deterministic signature), so it is stable across rotations, never
    stored, and available while the root stays offline."""
    first = session.scalar(select(InterchangeKeyRecord.kid)
                           .order_by(InterchangeKeyRecord.seq))
    if first is None:
        raise Unavailable("INTERAUTH_NO_KEY", "this authority has no interchange key; run"
                          " cardsvc keys rotate-interchange")
    return hashlib.sha256(keyring.signer(first).sign(b"fmc audit keyed hash v1")).digest()


def keyed_hash(key: bytes, value: bytes) -> str:
    return b64url_encode(hmac.new(key, value, hashlib.sha256).digest()[:16])


@dataclass(frozen=True, slots=True)
class LookupQuery:
    """By passport, by name + birth date + nationality, or both (one round trip)."""

    passport_number: str | None = None
    passport_country: str | None = None
    surname: str | None = None
    given_names: str = ""
    birth_date: date | None = None
    nationality: str | None = None

    @property
    def by_passport(self) -> bool:
        return self.passport_number is not None

    @property
    def by_name(self) -> bool:
        return self.surname is not None

    @property
    def kind(self) -> str:
        return "+".join(k for k, on in (("passport", self.by_passport),
                                        ("name", self.by_name)) if on)

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if self.by_passport:
            payload["passport"] = {"number": self.passport_number,
                                   "country": self.passport_country}
        if self.by_name:
            assert self.birth_date is not None
            payload["person"] = {"surname": self.surname, "given_names": self.given_names,
                                 "birth_date": self.birth_date.isoformat(),
                                 "nationality": self.nationality}
        return payload

    @staticmethod
    def from_payload(unverified: Any) -> LookupQuery:
        """Cleaned as enrolment cleans them; anything else is LOOKUP_INVALID (422)."""
        if not isinstance(unverified, Mapping) or not set(unverified) <= {"passport", "person"} \
                or not unverified:
            raise Invalid("LOOKUP_INVALID", "a lookup names a passport and/or a person")
        try:
            number = country = surname = nationality = None
            given, birth = "", None
            passport, person = unverified.get("passport"), unverified.get("person")
            if passport is not None:
                if not isinstance(passport, Mapping) or set(passport) != {"number", "country"}:
                    raise Invalid("LOOKUP_INVALID", "passport is {number, country}")
                number = check.clean_passport_number(_text(passport["number"]))
                country = check.country(_text(passport["country"]).upper(),
                                        field="passport country")
            if person is not None:
                if not isinstance(person, Mapping) or set(person) != {
                        "surname", "given_names", "birth_date", "nationality"}:
                    raise Invalid("LOOKUP_INVALID", "person is {surname, given_names,"
                                  " birth_date, nationality}")
                surname = check.clean_name(_text(person["surname"]), field="surname")
                given = check.clean_name(_text(person["given_names"]), field="given_names",
                                         allow_empty=True)
                nationality = check.country(_text(person["nationality"]).upper(),
                                            field="nationality")
                birth = date.fromisoformat(_text(person["birth_date"]))
        except (ValueError, TypeError) as exc:
            raise Invalid("LOOKUP_INVALID", "a lookup field is not valid") from exc
        except Invalid as error:
            raise Invalid("LOOKUP_INVALID", error.detail) from None
        return LookupQuery(number, country, surname, given, birth, nationality)


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise TypeError("text expected")
    return value


@dataclass(frozen=True, slots=True)
class LookupMatch:
    """The minimal answer about one person (full history comes only with a transfer)."""

    foreigner_code: str
    surname: str
    given_names: str
    birth_date: str  # ISO date
    nationality: str
    portrait_digest: str | None
    holding_city: str  # who holds the person now
    state: str  # active | transfer_pending | moved
    matched_by: str  # passport | name
    score: float

    def to_payload(self) -> dict[str, Any]:
        return {"foreigner_code": self.foreigner_code, "surname": self.surname,
                "given_names": self.given_names, "birth_date": self.birth_date,
                "nationality": self.nationality, "portrait_digest": self.portrait_digest,
                "holding_city": self.holding_city, "state": self.state,
                "matched_by": self.matched_by, "score": self.score}

    @staticmethod
    def from_payload(unverified: Any, *, cities: frozenset[str]) -> LookupMatch:
        """Another city's answer about one person, each value checked as this city would
        hold it (the answering city says who it is, not that its data is sound): a
        foreigner code, names as every verifier reads them, a date, a country, a city of
        the federation (``cities``), a known state and match kind, a digest's shape, a
        score from 0 to 100. ValueError otherwise."""
        if not isinstance(unverified, Mapping):
            raise ValueError("a match is an object")
        texts = ("foreigner_code", "surname", "given_names", "birth_date", "nationality",
                 "holding_city", "state", "matched_by")
        if not all(isinstance(unverified.get(k), str) and len(unverified[k]) <= 200
                   for k in texts):
            raise ValueError("a match lacks a field")
        digest, score = unverified.get("portrait_digest"), unverified.get("score")
        if (digest is not None and not (isinstance(digest, str) and _DIGEST.match(digest))) \
                or not isinstance(score, int | float) or isinstance(score, bool) \
                or not 0 <= score <= 100:  # NaN and infinities too
            raise ValueError("bad portrait digest or score")
        if not _FOREIGNER_CODE.match(unverified["foreigner_code"]) \
                or any(len(unverified[k]) > 128 or has_hidden_characters(unverified[k])
                       for k in ("surname", "given_names")) \
                or not is_country(unverified["nationality"]) \
                or unverified["holding_city"] not in cities \
                or unverified["state"] not in _STATES \
                or unverified["matched_by"] not in _MATCHED_BY:
            raise ValueError("a match holds a value this city would not")
        date.fromisoformat(unverified["birth_date"])  # ValueError when it is not a date
        return LookupMatch(
            unverified["foreigner_code"], unverified["surname"], unverified["given_names"],
            unverified["birth_date"], unverified["nationality"], digest,
            unverified["holding_city"], unverified["state"], unverified["matched_by"],
            float(score))


_FOREIGNER_CODE = re.compile(FOREIGNER_CODE_PATTERN)
_DIGEST = re.compile(PORTRAIT_DIGEST_PATTERN)
_STATES = frozenset({"active", "transfer_pending", "moved"})
_MATCHED_BY = frozenset({"passport", "name"})


class LookupRateLimit:
    """At most ``per_minute`` lookups per calling city in any 60 s (per process)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, caller: str, *, now: float) -> None:
        with self._lock:
            seen = self._seen.setdefault(caller, deque())
            while seen and seen[0] <= now - 60:
                seen.popleft()
            if len(seen) >= self.per_minute:
                raise TooManyRequests("INTERAUTH_RATE_LIMITED",
                                      f"{caller} made {self.per_minute} lookups this minute")
            seen.append(now)


def _query_hash(query: LookupQuery, key: bytes) -> str:
    return keyed_hash(key, dump_json(query.to_payload()))


def answer_lookup(
    session: Session, *, caller: InterauthClaims, query: LookupQuery, own_city: str,
    hash_key: bytes, now: datetime,
) -> list[LookupMatch]:
    """The persons this city knows that match, audited as ``interauth.lookup.received``."""
    found: dict[str, LookupMatch] = {}
    if query.by_passport:
        assert query.passport_number is not None and query.passport_country is not None
        try:
            person = find_by_passport(session, number=query.passport_number,
                                      country=query.passport_country)
        except NotFound:
            pass
        else:
            found[person.foreigner_code] = _match(person, own_city, "passport", 100.0)
    if query.by_name:
        assert query.surname is not None and query.birth_date is not None
        assert query.nationality is not None
        details = PersonDetails(query.surname, query.given_names, query.nationality,
                                query.birth_date, "X")
        for candidate in likely_duplicates(session, details=details):
            if candidate.foreigner_code not in found:
                person = get_person(session, foreigner_code=candidate.foreigner_code)
                found[person.foreigner_code] = _match(person, own_city, "name",
                                                      round(candidate.score, 1))
    matches = list(found.values())[:MAX_MATCHES]
    append_audit(session, actor=Actor(f"city:{caller.issuer}"),
                 action="interauth.lookup.received", subject=caller.issuer, details={
                     "caller": caller.issuer, "officer": caller.officer_id, "jti": caller.jti,
                     "reason": caller.reason, "query": query.kind,
                     "query_hash": _query_hash(query, hash_key),
                     "answer_hash": keyed_hash(hash_key, dump_json(
                         [m.to_payload() for m in matches])),
                     "matches": [m.foreigner_code for m in matches]}, now=now)
    return matches


def _match(person: Any, own_city: str, matched_by: str, score: float) -> LookupMatch:
    state = getattr(person, "state", "active") or "active"
    holding = person.moved_to if state == "moved" and person.moved_to else own_city
    return LookupMatch(person.foreigner_code, person.surname, person.given_names,
                       person.birth_date.isoformat(), person.nationality,
                       person.portrait_digest, holding, state, matched_by, score)


@dataclass(slots=True)
class CityAnswer:
    """What one other city said: ``answered`` (maybe no match), ``not_checked`` (no
    answer in time) or ``refused`` (it answered with a problem ``code``)."""

    city: str
    status: str
    matches: list[LookupMatch] = field(default_factory=list)
    code: str | None = None
    jti: str | None = None
    answer_sha256: str | None = None

    def to_payload(self) -> dict[str, Any]:
        return {"city": self.city, "status": self.status, "code": self.code,
                "matches": [m.to_payload() for m in self.matches]}


def _ask(client: InterauthClient, city: str, query: LookupQuery, officer_id: int | None,
         timeout: float) -> CityAnswer:
    try:
        response = client.post(city, LOOKUP_PATH, query.to_payload(), reason="person lookup",
                               officer_id=officer_id, timeout=timeout)
    except httpx.HTTPError:
        return CityAnswer(city, "not_checked")
    jti = response.request.extensions.get("interauth_jti")
    digest = b64url_encode(hashlib.sha256(response.content).digest())
    if response.status_code != 200:
        return CityAnswer(city, "refused", code=peer_code(response), jti=jti,
                          answer_sha256=digest)
    try:
        body = response.json()
    except ValueError:
        body = None
    cities = frozenset(entry.code for entry in client.federation.issuers)
    try:
        if not isinstance(body, dict) or not isinstance(body.get("matches"), list):
            raise ValueError("no matches")
        matches = [LookupMatch.from_payload(m, cities=cities)
                   for m in body["matches"][:MAX_MATCHES]]
    except ValueError:
        return CityAnswer(city, "refused", code="BAD_ANSWER", jti=jti, answer_sha256=digest)
    return CityAnswer(city, "answered", matches, jti=jti, answer_sha256=digest)


def national_lookup(
    *, client: InterauthClient, query: LookupQuery, own_city: str, officer_id: int | None,
    timeout: float,
) -> list[CityAnswer]:
    """Ask every other active city with interchange keys, in parallel, each within
    ``timeout``; in the federation list's order."""
    cities = [entry.code for entry in client.federation.issuers
              if entry.code != own_city and entry.state is IssuerState.ACTIVE
              and entry.interchange_keys]
    if not cities:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(cities))) as pool:
        futures = [pool.submit(_ask, client, city, query, officer_id, timeout)
                   for city in cities]
        return [future.result() for future in futures]


def record_lookup_sent(
    session: Session, *, answers: list[CityAnswer], query: LookupQuery, hash_key: bytes,
    actor: Actor, now: datetime,
) -> None:
    """One ``interauth.lookup.sent`` entry per city asked (also when it did not answer)."""
    query_hash = _query_hash(query, hash_key)
    for answer in answers:
        append_audit(session, actor=actor, action="interauth.lookup.sent",
                     subject=answer.city, details={
                         "callee": answer.city, "jti": answer.jti, "query": query.kind,
                         "query_hash": query_hash, "status": answer.status,
                         "code": answer.code, "answer_sha256": answer.answer_sha256,
                         "matches": [m.foreigner_code for m in answer.matches]}, now=now)


def known_elsewhere(answers: list[CityAnswer]) -> list[dict[str, Any]]:
    """The matches other cities reported, each with the city that answered (what an
    enrolment shows as "known in CN-YW")."""
    return [{"city": answer.city, **match.to_payload()}
            for answer in answers if answer.status == "answered"
            for match in answer.matches]
