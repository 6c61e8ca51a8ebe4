"""Moving a person from one city to another (P10, docs/FEDERATION.md "Transfer").

The new city (say Hangzhou) drives it, idempotent by a ``transfer_id`` it chooses and
keeps in its outbox (``person_transfers``, direction ``in``):

1. *prepare*: ``POST {old}/v1/interauth/transfers`` -> the old city marks the person
   ``transfer_pending`` (no new card there) and answers a **person bundle** signed by its
   interchange key (``fmc-person-bundle+jwt``): code, names, passport history, portrait,
   its audit head. The same id again answers the same bundle.
2. the new city verifies the bundle against the federation list it holds and creates the
   person under **the same foreigner code** (no allocator), ``transfer_pending``: no card.
3. *commit*: ``POST {old}/v1/interauth/transfers/{id}/commit`` -> the old city revokes
   every card with reason ``transferred`` and marks the person ``moved`` (to the new
   city); the new city then marks its person ``active``: it may issue cards.

At no time are both cities' cards valid. A lost answer is retried with the same id (every
step is idempotent); ``DELETE .../transfers/{id}`` before the commit aborts on both sides.
Both audit chains record each step.

Example::

    outcome = run_transfer(database, client=client, own_city="CN-HZ",
                           transfer_id=None, from_city="CN-YW", foreigner_code=code,
                           officer_id=7, clock=clock, timeout=3.0)
    outcome.state        # "committed"
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import httpx
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.federation.interauth import (
    InterauthClaims,
    InterauthClient,
    answer_object,
    peer_code,
)
from cardsvc.models import AuditHead, Passport, Person, PersonTransfer, Portrait
from cardsvc.services import _validate as check
from cardsvc.services._foreigner_code import get_person
from cardsvc.services._locking import for_update
from cardsvc.services._names import name_key
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.cards import change_card_state
from cardsvc.services.errors import Conflict, DomainError, Invalid, NotFound, Unavailable
from cardsvc.services.persons import PassportDetails, PersonDetails
from cardsvc.services.portraits import NormalizedPortrait, check_normalized_portrait
from keys.ed25519 import Signer, verify_signature
from keys.jws import sign_compact
from schemas._jose import (
    ALG_ED25519,
    check_header,
    dump_json,
    parse_json_object,
    split_compact,
)
from schemas.codes import FmcError
from schemas.credential import CARD_NUMBER_PATTERN, FOREIGNER_CODE_PATTERN
from schemas.federation import FederationClaims, IssuerState
from schemas.trust_list import KeyState

__all__ = [
    "BUNDLE_TYP",
    "TRANSFERRED",
    "MovedPerson",
    "TransferOutcome",
    "abort_outgoing",
    "commit_outgoing",
    "moved_person",
    "prepare_outgoing",
    "run_abort",
    "run_transfer",
    "verify_person_bundle",
]

BUNDLE_TYP = "fmc-person-bundle+jwt"
TRANSFERRED = "transferred"  # the reason every card of a moved person is revoked with
TRANSFERS_PATH = "/v1/interauth/transfers"
_TRANSFER_ID = r"^[A-Za-z0-9_-]{8,64}$"
_CARD_NUMBER = re.compile(CARD_NUMBER_PATTERN)
_MAX_PASSPORTS = 100  # a lifetime of passport changes, with room to spare
_MAX_PORTRAIT_BYTES = 1 << 20  # a normalized portrait is 480 x 640 at most: ~30-60 KB


def _check_transfer_id(unverified: str) -> str:
    if not isinstance(unverified, str) or not re.match(_TRANSFER_ID, unverified):
        raise Invalid("TRANSFER_INVALID", "a transfer id is 8 to 64 URL-safe characters")
    return unverified


def _check_code(unverified: Any) -> str:
    if not isinstance(unverified, str) or not re.match(FOREIGNER_CODE_PATTERN, unverified):
        raise Invalid("TRANSFER_INVALID", "not a foreigner code")
    return unverified


# --- the old city: answers prepare, commit, abort -----------------------------------------

def _transfer(session: Session, transfer_id: str) -> PersonTransfer | None:
    return session.execute(for_update(select(PersonTransfer).where(
        PersonTransfer.transfer_id == transfer_id))).scalar_one_or_none()


def _bundle_payload(session: Session, person: Person, *, transfer_id: str, own_city: str,
                    to_city: str, now: datetime) -> dict[str, Any]:
    portrait = None if person.portrait_digest is None else session.get(
        Portrait, person.portrait_digest)
    head = session.get(AuditHead, 1)
    return {
        "transfer_id": transfer_id, "from": own_city, "to": to_city,
        "iat": int(now.timestamp()),
        "person": {
            "foreigner_code": person.foreigner_code, "surname": person.surname,
            "given_names": person.given_names, "nationality": person.nationality,
            "birth_date": person.birth_date.isoformat(), "sex": person.sex,
            "portrait_digest": person.portrait_digest,
            "portrait": None if portrait is None else {
                "jpeg": base64.b64encode(portrait.jpeg).decode("ascii"),
                "width": portrait.width, "height": portrait.height},
            "passports": [{"number": p.number, "country": p.country,
                           "expires": p.expires.isoformat(), "current": p.is_current,
                           "surname": p.surname, "given_names": p.given_names}
                          for p in person.passports],
        },
        "audit_head": None if head is None else {"seq": head.seq, "hash": head.hash},
    }


def prepare_outgoing(
    session: Session, *, caller: InterauthClaims, unverified_body: Any, own_city: str,
    signer: Signer, now: datetime,
) -> str:
    """Step 1 at the old city: the person becomes ``transfer_pending``; the signed bundle.
    The same id from the same city again returns the same bundle."""
    if not isinstance(unverified_body, dict) or set(unverified_body) != {
            "transfer_id", "foreigner_code"}:
        raise Invalid("TRANSFER_INVALID", "a prepare names transfer_id and foreigner_code")
    transfer_id = _check_transfer_id(unverified_body["transfer_id"])
    code = _check_code(unverified_body["foreigner_code"])
    existing = _transfer(session, transfer_id)
    if existing is not None:
        if (existing.direction, existing.peer_city, existing.foreigner_code) != (
                "out", caller.issuer, code):
            raise Conflict("TRANSFER_ID_CONFLICT", "this transfer id names another transfer")
        if existing.state == "aborted":
            raise Conflict("TRANSFER_ABORTED", "this transfer was aborted")
        assert existing.bundle is not None
        return existing.bundle
    person = get_person(session, foreigner_code=code, lock=True)
    if person.state == "moved":
        raise Conflict("PERSON_MOVED", f"this person moved to {person.moved_to}",
                       holding_city=person.moved_to)
    if person.state == "transfer_pending":
        raise Conflict("TRANSFER_PENDING", "another transfer of this person is under way")
    person.state, person.updated_at = "transfer_pending", now
    payload = _bundle_payload(session, person, transfer_id=transfer_id, own_city=own_city,
                              to_city=caller.issuer, now=now)
    bundle = sign_compact({"alg": ALG_ED25519, "typ": BUNDLE_TYP, "kid": signer.kid},
                          dump_json(payload), signer)
    session.add(PersonTransfer(transfer_id=transfer_id, direction="out",
                               peer_city=caller.issuer, foreigner_code=code,
                               person_id=person.id, state="prepared", bundle=bundle,
                               officer_id=caller.officer_id, created_at=now, updated_at=now))
    session.flush()
    _audit_received(session, caller, "prepared", transfer_id, code, now=now)
    return bundle


def commit_outgoing(
    session: Session, *, caller: InterauthClaims, transfer_id: str, now: datetime
) -> dict[str, Any]:
    """Step 3 at the old city: every card revoked (``transferred``), the person ``moved``."""
    transfer = _own_transfer(session, caller, transfer_id)
    if transfer.state == "aborted":
        raise Conflict("TRANSFER_ABORTED", "this transfer was aborted")
    person = get_person(session, foreigner_code=transfer.foreigner_code, lock=True)
    if transfer.state == "prepared":
        actor = Actor(f"city:{caller.issuer}")
        for card in person.cards:
            if card.state != "revoked":
                change_card_state(session, card_number=card.card_number, action="revoke",
                                  reason=TRANSFERRED, actor=actor, now=now)
        person.state, person.moved_to, person.updated_at = "moved", caller.issuer, now
        transfer.state, transfer.updated_at = "committed", now
        session.flush()
        _audit_received(session, caller, "committed", transfer_id, person.foreigner_code,
                        now=now)
    return {"transfer_id": transfer_id, "state": "committed",
            "foreigner_code": person.foreigner_code, "holding_city": caller.issuer,
            "revoked_cards": [c.card_number for c in person.cards
                              if c.state_reason == TRANSFERRED]}


def abort_outgoing(
    session: Session, *, caller: InterauthClaims, transfer_id: str, now: datetime
) -> dict[str, Any]:
    """Before the commit: the person is ``active`` here again. After it: TRANSFER_COMMITTED."""
    transfer = _own_transfer(session, caller, transfer_id)
    if transfer.state == "committed":
        raise Conflict("TRANSFER_COMMITTED", "this transfer was committed; it cannot be aborted")
    if transfer.state == "prepared":
        person = get_person(session, foreigner_code=transfer.foreigner_code, lock=True)
        person.state, person.updated_at = "active", now
        transfer.state, transfer.updated_at = "aborted", now
        session.flush()
        _audit_received(session, caller, "aborted", transfer_id, person.foreigner_code,
                        now=now)
    return {"transfer_id": transfer_id, "state": "aborted"}


def _own_transfer(session: Session, caller: InterauthClaims, transfer_id: str
                  ) -> PersonTransfer:
    transfer = _transfer(session, _check_transfer_id(transfer_id))
    if transfer is None or transfer.direction != "out" or transfer.peer_city != caller.issuer:
        raise NotFound("TRANSFER_NOT_FOUND", "no such transfer from this city")
    return transfer


def _audit_received(session: Session, caller: InterauthClaims, step: str, transfer_id: str,
                    code: str, *, now: datetime) -> None:
    append_audit(session, actor=Actor(f"city:{caller.issuer}"),
                 action=f"interauth.transfer.{step}", subject=code,
                 details={"direction": "out", "to": caller.issuer, "transfer_id": transfer_id,
                          "officer": caller.officer_id, "jti": caller.jti}, now=now)


# --- the new city: verifies the bundle, keeps the outbox, drives the steps ----------------

def verify_person_bundle(
    unverified_jwt: str, *, federation: FederationClaims, from_city: str, to_city: str,
    transfer_id: str,
) -> dict[str, Any]:
    """The bundle's payload if the old city's interchange key signed it for this transfer."""
    try:
        signing_input, header_bytes, payload_bytes, signature = split_compact(unverified_jwt)
        header = parse_json_object(header_bytes)
        check_header(header, expected_typ=BUNDLE_TYP,
                     allowed_members=frozenset({"alg", "typ", "kid"}), require_kid=True)
    except FmcError as error:
        raise Invalid("TRANSFER_BUNDLE_INVALID", error.detail) from None
    entry = federation.issuers_by_code.get(from_city)
    key = None if entry is None else entry.interchange_keys_by_kid.get(header["kid"])
    if entry is None or key is None or key.state is KeyState.COMPROMISED or \
            entry.state is not IssuerState.ACTIVE:
        raise Invalid("TRANSFER_BUNDLE_INVALID", "not signed by an interchange key of "
                      f"{from_city}")
    if not verify_signature(key.public_key, signing_input, signature):
        raise Invalid("TRANSFER_BUNDLE_INVALID", "the bundle's signature does not verify")
    try:
        payload = parse_json_object(payload_bytes)
    except FmcError as error:
        raise Invalid("TRANSFER_BUNDLE_INVALID", error.detail) from None
    if (payload.get("transfer_id"), payload.get("from"), payload.get("to")) != (
            transfer_id, from_city, to_city) or not isinstance(payload.get("person"), dict):
        raise Invalid("TRANSFER_BUNDLE_INVALID", "the bundle is for another transfer")
    return payload


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    transfer_id: str
    state: str  # preparing | prepared | committed | aborted
    from_city: str
    foreigner_code: str

    def to_payload(self) -> dict[str, Any]:
        return {"transfer_id": self.transfer_id, "state": self.state,
                "from_city": self.from_city, "foreigner_code": self.foreigner_code}


def _outcome(row: PersonTransfer) -> TransferOutcome:
    return TransferOutcome(row.transfer_id, row.state, row.peer_city, row.foreigner_code)


def _start(session: Session, *, transfer_id: str, from_city: str, code: str,
           officer_id: int, own_city: str, federation: FederationClaims | None,
           now: datetime) -> TransferOutcome:
    row = _transfer(session, transfer_id)
    if row is not None:
        if (row.direction, row.peer_city, row.foreigner_code) != ("in", from_city, code):
            raise Conflict("TRANSFER_ID_CONFLICT", "this transfer id names another transfer")
        return _outcome(row)
    if from_city == own_city:
        raise Invalid("TRANSFER_INVALID", "a person moves here from another city")
    entry = None if federation is None else federation.issuers_by_code.get(from_city)
    if entry is None or entry.state is not IssuerState.ACTIVE:
        raise Invalid("TRANSFER_INVALID", f"{from_city} is not an active city")
    if session.scalar(select(Person.id).where(Person.foreigner_code == code)) is not None:
        raise Conflict("PERSON_EXISTS", "a person with this foreigner code is already here")
    session.add(PersonTransfer(transfer_id=transfer_id, direction="in", peer_city=from_city,
                               foreigner_code=code, person_id=None, state="preparing",
                               bundle=None, officer_id=officer_id, created_at=now,
                               updated_at=now))
    session.flush()
    append_audit(session, actor=Actor.for_officer_id(officer_id),
                 action="interauth.transfer.started", subject=code,
                 details={"direction": "in", "from": from_city, "transfer_id": transfer_id},
                 now=now)
    return TransferOutcome(transfer_id, "preparing", from_city, code)


@dataclass(frozen=True, slots=True)
class MovedPassport:
    passport: PassportDetails
    current: bool
    surname: str  # as printed in this passport
    given_names: str


@dataclass(frozen=True, slots=True)
class MovedPerson:
    """A bundle's person, every value checked here as this city checks its own."""

    foreigner_code: str
    details: PersonDetails
    portrait: NormalizedPortrait | None
    passports: tuple[MovedPassport, ...]


