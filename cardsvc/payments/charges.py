"""Money movements: top-ups, online charges, offline settlement and refunds.

Each function runs inside the caller's transaction and returns the answer to send,
which is stored under the caller's idempotency key in that same transaction: the same
key and request give the same answer and never move money twice. A refusal raises a
DomainError before anything is written.

Concurrency: every movement locks the card's balance row first (SELECT ... FOR UPDATE on
PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers), and only then reads
the idempotency record, the pay code's replay key and the card's status. Two terminals
charging one card therefore queue on that row; the balance can never go below zero (a
CHECK constraint backs the check), and of two charges of one pay code exactly one wins.

Example::

    ctx = PaymentContext(keyring, issuer=settings.issuer)
    answer = charge_online(session, pay_code=text, amount_fen=1250, idempotency_key="k1",
                           terminal=terminal, ctx=ctx, now=now)
    answer.status_code, answer.body["payment_id"], answer.body["receipt"]
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import func, insert, literal, select, union_all, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from cardsvc.models import Card, Officer, PayHandle, StatusEntry, TrustState
from cardsvc.payments._fast_charge import Charge as FastCharge
from cardsvc.payments._fast_charge import lock_for_charge, write_charge
from cardsvc.payments._idempotency import (
    Answer,
    answer_columns,
    canonical_json,
    find_answer,
    read_answer,
    request_hash,
    store_answer,
)
from cardsvc.payments._paycode import (
    AuthorityTrustCache,
    active_kid,
    authority_trust,
    pay_code_replay_key,
    trust_version_now,
    verify_any_status,
    verify_live_status,
    verify_with_status,
)
from cardsvc.payments.ledger import (
    Leg,
    balanced_entries,
    cash_account,
    credit_card,
    debit_card,
    lock_card_balance,
    merchant_account,
    merchant_account_key,
    post,
)
from cardsvc.payments.models import (
    CardBalance,
    DoubleSpend,
    IdempotencyRecord,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PayCodeSeenOnline,
    Payment,
    Refund,
    Terminal,
    TopUp,
)
from cardsvc.payments.receipts import Receipt, sign_receipt
from cardsvc.services._locking import for_update
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.cards import change_card_state, get_card
from cardsvc.services.errors import Conflict, Invalid, NotFound, PaymentRefused
from cardsvc.services.status import set_entry_status
from cardsvc.services.trust import Keyring, active_signer, signing_alg
from schemas import STATUS_REVOKED, Credential, FmcError, StatusRef, TrustListClaims, b64url_encode
from schemas.challenge import Challenge, decode_challenge
from schemas.codes import ChallengeMismatch, ResultCode
from schemas.receipt import MAX_AMOUNT_FEN
from verifier import VerificationResult

__all__ = [
    "ACCEPTED_AT_LEEWAY_SECONDS",
    "MAX_AMOUNT_FEN",
    "OFFLINE_SETTLEMENT_DAYS",
    "OFFLINE_UPLOAD_DEADLINE_SECONDS",
    "OfflinePayment",
    "PaymentContext",
    "charge_online",
    "refund_payment",
    "settle_offline",
    "top_up",
]

OFFLINE_SETTLEMENT_DAYS = 30  # an offline payment older than this is not settled
ACCEPTED_AT_LEEWAY_SECONDS = 300  # a terminal clock ahead of ours by at most this
# An offline sale must reach us within this of its pay code's proof time: bounds how long
# a dishonest till can sit on codes, and how late a theft shows up.
OFFLINE_UPLOAD_DEADLINE_SECONDS = 72 * 3600


@dataclass(frozen=True, slots=True)
class PaymentContext:
    """What payments need besides the database: the signing keys and the issuer name."""

    keyring: Keyring
    issuer: str  # the city code (Settings.issuer), e.g. CN-YW
    # The trust list held in memory between charges (the app holds one); None: read the
    # keys from the database on every charge.
    trust_cache: AuthorityTrustCache | None = None


@dataclass(frozen=True, slots=True)
class OfflinePayment:
    """One pay code a terminal accepted offline, as uploaded."""

    pay_code: str
    amount_fen: int
    accepted_at: datetime
    idempotency_key: str
    challenge: str | None = None  # the sale challenge of a bound (FMC2:) code


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def _sale_challenge(unverified_challenge: str | None, *, terminal: Terminal,
                    amount_fen: int) -> Challenge | None:
    """The challenge sent with a bound code, if it names this terminal, its merchant and
    exactly this amount; raises ChallengeMismatch (or Malformed) otherwise. The code's
    holder proof must then sign it: a till cannot inflate or redirect a bound sale."""
    if unverified_challenge is None:
        return None
    challenge = decode_challenge(unverified_challenge)
    if (challenge.merchant_id, challenge.terminal_id, challenge.amount_fen) != (
            terminal.merchant_id, terminal.id, amount_fen):
        raise ChallengeMismatch("the challenge names another terminal, merchant or amount")
    return challenge


def _check_amount(amount_fen: int) -> None:
    if type(amount_fen) is not int or not 0 < amount_fen <= MAX_AMOUNT_FEN:
        raise Invalid("INVALID_AMOUNT", f"amount_fen is an integer from 1 to {MAX_AMOUNT_FEN}")


class _CardRow(NamedTuple):
    id: int
    card_number: str
    state: str


def _card_row(session: Session, card_number: str) -> _CardRow | None:
    row = session.execute(select(Card.id, Card.card_number, Card.state)
                          .where(Card.card_number == card_number)).first()
    return None if row is None else _CardRow(*row)


_TRUST_ROW = 1


def _lock_for_charge(
    session: Session, credential: Credential, *, merchant_id: int
) -> tuple[CardBalance, _CardRow, int | None, int | None, int | None] | None:
    """(balance row locked, card, status entry, trust version, merchant ledger account),
    or None when the card is unknown or has no balance row yet."""
    ref = credential.status
    statement = (
        select(CardBalance, Card.id, Card.card_number, Card.state,
               select(StatusEntry.status).where(StatusEntry.list_id == ref.list_id,
                                                StatusEntry.idx == ref.index)
               .scalar_subquery(),
               select(TrustState.version).where(TrustState.id == _TRUST_ROW)
               .scalar_subquery(),
               select(LedgerAccount.id).where(
                   LedgerAccount.key == merchant_account_key(merchant_id)).scalar_subquery())
        .join(Card, Card.id == CardBalance.card_id)
        .where(Card.card_number == credential.card_number)
        .with_for_update(of=CardBalance)
        .execution_options(populate_existing=True)
    )
    found = session.execute(statement).first()
    if found is None:
        return None
    row, card_id, card_number, state, status, version, account = found
    return row, _CardRow(card_id, card_number, state), status, version, account


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _sign(session: Session, ctx: PaymentContext, receipt: Receipt,
          trust: TrustListClaims | None = None) -> str:
    """Signed by the active issuer key (read with the trust list when there is one)."""
    kid = None if trust is None else active_kid(trust)
    signer = (ctx.keyring.signer(kid) if kid is not None
              else active_signer(session, keyring=ctx.keyring))
    # The cut-over the published trust list announces, so terminals holding it agree.
    alg = (trust.signing_alg(receipt.issued_at) if trust is not None
           else signing_alg(session, now=datetime.fromtimestamp(receipt.issued_at, UTC)))
    return sign_receipt(receipt, signer, alg=alg)


# -- top-ups ----------------------------------------------------------------------------------

def top_up(
    session: Session, *, card_number: str, amount_fen: int, idempotency_key: str,
    cashier: Officer, now: datetime,
) -> Answer:
    """Money paid in at a cashier's desk; an outstanding overdraft is repaid first."""
    _check_amount(amount_fen)
    digest = request_hash("topup", {"card_number": card_number, "amount_fen": amount_fen})
    card = get_card(session, card_number=card_number)
    row = lock_card_balance(session, card_id=card.id, now=now, create=True)
    assert row is not None
    stored = find_answer(session, officer_id=cashier.id, key=idempotency_key, digest=digest)
    if stored is not None:
        return stored
    if card.state == "revoked":
        raise Conflict("CARD_REVOKED", "a revoked card cannot be topped up")
    topup_id = _new_id("top")
    owed_before = row.overdraft_fen
    legs = [(cash_account(session, now=now), amount_fen),
            *credit_card(session, row, amount_fen, now=now)]
    txn_id = post(session, kind="topup", reference=topup_id, card_id=card.id, legs=legs, now=now)
    repaid = owed_before - row.overdraft_fen
    session.add(TopUp(id=topup_id, card_id=card.id, amount_fen=amount_fen,
                      overdraft_repaid_fen=repaid, officer_id=cashier.id, created_at=now,
                      transaction_id=txn_id))
    body = {"topup_id": topup_id, "card_number": card.card_number, "amount_fen": amount_fen,
            "overdraft_repaid_fen": repaid, "balance_fen": row.balance_fen,
            "overdraft_fen": row.overdraft_fen, "posted_at": now.isoformat()}
    append_audit(session, actor=Actor.for_officer(cashier), action="account.topped_up",
                 subject=card.card_number,
                 details={"topup_id": topup_id, "amount_fen": amount_fen,
                          "overdraft_repaid_fen": repaid}, now=now)
    return store_answer(session, officer_id=cashier.id, key=idempotency_key, digest=digest,
                        answer=Answer(201, body), now=now)


