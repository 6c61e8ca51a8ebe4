"""One-use pay credentials (P13.3): the wallet refills a batch, each credential with a fresh
holder key, a random handle and its own random status index; only the authority maps a
handle to the card (``pay_handles``).

Nothing in one of them names the card: ``ph`` replaces ``cn``, the status index is drawn
at random in the day's own status list (``p20261129``, named by every credential of that
day like its ``iat``; retired once the day is over, its rows deleted by the next batch
issued), and each credential is valid on exactly one UTC day D: ``iat`` = the midnight
starting D, ``exp`` = the next midnight (the same for everyone that day). ``iat`` may be in
the future: the authority pre-issues days up to the horizon (``lifetime_days``), and a
verifier refuses a day-D credential NOT_YET_VALID before D.

The offline bound without linking: a day gets at most ``offline_per_day`` (N) credentials
carrying an offline limit, ever (used ones count), each ``ol`` = the card's tier // N, so
whatever one till accepts offline from a card's credentials on one day sums to at most the
tier. More credentials for today, once today's N are all used, are online-only (``ol`` 0).

The request is signed by the device key of the card's bundle, like a refresh; the check
comes before anything is read or written, and the batch is written in the caller's one
transaction. A card holds at most ``outstanding_max`` unused, unexpired handles.

Example::

    batch = issue_pay_batch(session, card_number="3300000000000017",
                            unverified_device_key=device.public_key, proof_time=now_s,
                            unverified_proof=proof, unverified_holder_keys=[k1, k2],
                            signing=signing, now=now)
    batch.credentials          # compact JWS, one per holder key, in order
    batch.days                 # the UTC midnight each is valid from (today's first)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

import keys as keylib
from cardsvc.models import Card, IssuerKeyRecord, PayHandle
from cardsvc.payments.models import CardBalance
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.cards import get_card, status_for_state
from cardsvc.services.errors import Conflict, Forbidden, Invalid, NotFound
from cardsvc.services.provisioning import REFRESH_WINDOW_SECONDS, SigningContext
from cardsvc.services.status import reserve_status_entry, retire_day_lists, set_entry_status
from cardsvc.services.trust import active_signer, signing_alg
from schemas import STATUS_REVOKED, Credential, Entitlement, Purpose, StatusRef
from schemas.credential import PAY_HANDLE_BYTES
from schemas.provisioning import pay_batch_proof_message

__all__ = [
    "PAY_BATCH_MAX",
    "PAY_HANDLES_OUTSTANDING_MAX",
    "PAY_OFFLINE_PER_DAY",
    "PayBatch",
    "PayBatchPolicy",
    "issue_pay_batch",
    "one_use_offline_limit",
]

PAY_BATCH_MAX = 20  # holder keys in one request
PAY_HANDLES_OUTSTANDING_MAX = 40  # unused, unexpired one-use credentials per card
PAY_OFFLINE_PER_DAY = 5  # credentials per card per day carrying an offline limit (N)
_DAY = 86_400
# Offline-limit tiers as fractions of the city's default: a card's own limit is rounded
# down to one, so ``ol`` tells a merchant only which of four groups the card is in.
_OL_TIERS = (0, 4, 2, 1)  # 0, default/4, default/2, default


@dataclass(frozen=True, slots=True)
class PayBatchPolicy:
    """The city's rules for one-use pay credentials (from Settings)."""

    lifetime_days: int = 7  # the horizon: today and the days after it, pre-issued
    batch_max: int = PAY_BATCH_MAX
    outstanding_max: int = PAY_HANDLES_OUTSTANDING_MAX
    default_offline_limit_fen: int = 20_000
    offline_per_day: int = PAY_OFFLINE_PER_DAY


@dataclass(frozen=True, slots=True)
class PayBatch:
    card_number: str
    credentials: list[str]
    days: list[int]  # per credential, the UTC midnight starting its one day of use
    expires_at: int  # the latest exp in the batch (the end of its last day)
    outstanding: int  # unused, unexpired handles after this batch
    offline_limit_fen: int  # the ol of a day's first N credentials (top-ups carry 0)
    balance_fen: int  # the holder's balance: for the phone, never on a merchant's screen
    # Keys that no longer sign, and the time they stopped (0: compromised): the phone drops
    # the credentials they signed for days starting at or after it (the authority ended
    # them; a till refuses them KEY_NOT_VALID_AT_ISSUE).
    retired_keys: dict[str, int] = field(default_factory=dict)