def _field(unverified: Any, key: str, kind: type[Any]) -> Any:
    value = unverified.get(key) if isinstance(unverified, dict) else None
    if type(value) is not kind:
        raise Invalid("TRANSFER_BUNDLE_INVALID", f"the bundle's {key} is not a {kind.__name__}")
    return value


def _day(unverified: Any, key: str) -> date:
    try:
        return date.fromisoformat(_field(unverified, key, str))
    except ValueError:
        raise Invalid("TRANSFER_BUNDLE_INVALID", f"the bundle's {key} is not a date") from None


def _printed(unverified: Any, key: str, *, allow_empty: bool) -> str:
    # The rule every verifier applies to a signed name (no hidden characters, 128 at most),
    # not this city's stricter typing rule: a name the old city enrolled before that rule
    # still moves with its holder.
    return check.clean_text(_field(unverified, key, str), field=key, max_len=128,
                            allow_empty=allow_empty)


def moved_person(unverified_person: Any, *, today: date) -> MovedPerson:
    """The person of a bundle another city signed, checked as an enrolment here is (names
    as every verifier reads them, countries, dates, sex, passport numbers, one current
    passport among at most 100, a portrait decoded under this city's limits whose digest
    is computed here). The old city's signature says who sent it, not that it is sound:
    a city with a bug or a thief of its key must not write what this city would refuse.
    Invalid TRANSFER_BUNDLE_INVALID, naming the first value refused."""
    try:
        passports = _field(unverified_person, "passports", list)
        if not 1 <= len(passports) <= _MAX_PASSPORTS:
            raise Invalid("TRANSFER_BUNDLE_INVALID",
                          f"a person moves with 1 to {_MAX_PASSPORTS} passports")
        history = tuple(MovedPassport(
            PassportDetails(check.clean_passport_number(_field(p, "number", str)),
                            check.country(_field(p, "country", str), field="passport country"),
                            _day(p, "expires")), _field(p, "current", bool),
            _printed(p, "surname", allow_empty=False),
            _printed(p, "given_names", allow_empty=True)) for p in passports)
        if sum(p.current for p in history) != 1:
            raise Invalid("TRANSFER_BUNDLE_INVALID", "a person moves with one current passport")
        portrait = None
        unverified_portrait = unverified_person.get("portrait")
        if unverified_portrait is not None:
            try:
                jpeg = base64.b64decode(_field(unverified_portrait, "jpeg", str), validate=True)
            except ValueError:
                raise Invalid("TRANSFER_BUNDLE_INVALID", "the portrait is not base64") from None
            portrait = check_normalized_portrait(
                jpeg, unverified_digest=unverified_person.get("portrait_digest"),
                max_bytes=_MAX_PORTRAIT_BYTES)
        return MovedPerson(_check_code(unverified_person.get("foreigner_code")), PersonDetails(
            _printed(unverified_person, "surname", allow_empty=False),
            _printed(unverified_person, "given_names", allow_empty=True),
            check.country(_field(unverified_person, "nationality", str), field="nationality"),
            check.birth_date(_day(unverified_person, "birth_date"), today=today),
            check.sex(_field(unverified_person, "sex", str))), portrait, history)
    except Invalid as error:
        if error.code == "TRANSFER_BUNDLE_INVALID":
            raise
        raise Invalid("TRANSFER_BUNDLE_INVALID",
                      f"the bundle's person is refused here: {error.detail}") from None


