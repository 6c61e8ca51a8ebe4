"""Cards: issue, look up, revoke / suspend / reinstate, new provisioning codes, re-issue.

Every card has a status entry from the moment it exists (reserved at issue), and every
state change sets that entry in the same transaction as the card row.

Example::

    issued = issue_card(session, foreigner_code=code, entitlements=["healthcare", "payment"],
                        valid_until=date(2030, 1, 1), actor=actor, now=now)
    issued.provisioning_code        # 'ABCD-EFGH-JKMN-PQRS', shown once
    change_card_state(session, card_number=issued.card.card_number, action="revoke",
                      reason="lost", actor=actor, now=now)
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy import bindparam, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from cardsvc.db import RetryTransaction
from cardsvc.models import Card, Person, ProvisioningCode
from cardsvc.services._foreigner_code import get_person, is_valid_foreigner_code
from cardsvc.services._locking import for_update
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.errors import Conflict, Invalid, NotFound
from cardsvc.services.status import (
    end_pay_handles,
    propose_status_entry,
    reserve_status_entry,
    set_entry_status,
    set_pay_handle_statuses,
    take_status_entry,
)
from cardsvc.settings import DEFAULT_OFFLINE_LIMIT_FEN
from schemas import STATUS_REVOKED, STATUS_SUSPENDED, STATUS_VALID, Entitlement, StatusRef

__all__ = [
    "CARD_STATES",
    "CardAction",
    "IssuedCard",
    "ReissuedCard",
    "cards_of_person",
    "change_card_state",
    "get_card",
    "hash_provisioning_code",
    "issue_card",
    "luhn_check_digit",
    "mark_data_changed",
    "new_provisioning_code",
    "normalize_provisioning_code",
    "reissue_cards",
    "status_for_state",
]

CARD_STATES = ("active", "suspended", "revoked")
CardAction = Literal["revoke", "suspend", "reinstate"]
CARD_PREFIX = "33"  # Zhejiang, as in the foreigner code
MAX_VALIDITY_DAYS = 10 * 366
MAX_OFFLINE_LIMIT_FEN = 10_000_000  # 100,000 yuan
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1", "U": "V"})
_CODE_CHARS = 16  # 80 bits: guessing one of the live codes is hopeless
_STATUS_FOR_STATE = {"active": STATUS_VALID, "suspended": STATUS_SUSPENDED,
                     "revoked": STATUS_REVOKED}
_AUDIT_ACTION = {"revoke": "card.revoked", "suspend": "card.suspended",
                 "reinstate": "card.reinstated"}
_TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "revoke": (("active", "suspended"), "revoked"),
    "suspend": (("active",), "suspended"),
    "reinstate": (("suspended",), "active"),
}


@dataclass(frozen=True, slots=True)
class IssuedCard:
    card: Card
    provisioning_code: str  # shown once; only its hash is stored
    provisioning_expires: datetime


@dataclass(frozen=True, slots=True)
class ReissuedCard:
    card_number: str
    provisioning_code: str
    provisioning_expires: datetime


def status_for_state(state: str) -> int:
    return _STATUS_FOR_STATE[state]


def luhn_check_digit(digits: str) -> str:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:  # doubled: the rightmost payload digit sits left of the check
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return str((10 - total % 10) % 10)


def normalize_provisioning_code(unverified_code: str) -> str | None:
    """Crockford form without separators, or None if it cannot be a code of ours."""
    text = unverified_code.strip().upper().replace("-", "").replace(" ", "")
    text = text.translate(_CROCKFORD_ALIASES)
    if len(text) != _CODE_CHARS or any(char not in _CROCKFORD for char in text):
        return None
    return text


def hash_provisioning_code(normalized_code: str) -> str:
    return hashlib.sha256(b"FMC provisioning code\x00" + normalized_code.encode()).hexdigest()


def get_card(session: Session, *, card_number: str, lock: bool = False) -> Card:
    if not (8 <= len(card_number) <= 24 and card_number.isascii() and card_number.isalnum()):
        raise NotFound("CARD_NOT_FOUND", "no card with this number")
    query = select(Card).where(Card.card_number == card_number)
    card = session.scalar(for_update(query) if lock else query)
    if card is None:
        raise NotFound("CARD_NOT_FOUND", "no card with this number")
    return card


def cards_of_person(session: Session, *, foreigner_code: str) -> list[Card]:
    return list(get_person(session, foreigner_code=foreigner_code).cards)


def issue_card(
    session: Session,
    *,
    foreigner_code: str,
    entitlements: Sequence[str],
    valid_until: date,
    actor: Actor,
    now: datetime,
    offline_limit_fen: int = DEFAULT_OFFLINE_LIMIT_FEN,
    replace_active: bool = False,
    provisioning_ttl_seconds: int = 86_400,
    status_list_size: int = 131_072,
) -> IssuedCard:
    """Issue a card with a reserved status entry and a one-time provisioning code.

    A person holds one usable card at a time: with ``replace_active`` the old one is
    revoked in the same transaction, otherwise Conflict ACTIVE_CARD_EXISTS.
    """
    granted = _entitlements(entitlements)
    today = now.date()
    if not today < valid_until <= today + timedelta(days=MAX_VALIDITY_DAYS):
        raise Invalid("INVALID_VALIDITY", "valid_until must be after today and within 10 years")
    if not 0 <= offline_limit_fen <= MAX_OFFLINE_LIMIT_FEN:
        raise Invalid("INVALID_OFFLINE_LIMIT", "offline limit out of range")
    person, has_usable = _lock_person_for_issue(session, foreigner_code)
    if person.state == "moved":  # P10: the person belongs to another city now
        raise Conflict("PERSON_MOVED", f"this person moved to {person.moved_to}",
                       holding_city=person.moved_to)
    if person.state == "transfer_pending":  # no card until the move is committed
        raise Conflict("PERSON_TRANSFER_PENDING", "a move between cities is under way")
    # Most people have no card yet: their cards are loaded only when one is usable.
    usable = [card for card in person.cards if card.state != "revoked"] if has_usable else []
    if usable and not replace_active:
        raise Conflict("ACTIVE_CARD_EXISTS", "this person already holds a usable card",
                       card_number=usable[0].card_number)
    for old in usable:
        _transition(session, old, "revoke", reason="replaced by a new card", actor=actor,
                    now=now)
    # The card is inserted with a drawn status entry; most draws are free, so the entry
    # is taken right after and the card needs no UPDATE (else it gets another entry).
    ref = propose_status_entry(session, list_size=status_list_size, now=now)
    row = {"card_number": _new_card_number(), "person_id": person.id, "state": "active",
           "state_reason": None, "entitlements": ",".join(granted), "valid_from": today,
           "valid_until": valid_until, "offline_limit_fen": offline_limit_fen,
           "status_list_id": ref.list_id, "status_index": ref.index, "device_key": None,
           "provisioned_at": None, "data_version": 1, "bundle_version": 0,
           "created_at": now, "updated_at": now, "created_by": actor.officer_id}
    try:
        # A prebuilt INSERT, not an ORM object and a flush (P11: ~1 ms of CPU less); the
        # card answered below is built from the same values and is not in the session
        # (nothing in this transaction loads it again).
        card_id = session.connection().execute(_INSERT_CARD, row).scalar_one()
    except IntegrityError as taken:  # the card number (its only unique key) was taken
        raise RetryTransaction(Conflict(
            "CARD_NUMBER_CLASH", "no free card number was drawn; try again")) from taken
    card = Card(id=card_id, **row)
    set_committed_value(card, "person", person)  # no backref: the card stays out of the session
    if not take_status_entry(session, ref=ref, card_id=card.id, status=STATUS_VALID, now=now):
        ref = reserve_status_entry(session, card_id=card.id, status=STATUS_VALID, now=now,
                                   list_size=status_list_size)
        session.connection().execute(_MOVE_CARD_ENTRY, {
            "card_id": card.id, "status_list_id": ref.list_id, "status_index": ref.index})
        card.status_list_id, card.status_index = ref.list_id, ref.index
    code, expires = _create_code(session, card, actor=actor, now=now,
                                 ttl_seconds=provisioning_ttl_seconds, new_card=True)
    append_audit(session, actor=actor, action="card.issued", subject=card.card_number,
                 details={"foreigner_code": person.foreigner_code, "entitlements": granted,
                          "valid_until": valid_until.isoformat(),
                          "offline_limit_fen": offline_limit_fen,
                          "status": [ref.list_id, ref.index]}, now=now)
    return IssuedCard(card, code, expires)


def new_provisioning_code(
    session: Session, *, card_number: str, actor: Actor, now: datetime,
    provisioning_ttl_seconds: int = 86_400,
) -> ReissuedCard:
    """A fresh code for an existing card (a new phone); earlier unused codes are withdrawn."""
    card = get_card(session, card_number=card_number, lock=True)
    if card.state == "revoked":
        raise Conflict("CARD_REVOKED", "a revoked card cannot be provisioned")
    code, expires = _create_code(session, card, actor=actor, now=now,
                                 ttl_seconds=provisioning_ttl_seconds)
    append_audit(session, actor=actor, action="card.provisioning_code_issued",
                 subject=card.card_number, details={"expires": expires.isoformat()}, now=now)
    return ReissuedCard(card.card_number, code, expires)


def reissue_cards(
    session: Session, *, person: Person, actor: Actor, now: datetime,
    provisioning_ttl_seconds: int, reason: str,
) -> Iterable[ReissuedCard]:
    """The person's data changed: new credentials are due on every usable card.

    The data version moves on, so the next provisioning or wallet refresh signs the new
    data under a new status index and revokes the old bundle's index. Until then the old
    bundle still identifies the same person under the same foreigner code.
    """
    reissued = []
    for card in mark_data_changed(session, person=person, now=now):
        code, expires = _create_code(session, card, actor=actor, now=now,
                                     ttl_seconds=provisioning_ttl_seconds)
        append_audit(session, actor=actor, action="card.reissued", subject=card.card_number,
                     details={"reason": reason, "data_version": card.data_version}, now=now)
        reissued.append(ReissuedCard(card.card_number, code, expires))
    return reissued


def mark_data_changed(session: Session, *, person: Person, now: datetime) -> list[Card]:
    """The person's credential data changed: usable cards need a new bundle."""
    changed = [card for card in person.cards if card.state != "revoked"]
    for card in changed:
        card.data_version += 1
        card.updated_at = now
    session.flush()
    return changed


