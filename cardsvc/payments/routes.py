"""The payments API (docs/DESIGN.md sections 9 and 10): merchants and terminals, top-ups,
accounts, online charges, offline settlement, refunds and the daily settlement report.

Every money-moving route takes an ``idempotency_key`` (per officer or terminal): a retry
with the same key and body gets the same answer (header ``Idempotent-Replayed: true``)
and never moves money twice; the same key with another body is 409
IDEMPOTENCY_KEY_REUSED. Errors are problem+json with a stable ``code``.

Example::

    POST /v1/payments {"pay_code": "FMC1:...", "amount_fen": 1250, "idempotency_key": "t1-0042"}
    -> 201 {"payment_id", "status": "accepted", "balance_fen", "receipt", ...}
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import Ctx, PendingOfficer, roles, roles_in_transaction
from cardsvc.api.routes._common import CARD_NUMBER_PATTERN, problems
from cardsvc.metrics import CHARGES, CHARGES_ON_LOOP, OFFLINE_ITEMS
from cardsvc.models import Card, Officer, PayHandle
from cardsvc.payments import charges, interchange_routes, merchants, reports
from cardsvc.payments._idempotency import Answer, transact_settling_races
from cardsvc.payments.charges import MAX_AMOUNT_FEN, OfflinePayment, PaymentContext
from cardsvc.payments.merchants import MAX_FLOOR_FEN, terminal_of
from cardsvc.payments.models import Payment, Terminal
from cardsvc.roles import Role
from cardsvc.services.audit import Actor
from cardsvc.services.errors import DomainError, Forbidden, NotFound
from schemas import b64url_encode
from schemas.challenge import MAX_CHALLENGE_CHARS
from schemas.presentation import MAX_PRESENTATION_CHARS

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["payments"])
T = TypeVar("T")

_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Fen = Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT_FEN,
                           description="integer fen (1 yuan = 100 fen)")]
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                                  pattern=r"^[A-Za-z0-9._:-]+$")]
PayCode = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PRESENTATION_CHARS)]
ChallengeText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CHALLENGE_CHARS)]
CardNumber = Annotated[str, Path(pattern=CARD_NUMBER_PATTERN)]
PaymentId = Annotated[str, Path(pattern=r"^pay_[0-9a-f]{20}$")]
MerchantId = Annotated[int, Path(ge=1, le=2**31 - 1)]
_READERS = (Role.cashier, Role.auditor, Role.supervisor)

Supervisor = Annotated[Officer, Depends(roles(Role.supervisor))]
Cashier = Annotated[Officer, Depends(roles(Role.cashier))]
TerminalOfficer = Annotated[Officer, Depends(roles(Role.terminal))]
# The token checked in the route's own transaction (POST /v1/payments, P11)
TerminalToCheck = Annotated[PendingOfficer, Depends(roles_in_transaction(Role.terminal))]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MerchantIn(_In):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_PRINTABLE)]


class TerminalIn(MerchantIn):
    offline_floor_fen: int = Field(default=20_000, strict=True, ge=0, le=MAX_FLOOR_FEN)


class TopUpIn(_In):
    amount_fen: Fen
    idempotency_key: IdempotencyKey


class PaymentIn(_In):
    pay_code: PayCode
    amount_fen: Fen
    idempotency_key: IdempotencyKey
    challenge: ChallengeText | None = Field(
        default=None, description="the sale challenge (FMCC1:) a bound FMC2: code signs")


class OfflineItemIn(PaymentIn):
    accepted_at: AwareDatetime = Field(description="when the terminal accepted it (ISO 8601)")


class OfflineBatchIn(_In):
    items: list[OfflineItemIn] = Field(min_length=1, max_length=200)


class RefundIn(_In):
    amount_fen: Fen
    idempotency_key: IdempotencyKey
    reason: Annotated[str, StringConstraints(max_length=200, pattern=_PRINTABLE)] = ""


class TerminalOut(BaseModel):
    terminal_id: int
    name: str
    merchant_id: int
    merchant_name: str
    offline_floor_fen: int
    officer_id: int


class MerchantOut(BaseModel):
    merchant_id: int
    name: str
    created_at: datetime
    terminals: list[TerminalOut] = Field(default_factory=list)


class TerminalCreatedOut(TerminalOut):
    token: str = Field(description="shown once; only its hash is stored")


class TopUpOut(BaseModel):
    topup_id: str
    card_number: str
    amount_fen: int
    overdraft_repaid_fen: int
    balance_fen: int
    overdraft_fen: int
    posted_at: datetime


class PaymentOut(BaseModel):
    payment_id: str
    status: Literal["accepted"]
    mode: Literal["online"]
    card_number: str | None = Field(default=None, description="absent for a one-use pay code")
    pay_handle: str | None = Field(default=None, description="a one-use pay code's handle")
    amount_fen: int
    balance_fen: int | None = Field(default=None, description="absent for a one-use pay code")
    merchant_id: int
    terminal_id: int
    settled_at: datetime
    receipt: str = Field(description="compact JWS, typ fmc-receipt+jwt, signed by the issuer")


class OfflineResultOut(BaseModel):
    idempotency_key: str
    outcome: Literal["settled", "double_spend", "refused"]
    code: str | None = Field(description="why it was refused, or DOUBLE_SPEND")
    card_number: str | None = None
    pay_handle: str | None = None
    amount_fen: int | None = None
    payment_id: str | None = None
    original_payment_id: str | None = None
    same_sale: bool | None = None
    balance_fen: int | None = None
    overdraft_fen: int | None = None
    card_suspended: bool | None = None
    receipt: str | None = None


class OfflineBatchOut(BaseModel):
    results: list[OfflineResultOut]


class RefundOut(BaseModel):
    refund_id: str
    payment_id: str
    amount_fen: int
    refunded_total_fen: int
    card_number: str | None = None  # absent for a till refunding a one-use pay code
    pay_handle: str | None = None
    balance_fen: int | None = None
    overdraft_fen: int | None = None
    posted_at: datetime
    receipt: str


class TransactionOut(BaseModel):
    transaction_id: int
    kind: Literal["topup", "charge", "refund"]
    reference: str
    posted_at: datetime
    amount_fen: int = Field(description="the holder's view: money in +, out -")
    balance_change_fen: int
    overdraft_change_fen: int
    merchant_id: int | None


class AccountOut(BaseModel):
    card_number: str
    card_state: str
    balance_fen: int
    overdraft_fen: int
    transactions: list[TransactionOut]
    next_before: int | None


class PaymentViewOut(BaseModel):
    payment_id: str
    mode: str
    card_number: str | None = Field(default=None, description="absent for a till when paid"
                                    " with a one-use pay code")
    pay_handle: str | None = None
    merchant_id: int
    terminal_id: int
    amount_fen: int
    refunded_fen: int
    overdraft_fen: int
    accepted_at: datetime
    settled_at: datetime
    receipt: str


class CountOut(BaseModel):
    count: int
    total_fen: int


class ChargesOut(CountOut):
    online: CountOut
    offline: CountOut


class TerminalDayOut(CountOut):
    terminal_id: int


class SettlementOut(BaseModel):
    merchant_id: int
    merchant_name: str
    date: date
    timezone: str
    charges: ChargesOut
    refunds: CountOut
    double_spends: CountOut
    net_fen: int
    ledger_net_fen: int
    reconciled: bool = Field(description="net_fen equals the merchant account's movement")
    owed_to_merchant_fen: int
    terminals: list[TerminalDayOut]


# -- plumbing ---------------------------------------------------------------------------------

def _payments(ctx: Ctx) -> PaymentContext:
    return PaymentContext(ctx.keyring, ctx.settings.issuer, ctx.trust_cache)


def _transact(ctx: Ctx, work: Callable[[Session], T]) -> T:
    return transact_settling_races(ctx.database, work)


def _respond(answer: Answer) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return JSONResponse(answer.body, status_code=answer.status_code, headers=headers)


def _terminal_out(terminal: Terminal, merchant_name: str) -> TerminalOut:
    return TerminalOut(terminal_id=terminal.id, name=terminal.name,
                       merchant_id=terminal.merchant_id, merchant_name=merchant_name,
                       offline_floor_fen=terminal.offline_floor_fen,
                       officer_id=terminal.officer_id)


def _is_reader(officer: Officer) -> bool:
    return bool(officer.role_set & set(_READERS))


# -- merchants and terminals ------------------------------------------------------------------

@router.post("/merchants", response_model=MerchantOut, status_code=201,
             responses=problems(401, 403, 422))
def create_merchant(body: MerchantIn, ctx: Ctx, officer: Supervisor) -> MerchantOut:
    def work(session: Session) -> MerchantOut:
        merchant = merchants.create_merchant(session, name=body.name,
                                             actor=Actor.for_officer(officer), now=ctx.clock())
        return MerchantOut(merchant_id=merchant.id, name=merchant.name,
                           created_at=merchant.created_at)

    return ctx.database.transact(work)


@router.get("/merchants/{merchant_id}", response_model=MerchantOut,
            responses=problems(401, 403, 404, 422))
def get_merchant(
    merchant_id: MerchantId, ctx: Ctx,
    _officer: Annotated[Officer, Depends(roles(*_READERS))],
) -> MerchantOut:
    def work(session: Session) -> MerchantOut:
        merchant = merchants.get_merchant(session, merchant_id=merchant_id)
        terminals = session.scalars(select(Terminal).where(Terminal.merchant_id == merchant.id)
                                    .order_by(Terminal.id))
        return MerchantOut(merchant_id=merchant.id, name=merchant.name,
                           created_at=merchant.created_at,
                           terminals=[_terminal_out(t, merchant.name) for t in terminals])

    return ctx.database.transact(work, readonly=True)


@router.post("/merchants/{merchant_id}/terminals", response_model=TerminalCreatedOut,
             status_code=201, responses=problems(401, 403, 404, 422))
def register_terminal(
    merchant_id: MerchantId, body: TerminalIn, ctx: Ctx, officer: Supervisor
) -> TerminalCreatedOut:
    """A terminal of this merchant with its own token (in this answer only)."""

    def work(session: Session) -> TerminalCreatedOut:
        terminal, token = merchants.register_terminal(
            session, merchant_id=merchant_id, name=body.name,
            offline_floor_fen=body.offline_floor_fen, actor=Actor.for_officer(officer),
            now=ctx.clock())
        name = merchants.get_merchant(session, merchant_id=merchant_id).name
        return TerminalCreatedOut(**_terminal_out(terminal, name).model_dump(), token=token)

    return ctx.database.transact(work)


@router.get("/terminal", response_model=TerminalOut, responses=problems(401, 403))
def this_terminal(ctx: Ctx, officer: TerminalOfficer) -> TerminalOut:
    """The calling terminal: its merchant and offline floor (``verifier terminal setup``)."""

    def work(session: Session) -> TerminalOut:
        terminal = terminal_of(session, officer)
        name = merchants.get_merchant(session, merchant_id=terminal.merchant_id).name
        return _terminal_out(terminal, name)

    return ctx.database.transact(work, readonly=True)


# -- accounts ---------------------------------------------------------------------------------

@router.post("/accounts/{card_number}/topups", response_model=TopUpOut, status_code=201,
             responses=problems(401, 403, 404, 409, 422))
def top_up(card_number: CardNumber, body: TopUpIn, ctx: Ctx, officer: Cashier) -> JSONResponse:
    """Money paid in at a cashier's desk; an outstanding overdraft is repaid first."""
    now = ctx.clock()
    return _respond(_transact(ctx, lambda session: charges.top_up(
        session, card_number=card_number, amount_fen=body.amount_fen,
        idempotency_key=body.idempotency_key, cashier=officer, now=now)))