# -- online charges ---------------------------------------------------------------------------

def charge_online(
    session: Session, *, pay_code: str, amount_fen: int, idempotency_key: str,
    terminal: Terminal, ctx: PaymentContext, now: datetime, challenge: str | None = None,
) -> Answer:
    """Verify the pay code (payment policy, live status), charge it once, sign a receipt.
    A bound code needs its ``challenge``, naming this terminal and exactly this amount.

    Refusals: Invalid with the verifier's code (422), Conflict PAY_CODE_USED (409),
    PaymentRefused INSUFFICIENT_FUNDS (402), Conflict IDEMPOTENCY_KEY_REUSED (409).
    """
    _check_amount(amount_fen)
    digest = charge_request_hash(pay_code=pay_code, amount_fen=amount_fen, challenge=challenge)
    officer_id = terminal.officer_id
    epoch = _epoch(now)
    try:
        sale = _sale_challenge(challenge, terminal=terminal, amount_fen=amount_fen)
    except FmcError as error:
        raise Invalid(error.code.value, error.detail) from None
    cache = ctx.trust_cache
    trust, held_version = (
        (authority_trust(session, issuer=ctx.issuer, now=epoch), None) if cache is None
        else cache.get(session, issuer=ctx.issuer, now=epoch))
    first = verify_any_status(pay_code, trust=trust, now=epoch, challenge=sale)
    credential = _with_card(session, first.credential)
    # A one-use code takes the general path: its handle is marked used under the lock.
    if (credential is not None and not credential.is_one_use and cache is not None
            and session.get_bind().dialect.name == "postgresql"):
        # The common case in two pre-written statements; None: judged below.
        fast = _charge_fast(session, pay_code=pay_code, first=first, credential=credential,
                            trust=trust, held_version=held_version, amount_fen=amount_fen,
                            idempotency_key=idempotency_key, digest=digest,
                            terminal=terminal, ctx=ctx, now=now, sale=sale)
        if fast is not None:
            return fast
    # One statement: lock the card's balance row, and read with it the card, its status
    # entry, the trust state's version and the merchant's ledger account.
    locked = None if credential is None else _lock_for_charge(
        session, credential, merchant_id=terminal.merchant_id)
    card: _CardRow | None
    row: CardBalance | None
    if locked is not None:
        row, card, status, current_version, merchant_ledger = locked
    else:  # no such card, or never topped up: refused below, the slow way
        card = None if credential is None else _card_row(session, credential.card_number)
        row = None if card is None else lock_card_balance(session, card_id=card.id, now=now,
                                                          create=False)
        status, merchant_ledger = None, None
        current_version = None if cache is None else trust_version_now(session)
    if cache is not None and current_version != held_version:
        # Keys changed since the trust list was built (another process): judge again.
        trust, _ = cache.get(session, issuer=ctx.issuer, now=epoch, version=current_version)
        first = verify_any_status(pay_code, trust=trust, now=epoch, challenge=sale)
        credential = _with_card(session, first.credential)
    key = None if credential is None else pay_code_replay_key(pay_code)
    if key is None:
        stored = find_answer(session, officer_id=officer_id, key=idempotency_key,
                             digest=digest)
        charged_before = False
    else:  # read after the lock, in one statement
        *answer_row, paid = session.execute(select(
            *answer_columns(officer_id=officer_id, key=idempotency_key),
            select(Payment.id).where(Payment.replay_key == key.hex()).scalar_subquery(),
        )).one()
        stored = read_answer(*answer_row, digest=digest)
        charged_before = paid is not None
    if stored is not None:
        return stored
    result = (verify_with_status(pay_code, trust=trust, first=first, status=status,
                                 now=epoch, challenge=sale) if locked is not None
              else verify_live_status(session, pay_code, trust=trust, first=first,
                                      now=epoch, challenge=sale))
    _refuse_a_used_handle(session, result, credential)
    if not result.ok or credential is None or key is None:
        raise Invalid(result.code.value, result.detail or "the pay code was refused")
    if card is None:
        raise NotFound("CARD_NOT_FOUND", "the pay code names no card of this authority")
    payment_id = _new_id("pay")
    if charged_before or not _use_handle(session, credential, payment_id=payment_id, now=now):
        raise Conflict("PAY_CODE_USED", "this pay code has already been charged")
    if row is None or row.balance_fen < amount_fen:
        # The balance is on every receipt the till gets anyway; the cashier can tell the
        # customer how much is missing (not for a one-use code: it would link the card).
        raise PaymentRefused("INSUFFICIENT_FUNDS", "the card's balance is too low",
                             **({} if credential.is_one_use else
                                {"balance_fen": 0 if row is None else row.balance_fen}))
    card_legs, _ = debit_card(session, row, amount_fen, now=now, allow_overdraft=False)
    if merchant_ledger is None:
        merchant_ledger = merchant_account(session, merchant_id=terminal.merchant_id, now=now)
    legs = [*card_legs, (merchant_ledger, -amount_fen)]
    receipt = _sign(session, ctx, _for_merchant(credential, Receipt(
        payment_id, "payment", payment_id, ctx.issuer, card.card_number, terminal.merchant_id,
        terminal.id, amount_fen, row.balance_fen, 0, "online", epoch, epoch,
        b64url_encode(key))), trust)
    payment = dict(
        id=payment_id, card_id=card.id, merchant_id=terminal.merchant_id,
        terminal_id=terminal.id, mode="online", amount_fen=amount_fen, refunded_fen=0,
        overdraft_fen=0, balance_after_fen=row.balance_fen, replay_key=key.hex(),
        proof_time=result.proof_time or epoch, accepted_at=now, settled_at=now,
        receipt=receipt)
    body = _body_for_merchant(credential, charge_body(
        payment_id=payment_id, card_number=card.card_number, amount_fen=amount_fen,
        balance_fen=row.balance_fen, merchant_id=terminal.merchant_id,
        terminal_id=terminal.id, now=now, receipt=receipt))
    answer = Answer(201, body)
    if session.get_bind().dialect.name == "postgresql":
        _write_charge(session, row=row, legs=legs, payment=payment, idempotency=dict(
            officer_id=officer_id, key=idempotency_key, request_hash=digest, status_code=201,
            response=canonical_json(body), created_at=now), now=now)
        return answer
    txn_id = post(session, kind="charge", reference=payment_id, card_id=card.id, legs=legs,
                  now=now)
    session.execute(insert(Payment).values(**payment, transaction_id=txn_id))
    return store_answer(session, officer_id=officer_id, key=idempotency_key, digest=digest,
                        answer=answer, now=now)


