"""Provisioning: a wallet redeems a one-time code with its device key and gets the signed
bundle (pay, id, svc); a provisioned wallet renews its bundle with a device signature.

The proof is checked before anything is read or written, so a failed request changes
nothing. The code is consumed by one conditional UPDATE: of two concurrent redemptions
exactly one wins, the other gets PROVISIONING_CODE_USED.

Example::

    bundle = redeem_provisioning_code(session, unverified_code="ABCD-EFGH-JKMN-PQRS",
                                      unverified_device_key=device.public_key,
                                      unverified_proof=proof, signing=signing, now=now)
    bundle.credentials["id"]             # compact JWS
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

import keys as keylib
from cardsvc.models import Card, Person, Portrait, ProvisioningCode, UtcDateTime
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.cards import (
    get_card,
    hash_provisioning_code,
    normalize_provisioning_code,
    status_for_state,
)
from cardsvc.services.errors import Conflict, Forbidden, Gone, Invalid, NotFound
from cardsvc.services.portrait_bundle import record_credentials
from cardsvc.services.status import end_pay_handles, reserve_status_entry, set_entry_status
from cardsvc.services.trust import Keyring, signer_and_alg
from schemas import STATUS_REVOKED, Credential, Entitlement, Purpose, StatusRef, b64url_decode
from schemas.credential import MAX_LIFETIME_SECONDS
from schemas.provisioning import provisioning_proof_message, refresh_proof_message

__all__ = [
    "REFRESH_WINDOW_SECONDS",
    "Bundle",
    "SigningContext",
    "redeem_provisioning_code",
    "refresh_bundle",
]

REFRESH_WINDOW_SECONDS = 300  # a refresh request older or newer than this is refused


@dataclass(frozen=True, slots=True)
class SigningContext:
    """What signing a bundle needs besides the database."""

    keyring: Keyring
    issuer: str  # the city code (Settings.issuer), e.g. CN-YW
    credential_lifetime_days: int = 30
    status_list_size: int = 131_072


@dataclass(frozen=True, slots=True)
class Bundle:
    card: Card
    person: Person
    credentials: dict[str, str]
    expires_at: int
    status: StatusRef
    portrait_jpeg: bytes | None = None
    replaced_status: StatusRef | None = None


# Built once: building a statement per request cost more than running it.
_CONSUME_CODE = (
    update(ProvisioningCode)
    .where(ProvisioningCode.code_hash == bindparam("by_hash"),
           ProvisioningCode.used_at.is_(None), ProvisioningCode.withdrawn_at.is_(None),
           ProvisioningCode.expires_at > bindparam("now", type_=UtcDateTime))
    .values(used_at=bindparam("now", type_=UtcDateTime))
    .returning(ProvisioningCode.card_id)
)
# The card locked (not its person) and its person loaded in the same statement: the
# credentials need both, and a lazy load after was one more round trip.
_LOCK_CARD = (select(Card).options(joinedload(Card.person, innerjoin=True))
              .where(Card.id == bindparam("card_id"))
              .with_for_update(of=Card).execution_options(populate_existing=True))
_BIND_CARD = (update(Card).where(Card.id == bindparam("card_id"))
              .values({name: bindparam(name) for name in (
                  "device_key", "provisioned_at", "bundle_version", "updated_at",
                  "status_list_id", "status_index")}))


def redeem_provisioning_code(
    session: Session,
    *,
    unverified_code: str,
    unverified_device_key: bytes,
    unverified_proof: bytes,
    signing: SigningContext,
    now: datetime,
) -> Bundle:
    if len(unverified_device_key) != 32 or len(unverified_proof) != 64:
        raise Invalid("INVALID_DEVICE_KEY", "device_key is 32 bytes and proof 64 bytes")
    normalized = normalize_provisioning_code(unverified_code)
    if normalized is None:
        raise Invalid("INVALID_PROVISIONING_CODE", "this is not a provisioning code")
    message = provisioning_proof_message(unverified_code, unverified_device_key)
    if not keylib.verify_signature(unverified_device_key, message, unverified_proof):
        raise Forbidden("PROOF_INVALID", "the proof is not a signature by this device key")
    device_key = unverified_device_key  # possession shown
    code_hash = hash_provisioning_code(normalized)
    consumed = session.connection().execute(
        _CONSUME_CODE, {"by_hash": code_hash, "now": now}).first()
    if consumed is None:
        _explain_unusable_code(session, code_hash)
    assert consumed is not None
    card = session.scalar(_LOCK_CARD, {"card_id": consumed[0]})
    assert card is not None
    if card.state == "revoked":
        raise Conflict("CARD_REVOKED", "this card is revoked", reason=card.state_reason)
    bundle = _bind_and_sign(session, card, device_key, signing=signing, now=now,
                            new_index=card.device_key is not None)
    append_audit(session, actor=Actor.wallet(), action="card.provisioned",
                 subject=card.card_number,
                 details={"device": keylib.jwk_thumbprint(keylib.public_jwk(device_key)),
                          "status": [bundle.status.list_id, bundle.status.index],
                          "replaced": None if bundle.replaced_status is None else
                          [bundle.replaced_status.list_id, bundle.replaced_status.index]},
                 now=now)
    return bundle


def refresh_bundle(
    session: Session,
    *,
    card_number: str,
    unverified_device_key: bytes,
    proof_time: int,
    unverified_proof: bytes,
    signing: SigningContext,
    now: datetime,
) -> Bundle:
    """Fresh credentials for the phone that holds the card (same device key)."""
    if len(unverified_device_key) != 32 or len(unverified_proof) != 64:
        raise Invalid("INVALID_DEVICE_KEY", "device_key is 32 bytes and proof 64 bytes")
    if abs(int(now.timestamp()) - proof_time) > REFRESH_WINDOW_SECONDS:
        raise Invalid("REFRESH_TIME_SKEW", "the request time is too far from the server's")
    if not card_number.isascii() or not card_number.isalnum() or len(card_number) > 24:
        raise NotFound("CARD_NOT_FOUND", "no card with this number")
    message = refresh_proof_message(card_number, unverified_device_key, proof_time)
    if not keylib.verify_signature(unverified_device_key, message, unverified_proof):
        raise Forbidden("PROOF_INVALID", "the signature is not by this device key")
    card = get_card(session, card_number=card_number, lock=True)
    if card.device_key != unverified_device_key:
        raise Forbidden("DEVICE_NOT_BOUND", "this device does not hold this card")
    if card.state == "revoked":
        raise Conflict("CARD_REVOKED", "this card is revoked", reason=card.state_reason)
    # New personal data gets a new index, so the old bundle's index can be revoked.
    bundle = _bind_and_sign(session, card, unverified_device_key, signing=signing, now=now,
                            new_index=card.bundle_version != card.data_version)
    append_audit(session, actor=Actor.wallet(), action="card.refreshed",
                 subject=card.card_number,
                 details={"status": [bundle.status.list_id, bundle.status.index],
                          "expires_at": bundle.expires_at}, now=now)
    return bundle


# --- internals ---------------------------------------------------------------------------

def _explain_unusable_code(session: Session, code_hash: str) -> None:
    row = session.scalar(select(ProvisioningCode).where(ProvisioningCode.code_hash == code_hash))
    if row is None:
        raise NotFound("PROVISIONING_CODE_UNKNOWN", "no such provisioning code")
    if row.used_at is not None:
        raise Conflict("PROVISIONING_CODE_USED", "this provisioning code was already used")
    if row.withdrawn_at is not None:
        raise Gone("PROVISIONING_CODE_WITHDRAWN", "a newer code replaced this one")
    raise Gone("PROVISIONING_CODE_EXPIRED", "this provisioning code has expired")


def _bind_and_sign(
    session: Session, card: Card, device_key: bytes, *, signing: SigningContext,
    now: datetime, new_index: bool,
) -> Bundle:
    assert card.status_list_id is not None and card.status_index is not None
    current = StatusRef(card.status_list_id, card.status_index)
    replaced = None
    if new_index:
        # Another phone (or new data): the old bundle's index is revoked for good.
        set_entry_status(session, ref=current, status=STATUS_REVOKED)
        # ... and so are the old phone's one-use pay credentials (P13.3).
        end_pay_handles(session, card_id=card.id, now=now)
        replaced = current
        current = reserve_status_entry(session, card_id=card.id,
                                       status=status_for_state(card.state), now=now,
                                       list_size=signing.status_list_size)
    # Slots are only ever made here, for a card being provisioned: a card never
    # provisioned before has none to retire.
    first = card.provisioned_at is None
    bound = {"device_key": device_key,
             "provisioned_at": (card.provisioned_at if not new_index and card.provisioned_at
                                else now),
             "bundle_version": card.data_version, "updated_at": now,
             "status_list_id": current.list_id, "status_index": current.index}
    # A prebuilt UPDATE, the loaded card told what it now holds without being marked
    # changed (P11: an ORM change and flush cost ~1 ms of CPU more).
    session.connection().execute(_BIND_CARD, {"card_id": card.id, **bound})
    for name, value in bound.items():
        set_committed_value(card, name, value)
    person = card.person
    signer, alg = signer_and_alg(session, keyring=signing.keyring, now=now)
    iat = int(now.timestamp())
    end_of_validity = datetime.combine(card.valid_until, time(0), tzinfo=UTC) + timedelta(days=1)
    exp = min(int(end_of_validity.timestamp()), iat + signing.credential_lifetime_days * 86_400)
    if exp <= iat:
        raise Conflict("CARD_EXPIRED", "this card is past its validity")

    def expiry(purpose: Purpose) -> int:
        # Clamped to the format's cap: a verifier refuses anything longer (LIFETIME_TOO_LONG).
        return min(exp, iat + MAX_LIFETIME_SECONDS[purpose])

    entitlements = tuple(Entitlement(name) for name in card.entitlement_list)
    digest = None if person.portrait_digest is None else b64url_decode(person.portrait_digest)

    def personal(purpose: Purpose, granted: tuple[Entitlement, ...]) -> Credential:
        return Credential(
            purpose=purpose, issuer=signing.issuer, issued_at=iat, expires_at=expiry(purpose),
            card_number=card.card_number, status=current, holder_key=device_key,
            foreigner_code=person.foreigner_code, surname=person.surname,
            given_names=person.given_names, birth_date=person.birth_date.isoformat(),
            nationality=person.nationality, sex=person.sex, portrait_digest=digest,
            entitlements=granted,
        )

    credentials = {
        "id": keylib.sign_credential(personal(Purpose.ID, ()), signer, alg=alg),
        "svc": keylib.sign_credential(personal(Purpose.SVC, entitlements), signer, alg=alg),
    }
    if Entitlement.PAYMENT in entitlements:
        # A pay credential grants payment by itself: only cards entitled to pay get one.
        credentials["pay"] = keylib.sign_credential(Credential(
            purpose=Purpose.PAY, issuer=signing.issuer, issued_at=iat,
            expires_at=expiry(Purpose.PAY),
            card_number=card.card_number, status=current, holder_key=device_key,
            offline_limit_fen=card.offline_limit_fen), signer, alg=alg)
    record_credentials(session, card=card, credentials=credentials, issuer=signing.issuer,
                       now=now, first=first)
    portrait = None
    if person.portrait_digest is not None:
        row = session.get(Portrait, person.portrait_digest)
        portrait = None if row is None else row.jpeg
    # The earliest expiry in the bundle: the phone must refresh before its first credential dies.
    expires_at = min(expiry(Purpose(purpose)) for purpose in credentials)
    return Bundle(card, person, credentials, expires_at, current, portrait, replaced)