@router.get("/accounts/{card_number}", response_model=AccountOut,
            responses=problems(401, 403, 404, 422))
def account(
    card_number: CardNumber, ctx: Ctx,
    _officer: Annotated[Officer, Depends(roles(*_READERS))],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> dict[str, Any]:
    """Balance, overdraft owed, and transactions newest first (page with ``before``)."""
    return ctx.database.transact(lambda session: reports.account_view(
        session, card_number=card_number, limit=limit, before=before), readonly=True)


# -- payments ---------------------------------------------------------------------------------

@router.post("/payments", response_model=PaymentOut, status_code=201,
             responses=problems(401, 402, 403, 404, 409, 422, 503))
async def pay(body: PaymentIn, ctx: Ctx, pending: TerminalToCheck,
              request: Request) -> JSONResponse:
    """Charge a scanned pay code once. Refusals: 409 PAY_CODE_USED, 402
    INSUFFICIENT_FUNDS, 422 with the verifier's code (e.g. REVOKED, HOLDER_PROOF_STALE).
    A card of another city is forwarded to it (docs/FEDERATION.md): its receipt, ``202``
    while pending, or 503 ISSUER_UNREACHABLE with ``offline_allowed``.

    An accepted charge is made on the event loop in two statements on PostgreSQL (P11,
    cardsvc/payments/_loop_charge.py); anything else, and every refusal, takes the
    general path on a worker thread."""
    now = ctx.clock()
    answer = await ctx.loop_charges.charge(
        unverified_token=pending.unverified_token, pay_code=body.pay_code,
        amount_fen=body.amount_fen, idempotency_key=body.idempotency_key,
        challenge=body.challenge, now=now)
    if answer is not None:
        CHARGES.labels("OK").inc()
        CHARGES_ON_LOOP.inc()
        return _respond(answer)
    return await run_in_threadpool(_pay, body, ctx, pending, request, now)


def _pay(body: PaymentIn, ctx: Ctx, pending: PendingOfficer, request: Request,
         now: datetime) -> JSONResponse:
    """The general path. The terminal's token is checked first thing in the charge's own
    transaction (P11: one pooled connection and one thread-pool hop per charge, not two);
    a bad token is 401 and nothing else is read or written."""
    payments = _payments(ctx)
    officer: Officer | None = None
    if ctx.settings.federation_root:  # the branch point: a card of another city
        officer = ctx.database.transact(pending.check, single_read=True)
        forwarded = interchange_routes.forward_if_foreign(
            request, ctx, officer=officer, pay_code=body.pay_code,
            amount_fen=body.amount_fen, idempotency_key=body.idempotency_key,
            challenge=body.challenge, now=now)
        if forwarded is not None:
            CHARGES.labels("FORWARDED" if forwarded.status_code < 300 else
                           str(forwarded.body.get("code", forwarded.status_code))).inc()
            return interchange_routes.respond(forwarded)
    checked: list[int] = []  # the officer's id, once its token has been checked

    def work(session: Session) -> Answer:
        # First, on every attempt: a bad token reads and writes nothing else.
        checked.clear()
        caller = officer or pending.check(session)
        checked.append(caller.id)  # the row itself expires if this transaction rolls back
        return charges.charge_online(
            session, pay_code=body.pay_code, amount_fen=body.amount_fen,
            idempotency_key=body.idempotency_key, terminal=ctx.terminals.of(session, caller),
            ctx=payments, now=now, challenge=body.challenge)

    try:
        answered = _respond(_transact(ctx, work))
    except DomainError as refusal:
        if not checked:
            raise  # the token was refused: not a refusal of the pay code
        officer_id = checked[0]
        refused_code = refusal.code
        CHARGES.labels(refused_code).inc()
        if refused_code == "IDEMPOTENCY_KEY_REUSED":
            raise  # a refusal of the key, not of the pay code
        # The one intended effect of a refusal, in its own transaction: this code can
        # never settle offline afterwards (docs/PAYMENTS.md, "Seen online").
        with contextlib.suppress(DomainError):  # not a terminal: nothing to remember
            _transact(ctx, lambda session: charges.remember_refused_online(
                session, unverified_pay_code=body.pay_code, code=refused_code,
                terminal=terminal_of(session, session.get_one(Officer, officer_id)), now=now))
        raise
    CHARGES.labels("OK").inc()
    return answered


@router.post("/payments/offline-batch", response_model=OfflineBatchOut,
             responses=problems(401, 403, 422, 503))
def offline_batch(body: OfflineBatchIn, ctx: Ctx, officer: TerminalOfficer,
                  request: Request) -> OfflineBatchOut:
    """Settle what a terminal accepted offline, each item on its own (``settled``,
    ``double_spend`` or ``refused`` with a code). Safe to send again: every item has its
    idempotency key. Items of another city's cards are settled by that city; 503
    ISSUER_UNREACHABLE when it cannot be reached now."""
    now = ctx.clock()
    payments = _payments(ctx)
    offline_items = [OfflinePayment(item.pay_code, item.amount_fen, item.accepted_at,
                                    item.idempotency_key, item.challenge)
                     for item in body.items]
    forwarded: dict[int, dict[str, Any]] = {}
    if ctx.settings.federation_root:  # the branch point: cards of other cities
        forwarded = interchange_routes.offline_items_of_other_cities(
            request, ctx, officer=officer, items=offline_items, now=now)
    results = []
    for index, offline in enumerate(offline_items):
        if index in forwarded:
            result = OfflineResultOut.model_validate(forwarded[index])
            OFFLINE_ITEMS.labels(result.outcome, result.code or "").inc()
            results.append(result)
            continue

        def work(session: Session, offline: OfflinePayment = offline) -> Answer:
            return charges.settle_offline(session, item=offline,
                                          terminal=terminal_of(session, officer),
                                          ctx=payments, now=now)

        result = OfflineResultOut.model_validate(_transact(ctx, work).body)
        OFFLINE_ITEMS.labels(result.outcome, result.code or "").inc()
        results.append(result)
    return OfflineBatchOut(results=results)


@router.get("/payments/{payment_id}", response_model=PaymentViewOut,
            responses=problems(401, 403, 404, 422))
def get_payment(
    payment_id: PaymentId, ctx: Ctx,
    officer: Annotated[Officer, Depends(roles(Role.terminal, *_READERS))],
) -> PaymentViewOut:
    def work(session: Session) -> PaymentViewOut:
        payment = session.get(Payment, payment_id)
        if payment is None or (not _is_reader(officer) and
                               terminal_of(session, officer).merchant_id != payment.merchant_id):
            raise NotFound("PAYMENT_NOT_FOUND", "no payment with this id at this merchant")
        handle = session.scalar(select(PayHandle.handle)
                                .where(PayHandle.payment_id == payment.id))
        # A till never learns the card behind a one-use pay code (P13.3).
        hidden = handle is not None and not _is_reader(officer)
        return PaymentViewOut(
            payment_id=payment.id, mode=payment.mode,
            card_number=None if hidden else session.get_one(Card, payment.card_id).card_number,
            pay_handle=None if handle is None else b64url_encode(bytes.fromhex(handle)),
            merchant_id=payment.merchant_id, terminal_id=payment.terminal_id,
            amount_fen=payment.amount_fen, refunded_fen=payment.refunded_fen,
            overdraft_fen=payment.overdraft_fen, accepted_at=payment.accepted_at,
            settled_at=payment.settled_at, receipt=payment.receipt)

    return ctx.database.transact(work, readonly=True)


@router.post("/payments/{payment_id}/refund", response_model=RefundOut, status_code=201,
             responses=problems(401, 403, 404, 409, 422))
def refund(
    payment_id: PaymentId, body: RefundIn, ctx: Ctx,
    officer: Annotated[Officer, Depends(roles(Role.cashier, Role.terminal))],
) -> JSONResponse:
    """Give money back on a payment (in parts, up to its amount). A terminal refunds only
    its own merchant's payments."""
    now = ctx.clock()
    payments = _payments(ctx)

    def work(session: Session) -> Answer:
        terminal = None if Role.cashier in officer.role_set else terminal_of(session, officer)
        return charges.refund_payment(
            session, payment_id=payment_id, amount_fen=body.amount_fen, reason=body.reason,
            idempotency_key=body.idempotency_key, officer=officer, terminal=terminal,
            ctx=payments, now=now)

    return _respond(_transact(ctx, work))


# -- settlement -------------------------------------------------------------------------------

@router.get("/merchants/{merchant_id}/settlement", response_model=SettlementOut,
            responses=problems(401, 403, 404, 422))
def settlement(
    merchant_id: MerchantId, ctx: Ctx,
    officer: Annotated[Officer, Depends(roles(Role.terminal, *_READERS))],
    day: Annotated[date, Query(alias="date", description="business day (UTC+8), YYYY-MM-DD",
                               ge=date(2000, 1, 1), le=date(2200, 12, 31))],
) -> dict[str, Any]:
    """One business day of a merchant: charges (online, offline), refunds, double spends,
    and whether their net equals the movement of the merchant's ledger account."""

    def work(session: Session) -> dict[str, Any]:
        if not _is_reader(officer) and terminal_of(session, officer).merchant_id != merchant_id:
            raise Forbidden("FORBIDDEN", "a terminal reads its own merchant's settlement only")
        return reports.settlement_report(session, merchant_id=merchant_id, day=day)

    return ctx.database.transact(work, readonly=True)