def charge_request_hash(*, pay_code: str, amount_fen: int, challenge: str | None) -> str:
    """What an online charge's idempotency record is keyed to (the request as sent)."""
    return request_hash("payment", {"pay_code": pay_code, "amount_fen": amount_fen}
                        | ({} if challenge is None else {"challenge": challenge}))


def charge_body(*, payment_id: str, card_number: str, amount_fen: int, balance_fen: int,
                merchant_id: int, terminal_id: int, now: datetime,
                receipt: str) -> dict[str, Any]:
    """An accepted online charge's answer (for a card-bound code)."""
    return {"payment_id": payment_id, "status": "accepted", "mode": "online",
            "card_number": card_number, "amount_fen": amount_fen, "balance_fen": balance_fen,
            "merchant_id": merchant_id, "terminal_id": terminal_id,
            "settled_at": now.isoformat(), "receipt": receipt}


def _charge_fast(
    session: Session, *, pay_code: str, first: VerificationResult, credential: Credential,
    trust: TrustListClaims, held_version: int | None, amount_fen: int, idempotency_key: str,
    digest: str, terminal: Terminal, ctx: PaymentContext, now: datetime,
    sale: Challenge | None,
) -> Answer | None:
    """An online charge that is accepted, on PostgreSQL: one locking read, one write
    (cardsvc/payments/_fast_charge.py). None, having written nothing, whenever the
    general path must judge: any refusal, a stored answer, a moved trust version."""
    epoch = _epoch(now)
    key = pay_code_replay_key(pay_code)
    locked = lock_for_charge(session, credential, replay_key_hex=key.hex(),
                             officer_id=terminal.officer_id, idempotency_key=idempotency_key,
                             merchant_id=terminal.merchant_id)
    if locked is None or locked.trust_version != held_version \
            or locked.balance_fen < amount_fen:
        return None
    result = verify_with_status(pay_code, trust=trust, first=first, status=locked.status,
                                now=epoch, challenge=sale)
    if not result.ok:
        return None
    payment_id = _new_id("pay")
    balance_after = locked.balance_fen - amount_fen
    receipt = _sign(session, ctx, Receipt(
        payment_id, "payment", payment_id, ctx.issuer, locked.card_number,
        terminal.merchant_id, terminal.id, amount_fen, balance_after, 0, "online", epoch,
        epoch, b64url_encode(key)), trust)
    body = charge_body(payment_id=payment_id, card_number=locked.card_number,
                       amount_fen=amount_fen, balance_fen=balance_after,
                       merchant_id=terminal.merchant_id, terminal_id=terminal.id, now=now,
                       receipt=receipt)
    return write_charge(session, locked=locked, body=body, charge=FastCharge(
        payment_id=payment_id, amount_fen=amount_fen, merchant_id=terminal.merchant_id,
        terminal_id=terminal.id, officer_id=terminal.officer_id,
        idempotency_key=idempotency_key, digest=digest, replay_key_hex=key.hex(),
        proof_time=result.proof_time or epoch, receipt=receipt, now=now))