def _create_person(session: Session, *, row: PersonTransfer, bundle: str,
                   payload: dict[str, Any], moved: MovedPerson, now: datetime,
                   jti: str | None) -> None:
    """Step 2: the person under the same code, with its passport history, no card."""
    if moved.foreigner_code != row.foreigner_code:
        raise Invalid("TRANSFER_BUNDLE_INVALID", "the bundle names another person")
    details = moved.details
    try:
        person = Person(foreigner_code=moved.foreigner_code, surname=details.surname,
                        given_names=details.given_names, nationality=details.nationality,
                        birth_date=details.birth_date, sex=details.sex,
                        name_key=name_key(details.surname, details.given_names),
                        portrait_digest=None, created_at=now, updated_at=now,
                        created_by=row.officer_id, state="transfer_pending", moved_to=None)
        session.add(person)
        session.flush()
        for p in moved.passports:
            session.add(Passport(person_id=person.id, number=p.passport.number,
                                 country=p.passport.country, expires=p.passport.expires,
                                 is_current=p.current, surname=p.surname,
                                 given_names=p.given_names, added_at=now,
                                 added_by=row.officer_id))
        if moved.portrait is not None:
            if session.get(Portrait, moved.portrait.digest) is None:
                session.add(Portrait(digest=moved.portrait.digest, person_id=person.id,
                                     jpeg=moved.portrait.jpeg, width=moved.portrait.width,
                                     height=moved.portrait.height, created_at=now))
            person.portrait_digest = moved.portrait.digest
        session.flush()
    except IntegrityError as exc:
        raise Conflict("PASSPORT_ALREADY_ENROLLED", "a passport of this person belongs to"
                       " another person here") from exc
    row.person_id, row.bundle, row.state, row.updated_at = person.id, bundle, "prepared", now
    session.flush()
    append_audit(session, actor=Actor.for_officer_id(row.officer_id or 0)
                 if row.officer_id else Actor.cli(),
                 action="interauth.transfer.prepared", subject=moved.foreigner_code,
                 details={"direction": "in", "from": row.peer_city,
                          "transfer_id": row.transfer_id, "jti": jti,
                          "peer_audit_head": payload.get("audit_head"),
                          "passports": len(moved.passports)}, now=now)