def change_card_state(
    session: Session, *, card_number: str, action: CardAction, reason: str, actor: Actor,
    now: datetime,
) -> Card:
    """Revoke, suspend or reinstate; the status entry changes in this same transaction."""
    if action not in _TRANSITIONS:
        raise Invalid("UNKNOWN_ACTION", "action is revoke, suspend or reinstate")
    card = get_card(session, card_number=card_number, lock=True)
    _transition(session, card, action, reason=reason, actor=actor, now=now)
    return card


# --- internals ---------------------------------------------------------------------------

def _transition(
    session: Session, card: Card, action: str, *, reason: str, actor: Actor, now: datetime
) -> None:
    allowed_from, target = _TRANSITIONS[action]
    if card.state not in allowed_from:
        code = "CARD_REVOKED" if card.state == "revoked" else f"CARD_{card.state.upper()}"
        raise Conflict(code, f"cannot {action} a card that is {card.state}", state=card.state)
    reason = " ".join(reason.split())[:500]
    card.state, card.state_reason, card.updated_at = target, reason or None, now
    assert card.status_list_id is not None and card.status_index is not None
    set_entry_status(session, ref=StatusRef(card.status_list_id, card.status_index),
                     status=status_for_state(target))
    # Every one-use pay credential of the card follows (P13.3); a revocation ends them.
    if target == "revoked":
        end_pay_handles(session, card_id=card.id, now=now)
    else:
        set_pay_handle_statuses(session, card_id=card.id, status=status_for_state(target),
                                now=now)
    if target == "revoked":
        session.execute(
            update(ProvisioningCode)
            .where(ProvisioningCode.card_id == card.id, ProvisioningCode.used_at.is_(None),
                   ProvisioningCode.withdrawn_at.is_(None))
            .values(withdrawn_at=now)
        )
    session.flush()
    append_audit(session, actor=actor, action=_AUDIT_ACTION[action], subject=card.card_number,
                 details={"reason": reason, "status": [card.status_list_id, card.status_index]},
                 now=now)


