"""The issuer's side of payments between cities (docs/FEDERATION.md, "Payments between
cities"): another city (the acquirer) forwards a charge of one of our cards over a signed
request, and we charge it exactly once per ``(acquirer, g)``.

Each function runs in the caller's transaction. A charge debits the card and credits the
payable account ``interchange:<acquirer>`` (our ledger still sums to zero), signs the
receipt with our key (naming the acquirer's merchant and terminal, so the acquirer's
terminal checks it offline through the federation list) and stores the answer under
``(acquirer, g)``. A void of ``g`` refuses a later charge; a charged ``g`` is reversed
with a refund receipt. Offline items are settled by the same rules as our own
terminals' (:func:`cardsvc.payments.charges.settle_offline`), through one stand-in
terminal per acquirer city, then cleared to ``interchange:<acquirer>``.

Example::

    answer = charge_for_acquirer(session, acquirer="CN-YW", g="CN-YW:7:k1",
                                 pay_code=text, amount_fen=1250, merchant_id=3,
                                 terminal_id=7, ctx=ctx, now=now)
    void_for_acquirer(session, acquirer="CN-YW", g="CN-YW:7:k2", ctx=ctx, now=now)
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from cardsvc.models import Card, PayHandle
from cardsvc.payments._idempotency import Answer, request_hash
from cardsvc.payments._paycode import (
    authority_trust,
    pay_code_replay_key,
    verify_any_status,
    verify_live_status,
)
from cardsvc.payments.charges import (
    OfflinePayment,
    PaymentContext,
    _body_for_merchant,
    _card_row,
    _for_merchant,
    _handle_receipt,
    _new_id,
    _refuse_a_used_handle,
    _sign,
    _use_handle,
    _with_card,
    settle_offline,
)
from cardsvc.payments.interchange_models import InterchangeCharge
from cardsvc.payments.ledger import (
    _account,
    credit_card,
    debit_card,
    lock_card_balance,
    merchant_account,
    post,
)
from cardsvc.payments.merchants import MAX_FLOOR_FEN
from cardsvc.payments.models import Merchant, Payment, Refund, Terminal
from cardsvc.payments.receipts import Receipt
from cardsvc.roles import Role
from cardsvc.services._locking import for_update
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.errors import Conflict, Invalid, NotFound, PaymentRefused
from cardsvc.services.officers import create_officer
from schemas import FmcError, b64url_encode
from schemas.challenge import decode_challenge
from schemas.codes import ResultCode
from schemas.receipt import MAX_AMOUNT_FEN

__all__ = [
    "acquirer_terminal",
    "charge_for_acquirer",
    "interchange_account",
    "interchange_account_key",
    "settle_for_acquirer",
    "void_for_acquirer",
]


def interchange_account_key(city: str) -> str:
    return f"interchange:{city}"


def interchange_account(session: Session, *, city: str, now: datetime) -> int:
    """What we owe ``city`` (as issuer: a liability) or it owes us (as acquirer: an asset);
    one account per peer city, both directions on it."""
    return _account(session, interchange_account_key(city), "interchange", now=now)


def _dumps(body: dict[str, object]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def acquirer_terminal(session: Session, *, acquirer: str, now: datetime) -> Terminal:
    """The stand-in merchant and terminal under which another city's charges of our cards
    are recorded (a payment names a local terminal; its token is never shown). Made once."""
    name = f"interchange {acquirer}"
    found = session.scalar(select(Terminal).join(Merchant, Merchant.id == Terminal.merchant_id)
                           .where(Merchant.name == name, Terminal.name == name))
    if found is not None:
        return found
    actor = Actor.cli()
    merchant = Merchant(name=name, created_at=now, created_by=None)
    session.add(merchant)
    session.flush()
    officer, _token = create_officer(session, name=name, roles=[Role.terminal], actor=actor,
                                     now=now)
    # The acquirer holds its own terminal to its floor; the card's offline limit is ours.
    terminal = Terminal(officer_id=officer.id, merchant_id=merchant.id, name=name,
                        offline_floor_fen=MAX_FLOOR_FEN, created_at=now)
    session.add(terminal)
    session.flush()
    append_audit(session, actor=actor, action="interchange.acquirer_registered",
                 subject=f"terminal:{terminal.id}", details={"acquirer": acquirer}, now=now)
    return terminal


def _check_amount(amount_fen: int) -> None:
    if type(amount_fen) is not int or not 0 < amount_fen <= MAX_AMOUNT_FEN:
        raise Invalid("INVALID_AMOUNT", f"amount_fen is an integer from 1 to {MAX_AMOUNT_FEN}")


def _stored(session: Session, *, acquirer: str, g: str, digest: str,
            lock: bool) -> Answer | None:
    query = select(InterchangeCharge).where(InterchangeCharge.acquirer == acquirer,
                                            InterchangeCharge.g == g)
    record = session.scalar(for_update(query) if lock else query)
    if record is None:
        return None
    if record.kind == "void":
        raise Conflict("FORWARD_VOIDED", "the acquirer voided this forward id before it came")
    if record.request_hash != digest:
        raise Conflict("IDEMPOTENCY_KEY_REUSED", "this forward id was used for another request")
    return Answer(record.status_code, json.loads(record.response), replayed=True)


def charge_for_acquirer(
    session: Session, *, acquirer: str, g: str, pay_code: str, amount_fen: int,
    merchant_id: int, terminal_id: int, ctx: PaymentContext, now: datetime,
    challenge: str | None = None,
) -> Answer:
    """Charge one of our cards for a sale at ``acquirer``'s terminal, once per ``g``.

    Refusals as for our own terminals (422 verifier code, 409 PAY_CODE_USED, 402
    INSUFFICIENT_FUNDS), plus 409 FORWARD_VOIDED and IDEMPOTENCY_KEY_REUSED.
    """
    _check_amount(amount_fen)
    digest = request_hash("interchange-charge", {
        "pay_code": pay_code, "amount_fen": amount_fen, "merchant_id": merchant_id,
        "terminal_id": terminal_id, "challenge": challenge})
    epoch = int(now.timestamp())
    try:
        sale = None if challenge is None else decode_challenge(challenge)
    except FmcError as error:
        raise Invalid(error.code.value, error.detail) from None
    if sale is not None and (sale.merchant_id, sale.terminal_id, sale.amount_fen) != (
            merchant_id, terminal_id, amount_fen):
        raise Invalid(ResultCode.CHALLENGE_MISMATCH.value,
                      "the challenge names another terminal, merchant or amount")
    trust = authority_trust(session, issuer=ctx.issuer, now=epoch)
    first = verify_any_status(pay_code, trust=trust, now=epoch, challenge=sale)
    credential = _with_card(session, first.credential)  # a one-use code's handle (P13.3)
    card = None if credential is None else _card_row(session, credential.card_number)
    row = None if card is None else lock_card_balance(session, card_id=card.id, now=now,
                                                      create=False)
    stored = _stored(session, acquirer=acquirer, g=g, digest=digest, lock=True)
    if stored is not None:
        return stored
    result = verify_live_status(session, pay_code, trust=trust, first=first, now=epoch,
                                challenge=sale)
    _refuse_a_used_handle(session, result, credential)
    if not result.ok or credential is None:
        raise Invalid(result.code.value, result.detail or "the pay code was refused")
    if card is None:
        raise NotFound("CARD_NOT_FOUND", "the pay code names no card of this authority")
    key = pay_code_replay_key(pay_code)
    payment_id = _new_id("pay")
    if session.scalar(select(Payment.id).where(Payment.replay_key == key.hex())) is not None \
            or not _use_handle(session, credential, payment_id=payment_id, now=now):
        raise Conflict("PAY_CODE_USED", "this pay code has already been charged")
    if row is None or row.balance_fen < amount_fen:
        raise PaymentRefused("INSUFFICIENT_FUNDS", "the card's balance is too low",
                             **({} if credential.is_one_use else
                                {"balance_fen": 0 if row is None else row.balance_fen}))
    stand_in = acquirer_terminal(session, acquirer=acquirer, now=now)
    card_legs, _ = debit_card(session, row, amount_fen, now=now, allow_overdraft=False)
    txn_id = post(session, kind="charge", reference=payment_id, card_id=card.id, legs=[
        *card_legs, (interchange_account(session, city=acquirer, now=now), -amount_fen)],
        now=now)
    receipt = _sign(session, ctx, _for_merchant(credential, Receipt(
        payment_id, "payment", payment_id, ctx.issuer, card.card_number, merchant_id,
        terminal_id, amount_fen, row.balance_fen, 0, "online", epoch, epoch,
        b64url_encode(key))), trust)
    session.execute(insert(Payment).values(
        id=payment_id, card_id=card.id, merchant_id=stand_in.merchant_id,
        terminal_id=stand_in.id, mode="online", amount_fen=amount_fen, refunded_fen=0,
        overdraft_fen=0, balance_after_fen=row.balance_fen, replay_key=key.hex(),
        proof_time=result.proof_time or epoch, accepted_at=now, settled_at=now,
        transaction_id=txn_id, receipt=receipt))
    body: dict[str, object] = _body_for_merchant(credential, {
        "g": g, "acquirer": acquirer, "issuer": ctx.issuer, "payment_id": payment_id,
        "status": "accepted", "mode": "online", "card_number": card.card_number,
        "amount_fen": amount_fen, "balance_fen": row.balance_fen, "merchant_id": merchant_id,
        "terminal_id": terminal_id, "settled_at": now.isoformat(), "receipt": receipt})
    session.add(InterchangeCharge(
        acquirer=acquirer, g=g, kind="charge", state="charged", request_hash=digest,
        payment_id=payment_id, amount_fen=amount_fen, issued_at=epoch, status_code=201,
        response=_dumps(body), created_at=now, updated_at=now))
    return Answer(201, dict(body))


def void_for_acquirer(
    session: Session, *, acquirer: str, g: str, ctx: PaymentContext, now: datetime,
) -> Answer:
    """Void ``g``: a charge that never came is refused when it comes (FORWARD_VOIDED); one
    that was charged is reversed (card credited, payable debited, refund receipt). The same
    void again gives the same answer."""
    query = select(InterchangeCharge).where(InterchangeCharge.acquirer == acquirer,
                                            InterchangeCharge.g == g)
    peek = session.scalar(query)
    if peek is None:
        body: dict[str, object] = {"g": g, "acquirer": acquirer, "state": "void",
                                   "reversed_fen": 0}
        session.add(InterchangeCharge(
            acquirer=acquirer, g=g, kind="void", state="void", request_hash="", amount_fen=0,
            status_code=200, response=_dumps(body), void_response=_dumps(body),
            created_at=now, updated_at=now))
        return Answer(200, body)
    if peek.void_response is not None:
        return Answer(200, json.loads(peek.void_response), replayed=True)
    payment = session.get(Payment, peek.payment_id) if peek.payment_id else None
    if peek.state != "charged" or payment is None:
        body = {"g": g, "acquirer": acquirer, "state": "void", "reversed_fen": 0}
        peek.state, peek.void_response, peek.updated_at = "void", _dumps(body), now
        return Answer(200, body)
    # The card's row first, as a charge locks it, then the record: no lock cycle.
    row = lock_card_balance(session, card_id=payment.card_id, now=now, create=True)
    assert row is not None
    record = session.scalars(for_update(query)).one()
    if record.void_response is not None:
        return Answer(200, json.loads(record.void_response), replayed=True)
    amount = record.amount_fen
    refund_id = _new_id("rfd")
    txn_id = post(session, kind="refund", reference=refund_id, card_id=payment.card_id, legs=[
        (interchange_account(session, city=acquirer, now=now), amount),
        *credit_card(session, row, amount, now=now)], now=now)
    stand_in = acquirer_terminal(session, acquirer=acquirer, now=now)
    locked = session.scalars(for_update(select(Payment).where(Payment.id == payment.id))).one()
    locked.refunded_fen += amount
    session.add(Refund(id=refund_id, payment_id=payment.id, merchant_id=payment.merchant_id,
                       amount_fen=amount, reason=f"void of forward {g}"[:200],
                       officer_id=stand_in.officer_id, created_at=now, transaction_id=txn_id))
    charged = json.loads(record.response)
    epoch = int(now.timestamp())
    handle = session.scalar(select(PayHandle.handle).where(PayHandle.payment_id == payment.id))
    receipt = _sign(session, ctx, _handle_receipt(handle, Receipt(
        refund_id, "refund", payment.id, ctx.issuer,
        session.get_one(Card, payment.card_id).card_number,
        int(charged["merchant_id"]), int(charged["terminal_id"]), amount, row.balance_fen, 0,
        "online", epoch, int(payment.accepted_at.timestamp()),
        b64url_encode(bytes.fromhex(payment.replay_key)))))
    body = {"g": g, "acquirer": acquirer, "state": "reversed", "reversed_fen": amount,
            "refund_id": refund_id, "receipt": receipt}
    record.state, record.amount_fen = "reversed", 0
    record.void_response, record.updated_at = _dumps(body), now
    append_audit(session, actor=Actor.cli(), action="interchange.reversed", subject=payment.id,
                 details={"acquirer": acquirer, "g": g, "amount_fen": amount}, now=now)
    return Answer(200, body)


def settle_for_acquirer(
    session: Session, *, acquirer: str, g: str, item: OfflinePayment, merchant_id: int,
    terminal_id: int, ctx: PaymentContext, now: datetime,
) -> Answer:
    """Settle one offline sale of our card at ``acquirer``'s terminal, under our offline
    rules (double spend and overdraft flagged, card suspended as for our own terminals);
    what is settled is owed to the acquirer (``interchange:<acquirer>``)."""
    digest = request_hash("interchange-upload", {
        "pay_code": item.pay_code, "amount_fen": item.amount_fen,
        "accepted_at": int(item.accepted_at.timestamp()), "challenge": item.challenge,
        "merchant_id": merchant_id, "terminal_id": terminal_id})
    stored = _stored(session, acquirer=acquirer, g=g, digest=digest, lock=False)
    if stored is not None:
        return stored
    stand_in = acquirer_terminal(session, acquirer=acquirer, now=now)
    local_key = hashlib.sha256(g.encode("utf-8")).hexdigest()
    settled = settle_offline(session, item=OfflinePayment(
        item.pay_code, item.amount_fen, item.accepted_at, local_key, item.challenge),
        terminal=stand_in, ctx=ctx, now=now)
    body = dict(settled.body) | {"g": g, "idempotency_key": item.idempotency_key}
    owed = 0
    if body.get("outcome") == "settled" and not body.get("same_sale"):
        payment = session.get_one(Payment, body["payment_id"])
        owed = item.amount_fen
        post(session, kind="charge", reference=payment.id, card_id=payment.card_id, legs=[
            (merchant_account(session, merchant_id=stand_in.merchant_id, now=now), owed),
            (interchange_account(session, city=acquirer, now=now), -owed)], now=now)
    session.add(InterchangeCharge(
        acquirer=acquirer, g=g, kind="upload", state="charged" if owed else "refused",
        request_hash=digest, payment_id=body.get("payment_id") if owed else None,
        amount_fen=owed, issued_at=int(now.timestamp()) if owed else None, status_code=200,
        response=_dumps(body), created_at=now, updated_at=now))
    return Answer(200, body)