def one_use_offline_limit(card_limit_fen: int, default_fen: int) -> int:
    """The highest tier (0, default/4, default/2, default) not above the card's own limit."""
    tiers = [0] + [default_fen // divisor for divisor in _OL_TIERS[1:]]
    return max(tier for tier in tiers if tier <= card_limit_fen)


def issue_pay_batch(
    session: Session,
    *,
    card_number: str,
    unverified_device_key: bytes,
    proof_time: int,
    unverified_proof: bytes,
    unverified_holder_keys: list[bytes],
    signing: SigningContext,
    policy: PayBatchPolicy = PayBatchPolicy(),
    now: datetime,
) -> PayBatch:
    """Up to ``len(holder keys)`` one-use pay credentials, the earliest days first (today,
    tomorrow, ... up to the horizon, N each, used ones counted), then online-only top-ups
    for today once today's N are all used; fewer at the outstanding cap.

    Refusals: INVALID_DEVICE_KEY / INVALID_HOLDER_KEYS / REFRESH_TIME_SKEW (422),
    PROOF_INVALID / DEVICE_NOT_BOUND (403), CARD_NOT_FOUND (404), CARD_REVOKED /
    CARD_SUSPENDED / CARD_EXPIRED / NOT_ENTITLED_TO_PAY / PAY_HANDLES_OUTSTANDING (409,
    also when every day holds its N and today's are not all used: nothing to issue).
    """
    if len(unverified_device_key) != 32 or len(unverified_proof) != 64:
        raise Invalid("INVALID_DEVICE_KEY", "device_key is 32 bytes and proof 64 bytes")
    # Each key must be one a holder proof could verify under: not merely 32 bytes, but a
    # point of the prime-order subgroup (a small-order or off-curve key makes a dead
    # credential that still counts against the card's outstanding cap).
    if not 1 <= len(unverified_holder_keys) <= policy.batch_max or not all(
            keylib.is_usable_public_key(key) for key in unverified_holder_keys):
        raise Invalid("INVALID_HOLDER_KEYS",
                      f"1 to {policy.batch_max} Ed25519 public keys (valid curve points)")
    if len(set(unverified_holder_keys)) != len(unverified_holder_keys):
        # The same key twice would link two credentials: a fresh key for each.
        raise Invalid("INVALID_HOLDER_KEYS", "every holder key must be fresh (no repeats)")
    if abs(int(now.timestamp()) - proof_time) > REFRESH_WINDOW_SECONDS:
        raise Invalid("REFRESH_TIME_SKEW", "the request time is too far from the server's")
    if not card_number.isascii() or not card_number.isalnum() or len(card_number) > 24:
        raise NotFound("CARD_NOT_FOUND", "no card with this number")
    message = pay_batch_proof_message(card_number, unverified_device_key, proof_time,
                                      unverified_holder_keys)
    if not keylib.verify_signature(unverified_device_key, message, unverified_proof):
        raise Forbidden("PROOF_INVALID", "the signature is not by this device key")
    card = get_card(session, card_number=card_number, lock=True)
    if card.device_key != unverified_device_key:
        raise Forbidden("DEVICE_NOT_BOUND", "this device does not hold this card")
    if card.state != "active":
        code = "CARD_REVOKED" if card.state == "revoked" else "CARD_SUSPENDED"
        raise Conflict(code, f"a {card.state} card gets no pay credentials", state=card.state)
    if Entitlement.PAYMENT.value not in card.entitlement_list:
        raise Conflict("NOT_ENTITLED_TO_PAY", "this card is not entitled to payment")
    holder_keys = unverified_holder_keys  # signed by the card's device key
    retire_day_lists(session, actor=Actor.wallet(), now=now)  # past days' lists, lazily
    _end_dead_handles(session, card, now)
    outstanding = _outstanding(session, card, now)
    room = policy.outstanding_max - outstanding
    if room <= 0:
        raise Conflict("PAY_HANDLES_OUTSTANDING",
                       f"the card already holds {outstanding} unused pay credentials",
                       outstanding=outstanding)
    today = int(now.timestamp()) // _DAY * _DAY
    end_of_validity = int((datetime.combine(card.valid_until, time(0), tzinfo=UTC)
                           + timedelta(days=1)).timestamp())
    days = [today + n * _DAY for n in range(policy.lifetime_days)
            if today + (n + 1) * _DAY <= end_of_validity]
    if not days:
        raise Conflict("CARD_EXPIRED", "this card is past its validity")
    tier = one_use_offline_limit(card.offline_limit_fen, policy.default_offline_limit_fen)
    limit = tier // policy.offline_per_day
    plan = _plan(session, card, days, limit, policy=policy)[:min(len(holder_keys), room)]
    if not plan:
        raise Conflict("PAY_HANDLES_OUTSTANDING",
                       "every day up to the horizon holds its pay credentials and today's"
                       " are not all used", outstanding=outstanding)
    signer = active_signer(session, keyring=signing.keyring)
    # Each day's midnight, the same for everyone; a key that started signing later today
    # cannot sign before its window (KEY_NOT_VALID_AT_ISSUE): its start, also the same for
    # everyone.
    key_start = session.scalar(select(IssuerKeyRecord.valid_from)
                               .where(IssuerKeyRecord.kid == signer.kid)) or 0
    alg = signing_alg(session, now=now)
    credentials = []
    for holder_key, (day, offline_limit) in zip(holder_keys, plan, strict=False):
        handle = secrets.token_bytes(PAY_HANDLE_BYTES)
        ref = reserve_status_entry(session, card_id=card.id, status=status_for_state(card.state),
                                   now=now, list_size=signing.status_list_size, day=day)
        session.add(PayHandle(handle=handle.hex(), card_id=card.id, status_list_id=ref.list_id,
                              status_index=ref.index, issued_at=now,
                              expires_at=datetime.fromtimestamp(day + _DAY, UTC),
                              valid_from=datetime.fromtimestamp(day, UTC),
                              offline_limit_fen=offline_limit, day_limit_fen=tier,
                              kid=signer.kid))
        credentials.append(keylib.sign_credential(Credential(
            purpose=Purpose.PAY, issuer=signing.issuer, issued_at=max(day, key_start),
            expires_at=day + _DAY, card_number="", status=ref, holder_key=holder_key,
            offline_limit_fen=offline_limit, pay_handle=handle), signer, alg=alg))
    session.flush()
    issued_days = [day for day, _ in plan]
    exp = max(issued_days) + _DAY
    append_audit(session, actor=Actor.wallet(), action="card.pay_batch_issued",
                 subject=card.card_number,
                 details={"count": len(credentials), "expires_at": exp,
                          "top_ups": sum(1 for _, ol in plan if ol == 0 < limit)}, now=now)
    return PayBatch(card.card_number, credentials, issued_days, exp,
                    outstanding + len(credentials), limit, _balance(session, card),
                    _retired_keys(session, now, policy))


def _retired_keys(session: Session, now: datetime, policy: PayBatchPolicy) -> dict[str, int]:
    """Keys that stopped signing within the horizon (older ones signed nothing still
    held), or were compromised: kid -> the end of their window (0 when compromised)."""
    since = int(now.timestamp()) - (policy.lifetime_days + 1) * _DAY
    rows = session.execute(select(IssuerKeyRecord.kid, IssuerKeyRecord.valid_until,
                                  IssuerKeyRecord.state)
                           .where(IssuerKeyRecord.valid_until.is_not(None)
                                  | (IssuerKeyRecord.state == "compromised"))).all()
    return {kid: 0 if state == "compromised" else int(until)
            for kid, until, state in rows
            if state == "compromised" or (until is not None and until > since)}


def _plan(session: Session, card: Card, days: list[int], limit: int, *,
          policy: PayBatchPolicy) -> list[tuple[int, int]]:
    """(day, ol) for each credential that may be issued now, in order: every day's free
    offline places (N minus those issued for it, used ones included, ended ones not: their
    entries are revoked), then, once today's N are issued and all used, online-only
    top-ups for today (``ol`` 0)."""
    rows = session.execute(
        select(PayHandle.valid_from, func.count(), func.count(PayHandle.used_at))
        .where(PayHandle.card_id == card.id, PayHandle.ended_at.is_(None),
               PayHandle.offline_limit_fen > 0,
               PayHandle.valid_from >= datetime.fromtimestamp(days[0], UTC))
        .group_by(PayHandle.valid_from)).all()
    taken = {int(day.timestamp()): (int(issued), int(used)) for day, issued, used in rows}
    plan = [(day, limit) for day in days
            for _ in range(policy.offline_per_day - taken.get(day, (0, 0))[0])]
    issued, used = taken.get(days[0], (0, 0))
    if issued >= policy.offline_per_day and used >= issued:
        # Today's N all used: more for today pay online only.
        plan += [(days[0], 0)] * policy.batch_max
    return plan


def _end_dead_handles(session: Session, card: Card, now: datetime) -> None:
    """End (``ended_at``, entry revoked) the card's unused handles no verifier would take,
    so they stop counting against the cap and their days can be issued again: those signed
    by a key that retired before their day began (a rotation gives the old key 60 s more,
    so its pre-issued days fail KEY_NOT_VALID_AT_ISSUE) or that was compromised, and those
    from before day-bound credentials (several days long: LIFETIME_TOO_LONG now)."""
    rows = session.execute(
        select(PayHandle.handle, PayHandle.status_list_id, PayHandle.status_index,
               PayHandle.valid_from, IssuerKeyRecord.valid_until, IssuerKeyRecord.state)
        .outerjoin(IssuerKeyRecord, IssuerKeyRecord.kid == PayHandle.kid)
        .where(PayHandle.card_id == card.id, PayHandle.used_at.is_(None),
               PayHandle.ended_at.is_(None), PayHandle.expires_at > now)).all()
    dead = [(handle, StatusRef(list_id, index))
            for handle, list_id, index, valid_from, key_until, key_state in rows
            if valid_from is None or key_state == "compromised"
            or (key_until is not None and int(valid_from.timestamp()) >= key_until)]
    for _, ref in dead:
        set_entry_status(session, ref=ref, status=STATUS_REVOKED)
    if dead:
        session.execute(update(PayHandle).where(PayHandle.handle.in_([h for h, _ in dead]))
                        .values(ended_at=now))


def _outstanding(session: Session, card: Card, now: datetime) -> int:
    return session.scalar(select(func.count()).select_from(PayHandle).where(
        PayHandle.card_id == card.id, PayHandle.used_at.is_(None),
        PayHandle.ended_at.is_(None), PayHandle.expires_at > now)) or 0


def _balance(session: Session, card: Card) -> int:
    return session.scalar(select(CardBalance.balance_fen)
                          .where(CardBalance.card_id == card.id)) or 0