def _entitlements(names: Sequence[str]) -> list[str]:
    known = {entitlement.value for entitlement in Entitlement}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise Invalid("UNKNOWN_ENTITLEMENT", f"entitlements must be among {sorted(known)}")
    order = [entitlement.value for entitlement in Entitlement]
    return sorted(set(names), key=order.index)


# The person locked (FOR UPDATE OF persons only) and whether they hold a usable card,
# in one statement.
_LOCK_PERSON_FOR_ISSUE = for_update(
    select(Person, exists().where(Card.person_id == Person.id, Card.state != "revoked"))
    .where(Person.foreigner_code == bindparam("foreigner_code")))


def _lock_person_for_issue(session: Session, foreigner_code: str) -> tuple[Person, bool]:
    if not is_valid_foreigner_code(foreigner_code):
        raise NotFound("PERSON_NOT_FOUND", "no person with this foreigner code")
    row = session.execute(_LOCK_PERSON_FOR_ISSUE, {"foreigner_code": foreigner_code}).first()
    if row is None:
        raise NotFound("PERSON_NOT_FOUND", "no person with this foreigner code")
    return row[0], bool(row[1])


_INSERT_CODE = insert(ProvisioningCode)
_INSERT_CARD = insert(Card).returning(Card.id)
_MOVE_CARD_ENTRY = (update(Card).where(Card.id == bindparam("card_id"))
                    .values(status_list_id=bindparam("status_list_id"),
                            status_index=bindparam("status_index")))