def _committed(session: Session, *, row: PersonTransfer, revoked_there: list[str], now: datetime,
               jti: str | None) -> None:
    person = get_person(session, foreigner_code=row.foreigner_code, lock=True)
    person.state, person.updated_at = "active", now
    row.state, row.updated_at = "committed", now
    session.flush()
    append_audit(session, actor=Actor.for_officer_id(row.officer_id) if row.officer_id
                 else Actor.cli(), action="interauth.transfer.committed",
                 subject=row.foreigner_code,
                 details={"direction": "in", "from": row.peer_city,
                          "transfer_id": row.transfer_id, "jti": jti,
                          "revoked_there": revoked_there}, now=now)


def _peer_error(response: httpx.Response) -> DomainError:
    code = peer_code(response)
    return Conflict("TRANSFER_REFUSED", f"the other city refused: {code}", peer_code=code)


def _bundle_of(response: httpx.Response) -> str:
    """The signed bundle the old city answered with ("" when it sent none: refused as
    TRANSFER_BUNDLE_INVALID when verified)."""
    bundle = (answer_object(response) or {}).get("bundle")
    return bundle if isinstance(bundle, str) else ""


def _revoked_there(response: httpx.Response) -> list[str]:
    """The card numbers the old city says it revoked, for this city's audit: what is not
    a card number is left out, and at most 100 (the old city's answer is data)."""
    numbers = (answer_object(response) or {}).get("revoked_cards")
    if not isinstance(numbers, list):
        return []
    return [n for n in numbers if isinstance(n, str) and _CARD_NUMBER.match(n)][:100]