def _lit(column: InstrumentedAttribute[Any], value: object) -> Any:
    return literal(value, column.type)


def _write_charge(
    session: Session, *, row: CardBalance, legs: list[Leg], payment: dict[str, Any],
    idempotency: dict[str, Any], now: datetime,
) -> None:
    """The balance update, the double-entry posting, the payment and the idempotency
    record as one statement (PostgreSQL data-modifying CTEs): one round trip instead of
    five, under the row lock already held. The CHECK on the balance still backs it."""
    entries = balanced_entries("charge", str(payment["id"]), legs)
    new_balance = {"balance_fen": row.balance_fen, "overdraft_fen": row.overdraft_fen,
                   "updated_at": now}
    session.expunge(row)  # written here, not by a later flush
    balance = (update(CardBalance).where(CardBalance.card_id == row.card_id)
               .values(**new_balance).returning(CardBalance.card_id).cte("balance"))
    txn = (insert(LedgerTransaction).from_select(
        ["kind", "reference", "card_id", "posted_at"],
        select(_lit(LedgerTransaction.kind, "charge"),
               _lit(LedgerTransaction.reference, payment["id"]), balance.c.card_id,
               _lit(LedgerTransaction.posted_at, now)))
        .returning(LedgerTransaction.id).cte("txn"))
    posted = insert(LedgerEntry).from_select(
        ["transaction_id", "account_id", "amount_fen"],
        union_all(*(select(txn.c.id, _lit(LedgerEntry.account_id, account),
                           _lit(LedgerEntry.amount_fen, amount)) for account, amount in entries)),
    ).cte("entries")
    paid = insert(Payment).from_select(
        [*payment, "transaction_id"],
        select(*(_lit(getattr(Payment, name), value) for name, value in payment.items()),
               txn.c.id)).cte("payment")
    session.execute(insert(IdempotencyRecord).from_select(
        list(idempotency),
        select(*(_lit(getattr(IdempotencyRecord, name), value)
                 for name, value in idempotency.items())).select_from(txn),
    ).add_cte(balance, txn, posted, paid))