def _new_card_number() -> str:
    """A random card number (13 random digits, a Luhn check digit). Not looked up first
    (P11: a SELECT on every issue): the unique key refuses the one in 10^13 that is taken,
    and the issue runs again with another (issue_card)."""
    body = CARD_PREFIX + "".join(str(secrets.randbelow(10)) for _ in range(13))
    return body + luhn_check_digit(body)


def _create_code(
    session: Session, card: Card, *, actor: Actor, now: datetime, ttl_seconds: int,
    new_card: bool = False,
) -> tuple[str, datetime]:
    if not new_card:  # a card made in this transaction has no earlier codes to withdraw
        session.execute(
            update(ProvisioningCode)
            .where(ProvisioningCode.card_id == card.id, ProvisioningCode.used_at.is_(None),
                   ProvisioningCode.withdrawn_at.is_(None))
            .values(withdrawn_at=now)
        )
    raw = "".join(secrets.choice(_CROCKFORD) for _ in range(_CODE_CHARS))
    expires = now + timedelta(seconds=ttl_seconds)
    # Nothing reads the code's row back in this transaction: a prebuilt INSERT, not an
    # ORM object and a flush (P11: ~0.2 ms of CPU instead of ~1 ms).
    session.connection().execute(_INSERT_CODE, {
        "card_id": card.id, "code_hash": hash_provisioning_code(raw), "expires_at": expires,
        "used_at": None, "withdrawn_at": None, "created_at": now,
        "created_by": actor.officer_id})
    return "-".join(raw[i:i + 4] for i in range(0, _CODE_CHARS, 4)), expires