def _unreachable(outcome: TransferOutcome) -> Unavailable:
    return Unavailable("TRANSFER_PEER_UNREACHABLE", "the other city did not answer; retry"
                       " with the same transfer_id", **outcome.to_payload())


def run_transfer(
    database: Database, *, client: InterauthClient, own_city: str, transfer_id: str | None,
    from_city: str, foreigner_code: str, officer_id: int, clock: Callable[[], datetime],
    timeout: float,
) -> TransferOutcome:
    """Drive the transfer from wherever its outbox row stands; safe to call again."""
    transfer_id = _check_transfer_id(transfer_id or uuid.uuid4().hex)
    code = _check_code(foreigner_code)
    outcome = database.transact(lambda session: _start(
        session, transfer_id=transfer_id, from_city=from_city, code=code,
        officer_id=officer_id, own_city=own_city, federation=client.federation, now=clock()))
    if outcome.state == "preparing":
        try:
            response = client.post(from_city, TRANSFERS_PATH,
                                   {"transfer_id": transfer_id, "foreigner_code": code},
                                   reason="transfer prepare", officer_id=officer_id,
                                   timeout=timeout)
        except httpx.HTTPError:
            raise _unreachable(outcome) from None
        if response.status_code != 200:
            refusal = _peer_error(response)
            database.transact(lambda session: _mark(session, transfer_id, "aborted", clock()))
            raise refusal
        bundle = _bundle_of(response)
        payload = verify_person_bundle(bundle, federation=client.federation,
                                       from_city=from_city, to_city=own_city,
                                       transfer_id=transfer_id)
        # Checked (the portrait decoded) before the transaction, not under its write lock.
        moved = moved_person(payload["person"], today=clock().date())
        jti = response.request.extensions.get("interauth_jti")

        def store(session: Session) -> TransferOutcome:
            row = _transfer(session, transfer_id)
            assert row is not None
            if row.state == "preparing":
                _create_person(session, row=row, bundle=bundle, payload=payload, moved=moved,
                               now=clock(), jti=jti)
            return _outcome(row)

        outcome = database.transact(store)
    if outcome.state == "prepared":
        try:
            response = client.post(from_city, f"{TRANSFERS_PATH}/{transfer_id}/commit", {},
                                   reason="transfer commit", officer_id=officer_id,
                                   timeout=timeout)
        except httpx.HTTPError:
            raise _unreachable(outcome) from None
        if response.status_code != 200:
            raise _peer_error(response)
        revoked_there = _revoked_there(response)
        jti = response.request.extensions.get("interauth_jti")

        def finish(session: Session) -> TransferOutcome:
            row = _transfer(session, transfer_id)
            assert row is not None
            if row.state == "prepared":
                _committed(session, row=row, revoked_there=revoked_there, now=clock(),
                           jti=jti)
            return _outcome(row)

        outcome = database.transact(finish)
    return outcome