def remember_refused_online(
    session: Session, *, unverified_pay_code: str, code: str, terminal: Terminal,
    now: datetime,
) -> None:
    """Record that the online path refused this pay code, so it never settles offline.

    Run in its own transaction after the refusal rolled back (the refusal changes nothing
    else). Only the replay key is kept; a code that does not even parse is not a pay code
    and cannot settle anyway. The first refusal is kept.

    A ``CHALLENGE_MISMATCH`` is not recorded: anyone who saw a bound code can send it with
    a wrong challenge, and that says nothing about the one sale it can pay for (recording
    it would let a bystander stop the honest till's upload). It is refused before the
    balance is looked at, so the sender learns nothing either."""
    if code == ResultCode.CHALLENGE_MISMATCH:
        return
    try:
        key = pay_code_replay_key(unverified_pay_code).hex()
    except FmcError:
        return
    if session.get(PayCodeSeenOnline, key) is None:
        session.add(PayCodeSeenOnline(replay_key=key, terminal_id=terminal.id, code=code[:64],
                                      seen_at=now))


# -- offline settlement -----------------------------------------------------------------------

def _refused(item: OfflinePayment, code: str) -> Answer:
    return Answer(200, {"idempotency_key": item.idempotency_key, "outcome": "refused",
                        "code": code})


def _offline_taken_that_day(session: Session, *, card_id: int, accepted: int) -> int:
    """Fen settled offline for this card, accepted on the same UTC day as ``accepted``."""
    start = datetime.fromtimestamp(accepted - accepted % 86_400, tz=UTC)
    total = session.scalar(select(func.coalesce(func.sum(Payment.amount_fen), 0)).where(
        Payment.card_id == card_id, Payment.mode == "offline", Payment.accepted_at >= start,
        Payment.accepted_at < start + timedelta(days=1)))
    return int(total or 0)


def settle_offline(
    session: Session, *, item: OfflinePayment, terminal: Terminal, ctx: PaymentContext,
    now: datetime,
) -> Answer:
    """Settle one payment a terminal accepted offline; refusals are answers, not errors.

    The code is verified as of ``accepted_at`` (the terminal trusted the card's status
    then; the status now does not undo an offline acceptance). A pay code charged before
    is a double spend: recorded, not charged, and the card is suspended, unless the same
    terminal sends the same sale again (an online attempt that timed out, then queued).
    A balance too low is charged anyway, the missing part recorded as an overdraft, and
    the card is suspended.
    """
    _check_amount(item.amount_fen)
    accepted = _epoch(item.accepted_at)
    digest = request_hash("offline", {"pay_code": item.pay_code, "amount_fen": item.amount_fen,
                                      "accepted_at": accepted}
                          | ({} if item.challenge is None else {"challenge": item.challenge}))
    officer_id = terminal.officer_id
    stored = find_answer(session, officer_id=officer_id, key=item.idempotency_key,
                         digest=digest)
    if stored is not None:
        return stored
    epoch = _epoch(now)
    if not (epoch - OFFLINE_SETTLEMENT_DAYS * 86_400 <= accepted
            <= epoch + ACCEPTED_AT_LEEWAY_SECONDS):
        return _refused(item, "ACCEPTED_AT_OUT_OF_RANGE")
    try:
        sale = _sale_challenge(item.challenge, terminal=terminal, amount_fen=item.amount_fen)
    except FmcError as error:
        return _refused(item, error.code.value)
    trust = authority_trust(session, issuer=ctx.issuer, now=accepted)
    # A bound code is checked with its challenge as of accepted_at: the sale must have been
    # taken while the challenge was alive.
    result = verify_any_status(item.pay_code, trust=trust, now=accepted, challenge=sale)
    credential = _with_card(session, result.credential)
    if not result.ok or credential is None:
        return _refused(item, result.code.value)
    if item.amount_fen > min(terminal.offline_floor_fen, credential.offline_limit_fen or 0):
        return _refused(item, "OFFLINE_LIMIT_EXCEEDED")
    card = _card_row(session, credential.card_number)
    if card is None:
        return _refused(item, "CARD_NOT_FOUND")
    row = lock_card_balance(session, card_id=card.id, now=now, create=True)
    assert row is not None
    stored = find_answer(session, officer_id=officer_id, key=item.idempotency_key,
                         digest=digest)
    if stored is not None:
        return stored
    key = pay_code_replay_key(item.pay_code)
    original = session.scalar(select(Payment).where(Payment.replay_key == key.hex())) \
        or _handle_payment(session, credential)  # a one-use handle charged before
    base = _body_for_merchant(credential, {"idempotency_key": item.idempotency_key,
                                           "card_number": card.card_number,
                                           "amount_fen": item.amount_fen})
    actor = Actor(f"officer:{officer_id}", officer_id)
    if original is not None:
        if original.terminal_id == terminal.id and original.amount_fen == item.amount_fen:
            body = _body_for_merchant(credential, {
                **base, "outcome": "settled", "code": None, "payment_id": original.id,
                "same_sale": True, "balance_fen": original.balance_after_fen,
                "overdraft_fen": original.overdraft_fen, "card_suspended": False,
                "receipt": original.receipt})
            return store_answer(session, officer_id=officer_id, key=item.idempotency_key,
                                digest=digest, answer=Answer(200, body), now=now)
        # The holder's code was taken twice only if two terminals took it.
        suspend = original.terminal_id != terminal.id and card.state == "active"
        session.add(DoubleSpend(replay_key=key.hex(), original_payment_id=original.id,
                                card_id=card.id, merchant_id=terminal.merchant_id,
                                terminal_id=terminal.id, amount_fen=item.amount_fen,
                                accepted_at=item.accepted_at, detected_at=now,
                                card_suspended=suspend))
        if suspend:
            _suspend(session, card, f"offline double spend of payment {original.id}", actor,
                     now)
        body = {**base, "outcome": "double_spend", "code": "DOUBLE_SPEND",
                "original_payment_id": original.id, "card_suspended": suspend}
        return store_answer(session, officer_id=officer_id, key=item.idempotency_key,
                            digest=digest, answer=Answer(200, body), now=now)
    proof_time = result.proof_time or accepted
    if epoch > proof_time + OFFLINE_UPLOAD_DEADLINE_SECONDS:
        return _refused(item, "OFFLINE_UPLOAD_TOO_LATE")
    if session.get(PayCodeSeenOnline, key.hex()) is not None:
        # Refused online (402, 409, 422 ...): "accepted offline" later is not believable.
        return _refused(item, "PAY_CODE_SEEN_ONLINE")
    if _offline_taken_that_day(session, card_id=card.id, accepted=accepted) + item.amount_fen \
            > _offline_day_cap(session, credential):
        # The card's offline limit holds across all terminals, per UTC day of acceptance;
        # beyond it the merchant took the risk (as past a floor limit), not the holder.
        return _refused(item, "OFFLINE_EXPOSURE_CAP_EXCEEDED")
    payment_id = _new_id("pay")
    _use_handle(session, credential, payment_id=payment_id, now=now)  # unused: checked above
    card_legs, overdraft = debit_card(session, row, item.amount_fen, now=now,
                                      allow_overdraft=True)
    legs = [*card_legs, (merchant_account(session, merchant_id=terminal.merchant_id, now=now),
                         -item.amount_fen)]
    txn_id = post(session, kind="charge", reference=payment_id, card_id=card.id, legs=legs,
               now=now)
    receipt = _sign(session, ctx, _for_merchant(credential, Receipt(
        payment_id, "payment", payment_id, ctx.issuer, card.card_number, terminal.merchant_id,
        terminal.id, item.amount_fen, row.balance_fen, overdraft, "offline", epoch, accepted,
        b64url_encode(key))), trust)
    session.execute(insert(Payment).values(
        id=payment_id, card_id=card.id, merchant_id=terminal.merchant_id,
        terminal_id=terminal.id, mode="offline", amount_fen=item.amount_fen, refunded_fen=0,
        overdraft_fen=overdraft, balance_after_fen=row.balance_fen, replay_key=key.hex(),
        proof_time=result.proof_time or accepted, accepted_at=item.accepted_at,
        settled_at=now, transaction_id=txn_id, receipt=receipt))
    suspend = overdraft > 0 and card.state == "active"
    if suspend:
        _suspend(session, card, f"offline overdraft of {overdraft} fen (payment {payment_id})",
                 actor, now)
    body = _body_for_merchant(credential, {
        **base, "outcome": "settled", "code": None, "payment_id": payment_id,
        "same_sale": False, "balance_fen": row.balance_fen, "overdraft_fen": overdraft,
        "card_suspended": suspend, "receipt": receipt})
    return store_answer(session, officer_id=officer_id, key=item.idempotency_key,
                        digest=digest, answer=Answer(200, body), now=now)