def _mark(session: Session, transfer_id: str, state: str, now: datetime) -> None:
    row = _transfer(session, transfer_id)
    if row is not None:
        row.state, row.updated_at = state, now


def run_abort(
    database: Database, *, client: InterauthClient, transfer_id: str, officer_id: int,
    clock: Callable[[], datetime], timeout: float,
) -> TransferOutcome:
    """Abort before the commit: the old city clears ``transfer_pending``, the person made
    here (no card yet) is removed. After the commit: TRANSFER_COMMITTED."""
    transfer_id = _check_transfer_id(transfer_id)
    row = database.transact(lambda session: _transfer(session, transfer_id), readonly=True)
    if row is None or row.direction != "in":
        raise NotFound("TRANSFER_NOT_FOUND", "no transfer to this city with this id")
    if row.state == "committed":
        raise Conflict("TRANSFER_COMMITTED", "this transfer was committed")
    if row.state != "aborted":
        try:
            response = client.delete(row.peer_city, f"{TRANSFERS_PATH}/{transfer_id}",
                                     reason="transfer abort", officer_id=officer_id,
                                     timeout=timeout)
        except httpx.HTTPError:
            raise _unreachable(_outcome(row)) from None
        if response.status_code not in (200, 404):
            raise _peer_error(response)

        def aborted(session: Session) -> None:
            held = _transfer(session, transfer_id)
            assert held is not None
            if held.person_id is not None:
                person_id = held.person_id
                held.person_id = None
                session.flush()
                session.execute(delete(Passport).where(Passport.person_id == person_id))
                session.execute(delete(Portrait).where(Portrait.person_id == person_id))
                session.execute(delete(Person).where(Person.id == person_id))
            held.state, held.updated_at = "aborted", clock()
            append_audit(session, actor=Actor.for_officer_id(officer_id),
                         action="interauth.transfer.aborted", subject=held.foreigner_code,
                         details={"direction": "in", "from": held.peer_city,
                                  "transfer_id": transfer_id}, now=clock())

        database.transact(aborted)
    return TransferOutcome(transfer_id, "aborted", row.peer_city, row.foreigner_code)