def _suspend(session: Session, card: _CardRow, reason: str, actor: Actor,
             now: datetime) -> None:
    """Through the card service: the status entry changes in this same transaction."""
    change_card_state(session, card_number=card.card_number, action="suspend", reason=reason,
                      actor=actor, now=now)


# -- refunds ----------------------------------------------------------------------------------

def refund_payment(
    session: Session, *, payment_id: str, amount_fen: int, reason: str, idempotency_key: str,
    officer: Officer, terminal: Terminal | None, ctx: PaymentContext, now: datetime,
) -> Answer:
    """Give back up to what is left of a payment; a terminal refunds its merchant's only."""
    _check_amount(amount_fen)
    reason = " ".join(reason.split())[:200]
    digest = request_hash("refund", {"payment_id": payment_id, "amount_fen": amount_fen,
                                     "reason": reason})
    found = session.get(Payment, payment_id) if len(payment_id) <= 32 else None
    if found is None or (terminal is not None and found.merchant_id != terminal.merchant_id):
        raise NotFound("PAYMENT_NOT_FOUND", "no payment with this id at this merchant")
    row = lock_card_balance(session, card_id=found.card_id, now=now, create=True)
    assert row is not None
    stored = find_answer(session, officer_id=officer.id, key=idempotency_key, digest=digest)
    if stored is not None:
        return stored
    payment = session.scalars(for_update(select(Payment).where(Payment.id == payment_id))).one()
    left = payment.amount_fen - payment.refunded_fen
    if amount_fen > left:
        raise Conflict("REFUND_EXCEEDS_PAYMENT", "refunds cannot exceed the payment",
                       refundable_fen=left)
    refund_id = _new_id("rfd")
    legs = [(merchant_account(session, merchant_id=payment.merchant_id, now=now), amount_fen),
            *credit_card(session, row, amount_fen, now=now)]
    txn_id = post(session, kind="refund", reference=refund_id, card_id=payment.card_id,
               legs=legs, now=now)
    payment.refunded_fen += amount_fen
    session.add(Refund(id=refund_id, payment_id=payment.id, merchant_id=payment.merchant_id,
                       amount_fen=amount_fen, reason=reason, officer_id=officer.id,
                       created_at=now, transaction_id=txn_id))
    card_number = session.get_one(Card, payment.card_id).card_number
    epoch = _epoch(now)
    handle = session.scalar(select(PayHandle.handle).where(PayHandle.payment_id == payment.id))
    receipt = _sign(session, ctx, _handle_receipt(handle, Receipt(
        refund_id, "refund", payment.id, ctx.issuer, card_number, payment.merchant_id,
        payment.terminal_id, amount_fen, row.balance_fen, 0, payment.mode, epoch,
        _epoch(payment.accepted_at), b64url_encode(bytes.fromhex(payment.replay_key)))))
    body = {"refund_id": refund_id, "payment_id": payment.id, "amount_fen": amount_fen,
            "refunded_total_fen": payment.refunded_fen, "card_number": card_number,
            "balance_fen": row.balance_fen, "overdraft_fen": row.overdraft_fen,
            "posted_at": now.isoformat(), "receipt": receipt}
    if handle is not None and terminal is not None:  # the merchant's till: no card
        body = _without_card(body, handle)
    append_audit(session, actor=Actor.for_officer(officer), action="payment.refunded",
                 subject=payment.id, details={"refund_id": refund_id, "amount_fen": amount_fen,
                                              "reason": reason}, now=now)
    return store_answer(session, officer_id=officer.id, key=idempotency_key, digest=digest,
                        answer=Answer(201, body), now=now)


# -- one-use pay codes (P13.3) ---------------------------------------------------------------
# Kept apart from the charge path: the handle is resolved to the card number before it, the
# handle is marked used in the same transaction, and what the merchant gets names the handle.

_CARD_FIELDS = ("card_number", "balance_fen", "overdraft_fen")


def _with_card(session: Session, credential: Credential | None) -> Credential | None:
    """A one-use code's handle resolved to its card's number, so the existing path runs
    unchanged; an unknown handle keeps "" and is refused like an unknown card."""
    if credential is None or credential.pay_handle is None:
        return credential
    number = session.scalar(select(Card.card_number)
                            .join(PayHandle, PayHandle.card_id == Card.id)
                            .where(PayHandle.handle == credential.pay_handle.hex()))
    return credential if number is None else credential._replace(card_number=number)


def _use_handle(session: Session, credential: Credential, *, payment_id: str,
                now: datetime) -> bool:
    """Mark the one-use handle used by this payment (after the card's row lock, in the
    charge's transaction) and its status entry invalid, so a till that syncs refuses the
    code offline from then on; False when it was used before. True for a card-bound code."""
    if credential.pay_handle is None:
        return True
    used = session.execute(update(PayHandle)
                           .where(PayHandle.handle == credential.pay_handle.hex(),
                                  PayHandle.used_at.is_(None))
                           .values(used_at=now, payment_id=payment_id)
                           .returning(PayHandle.status_list_id, PayHandle.status_index)).first()
    if used is None:
        return False
    set_entry_status(session, ref=StatusRef(used[0], used[1]), status=STATUS_REVOKED)
    return True


def _refuse_a_used_handle(session: Session, result: VerificationResult,
                          credential: Credential | None) -> None:
    """PAY_CODE_USED for a one-use code whose handle was charged: its status entry is
    invalid (so tills refuse it offline), which the live check reports as REVOKED."""
    if (result.code is ResultCode.REVOKED and credential is not None
            and credential.pay_handle is not None
            and _handle_payment(session, credential) is not None):
        raise Conflict("PAY_CODE_USED", "this pay code has already been charged")


def _offline_day_cap(session: Session, credential: Credential) -> int:
    """The most a card may have settled offline on one day: a card-bound code's ``ol``; a
    one-use code's day limit (the card's tier when it was issued: N credentials of
    ``ol`` = tier // N each), its ``ol`` for a handle from before day-bound credentials."""
    ol = credential.offline_limit_fen or 0
    if credential.pay_handle is None:
        return ol
    day_limit = session.scalar(select(PayHandle.day_limit_fen)
                               .where(PayHandle.handle == credential.pay_handle.hex()))
    return ol if day_limit is None else day_limit


def _handle_payment(session: Session, credential: Credential) -> Payment | None:
    """The payment a one-use handle was already used for (another code of the same
    credential: a new proof time, so another replay key), or None."""
    if credential.pay_handle is None:
        return None
    return session.scalar(select(Payment).join(PayHandle, PayHandle.payment_id == Payment.id)
                          .where(PayHandle.handle == credential.pay_handle.hex()))


def _handle_receipt(handle_hex: str | None, receipt: Receipt) -> Receipt:
    if handle_hex is None:
        return receipt
    return dataclasses.replace(receipt, card_number=None, balance_fen=None, overdraft_fen=None,
                               pay_handle=b64url_encode(bytes.fromhex(handle_hex)))


def _for_merchant(credential: Credential, receipt: Receipt) -> Receipt:
    """A one-use code's receipt names the handle, not the card, its balance or overdraft."""
    handle = credential.pay_handle
    return _handle_receipt(None if handle is None else handle.hex(), receipt)


def _without_card(body: dict[str, Any], handle_hex: str) -> dict[str, Any]:
    return ({name: value for name, value in body.items() if name not in _CARD_FIELDS}
            | {"pay_handle": b64url_encode(bytes.fromhex(handle_hex))})


def _body_for_merchant(credential: Credential, body: dict[str, Any]) -> dict[str, Any]:
    """What a till is answered: for a one-use code, the handle instead of the card number,
    and no balance or overdraft (the phone learns those from the authority)."""
    handle = credential.pay_handle
    return body if handle is None else _without_card(body, handle.hex())
