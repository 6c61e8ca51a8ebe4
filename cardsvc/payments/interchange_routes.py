"""HTTP of payments between cities: the issuer's routes under ``/v1/interauth/`` (signed
requests from another city's authority) and the acquirer's branch of ``POST
/v1/payments`` and ``/v1/payments/offline-batch`` for cards of another city.

The calling city is authenticated by its signed request
(:data:`cardsvc.api.deps.InterauthCaller`, contract 4). Leg B goes through an
:class:`~cardsvc.payments.forwarding.IssuerLink`: ``app.state.issuer_link`` when set
(tests), else an ``InterauthClient`` signed with this city's active interchange key;
without one, a card of another city answers ``503 ISSUER_UNREACHABLE`` with
``offline_allowed``.

Example::

    POST /v1/interauth/charges  Authorization: FMC-Interauth <jws>  Idempotency-Key: G
    {"g": "CN-YW:7:k1", "pay_code": "FMC1:...", "amount_fen": 1250, "merchant_id": 3,
     "terminal_id": 7}
    -> 201 {"payment_id", "receipt", ...}  (the same answer again for the same G)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import date, datetime
from functools import partial
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cardsvc.api._context import AppContext
from cardsvc.api.deps import Ctx, InterauthCaller, roles
from cardsvc.api.errors import PROBLEM_MEDIA_TYPE
from cardsvc.api.routes._common import problems
from cardsvc.federation.interauth import InterauthClient, answer_object
from cardsvc.models import InterchangeKeyRecord, Officer
from cardsvc.payments import forwarding, interchange
from cardsvc.payments._idempotency import Answer, transact_settling_races
from cardsvc.payments.charges import (
    MAX_AMOUNT_FEN,
    OfflinePayment,
    PaymentContext,
    remember_refused_online,
)
from cardsvc.payments.interchange_report import interchange_report, reconcile, sign_report
from cardsvc.payments.merchants import terminal_of
from cardsvc.payments.models import Terminal
from cardsvc.roles import Role
from cardsvc.services.errors import DomainError, Invalid, Unavailable
from cardsvc.services.trust import active_signer, signing_alg
from schemas.challenge import MAX_CHALLENGE_CHARS
from schemas.federation import FederationClaims
from schemas.presentation import MAX_PRESENTATION_CHARS

__all__ = [
    "forward_if_foreign",
    "keep_forwarding",
    "offline_items_of_other_cities",
    "payments_router",
    "respond",
    "router",
    "signed_report",
]

router = APIRouter(prefix="/v1/interauth", tags=["interchange"])
_log = logging.getLogger("cardsvc.payments.interchange")

ForwardId = Annotated[str, StringConstraints(min_length=5, max_length=160,
                                             pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,8}){0,3}:"
                                                     r"[A-Za-z0-9._:-]+$")]
Fen = Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT_FEN)]
LocalId = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)]
PayCode = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PRESENTATION_CHARS)]
ChallengeText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CHALLENGE_CHARS)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ForwardedChargeIn(_In):
    g: ForwardId
    pay_code: PayCode
    amount_fen: Fen
    merchant_id: LocalId = Field(description="the acquirer's merchant (named on the receipt)")
    terminal_id: LocalId = Field(description="the acquirer's terminal (named on the receipt)")
    challenge: ChallengeText | None = None


class ForwardedOfflineIn(ForwardedChargeIn):
    accepted_at: AwareDatetime
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ForwardedUploadIn(_In):
    items: list[ForwardedOfflineIn] = Field(min_length=1, max_length=200)


class VoidIn(_In):
    g: ForwardId




def _payments(ctx: AppContext) -> PaymentContext:
    return PaymentContext(ctx.keyring, ctx.settings.issuer)


def respond(answer: Answer, *, retry_after: int | None = None) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    if answer.status_code == 202 or answer.status_code == 503:
        headers["Retry-After"] = str(retry_after or 1)
    media = PROBLEM_MEDIA_TYPE if answer.status_code >= 400 else None
    return JSONResponse(answer.body, status_code=answer.status_code, headers=headers or None,
                        media_type=media)


def _transact(ctx: AppContext, work: Callable[[Session], Answer]) -> Answer:
    return transact_settling_races(ctx.database, work)


# -- the issuer's routes ----------------------------------------------------------------------

@router.post("/charges", status_code=201, responses=problems(401, 402, 403, 404, 409, 422, 503))
def charge(body: ForwardedChargeIn, ctx: Ctx, caller: InterauthCaller) -> JSONResponse:
    """Charge one of our cards for a sale at the calling city's terminal, once per G."""
    now = ctx.clock()
    payments = _payments(ctx)
    try:
        return respond(_transact(ctx, lambda session: interchange.charge_for_acquirer(
            session, acquirer=caller.issuer, g=body.g, pay_code=body.pay_code,
            amount_fen=body.amount_fen, merchant_id=body.merchant_id,
            terminal_id=body.terminal_id, ctx=payments, now=now, challenge=body.challenge)))
    except DomainError as refusal:
        refused_code = refusal.code
        if refused_code not in ("IDEMPOTENCY_KEY_REUSED", "FORWARD_VOIDED"):
            # As for our own terminals: a code refused online never settles offline.
            ctx.database.transact(lambda session: remember_refused_online(
                session, unverified_pay_code=body.pay_code, code=refused_code,
                terminal=interchange.acquirer_terminal(session, acquirer=caller.issuer,
                                                       now=now), now=now))
        raise


@router.post("/charges/{g}/void", responses=problems(401, 403, 422, 503))
def void(g: Annotated[str, Path(min_length=5, max_length=160)], body: VoidIn, ctx: Ctx,
         caller: InterauthCaller) -> JSONResponse:
    """Void G: a later charge of it is refused; one already made is reversed."""
    if body.g != g:
        raise Invalid("FORWARD_ID_MISMATCH", "the body names another forward id")
    now = ctx.clock()
    payments = _payments(ctx)
    return respond(_transact(ctx, lambda session: interchange.void_for_acquirer(
        session, acquirer=caller.issuer, g=g, ctx=payments, now=now)))


@router.post("/uploads", responses=problems(401, 403, 422, 503))
def uploads(body: ForwardedUploadIn, ctx: Ctx, caller: InterauthCaller) -> dict[str, Any]:
    """Settle offline sales of our cards at the calling city's terminals, each on its own."""
    now = ctx.clock()
    payments = _payments(ctx)
    results = []
    for item in body.items:
        offline = OfflinePayment(item.pay_code, item.amount_fen, item.accepted_at,
                                 item.idempotency_key, item.challenge)

        def work(session: Session, item: ForwardedOfflineIn = item,
                 offline: OfflinePayment = offline) -> Answer:
            return interchange.settle_for_acquirer(
                session, acquirer=caller.issuer, g=item.g, item=offline,
                merchant_id=item.merchant_id, terminal_id=item.terminal_id, ctx=payments,
                now=now)

        results.append(_transact(ctx, work).body)
    return {"results": results}


# -- the acquirer's branch ------------------------------------------------------------------

def _federation(ctx: AppContext) -> Callable[[], FederationClaims | None]:
    def held() -> FederationClaims | None:
        from cardsvc.federation.state import held_federation

        return ctx.database.transact(held_federation, readonly=True)

    return held


def _link(request: Request, ctx: AppContext,
          claims: FederationClaims | None) -> forwarding.IssuerLink | None:
    return link_for(request.app.state, ctx, claims)


def link_for(state: Any, ctx: AppContext,
             claims: FederationClaims | None) -> forwarding.IssuerLink | None:
    """Leg B's link: ``state.issuer_link`` if set, else signed with our interchange key."""
    link: forwarding.IssuerLink | None = getattr(state, "issuer_link", None)
    if link is not None or claims is None:
        return link
    kid = ctx.database.transact(lambda session: session.scalar(
        select(InterchangeKeyRecord.kid).where(InterchangeKeyRecord.state == "active")
        .order_by(InterchangeKeyRecord.seq.desc())), readonly=True)
    if kid is None:
        return None
    http: httpx.Client | None = getattr(state, "interchange_http", None)
    if http is None:
        http = httpx.Client(timeout=httpx.Timeout(ctx.settings.interchange_timeout_seconds))
        state.interchange_http = http
    return InterauthClient(http, signer=ctx.keyring.signer(kid), federation=claims,
                           caller=ctx.settings.issuer,
                           clock=lambda: int(ctx.clock().timestamp()))


def _policy(request: Request, ctx: AppContext) -> forwarding.ForwardPolicy:
    return policy_for(request.app.state, ctx)


def policy_for(state: Any, ctx: AppContext) -> forwarding.ForwardPolicy:
    policy: forwarding.ForwardPolicy | None = getattr(state, "forward_policy", None)
    settings = ctx.settings
    # A pending row is in flight for as long as one request may still be retrying it.
    in_flight = int(settings.interchange_timeout_seconds * settings.interchange_attempts) + 2
    return policy or forwarding.ForwardPolicy(attempts=settings.interchange_attempts,
                                              in_flight_seconds=in_flight)


async def keep_forwarding(state: Any, ctx: AppContext) -> None:
    """The recovery loop: at start-up, then every ``interchange_recovery_seconds``, take
    pending and voiding forwards (a crash, an unreachable issuer) forward again."""
    while True:
        try:
            await run_in_threadpool(resume_once, state, ctx)
        except Exception:
            _log.exception("interchange recovery round failed")
        await asyncio.sleep(ctx.settings.interchange_recovery_seconds)


def resume_once(state: Any, ctx: AppContext) -> int:
    claims = _federation(ctx)()
    link = link_for(state, ctx, claims)
    if link is None:
        return 0
    return forwarding.resume_forwards(ctx.database, link, federation=lambda: claims,
                                      clock=ctx.clock, policy=policy_for(state, ctx))


def forward_if_foreign(
    request: Request, ctx: AppContext, *, officer: Officer, pay_code: str, amount_fen: int,
    idempotency_key: str, challenge: str | None, now: datetime,
) -> Answer | None:
    """The branch point of ``POST /v1/payments``: None for a card of ours (the same-city
    path, unchanged), else the forwarded charge's answer."""
    federation = _federation(ctx)
    if not ctx.settings.federation_root:
        return None
    claims = federation()
    terminals: list[Terminal] = []

    def terminal() -> Terminal:  # read only for another city's code
        if not terminals:
            terminals.append(ctx.database.transact(
                lambda session: terminal_of(session, officer), readonly=True))
        return terminals[0]

    issuer = forwarding.foreign_issuer(pay_code, federation=claims,
                                       own_code=ctx.settings.issuer,
                                       now=int(now.timestamp()), challenge=challenge,
                                       terminal=terminal, amount_fen=amount_fen)
    if issuer is None:
        return None
    link = _link(request, ctx, claims)
    if link is None:
        return Answer(503, forwarding.unreachable_body(issuer, "no link to other cities"))
    return forwarding.open_and_forward_charge(
        ctx.database, link, terminal=terminal(), issuer=issuer, own_code=ctx.settings.issuer,
        pay_code=pay_code, amount_fen=amount_fen, idempotency_key=idempotency_key,
        challenge=challenge, federation=lambda: claims, clock=ctx.clock,
        policy=_policy(request, ctx))


def foreign_upload_issuer(ctx: AppContext, *, item: OfflinePayment, now: datetime,
                          claims: FederationClaims | None) -> str | None:
    """The other city that issued an offline item's pay code, or None (ours)."""
    if not ctx.settings.federation_root:
        return None
    # Verified as of the acceptance, as offline settlement does.
    return forwarding.foreign_issuer(item.pay_code, federation=claims,
                                     own_code=ctx.settings.issuer,
                                     now=int(item.accepted_at.timestamp()))


def forward_offline_items(
    request: Request, ctx: AppContext, *, terminal: Terminal,
    items: list[tuple[int, OfflinePayment, str]], now: datetime,
    claims: FederationClaims | None,
) -> dict[int, dict[str, Any]]:
    """Forward the offline items of other cities' cards (position, item, issuer), one leg
    B per issuer; answers by position. Raises Unavailable ISSUER_UNREACHABLE when an
    issuer could not settle them now (they stay in the outbox; the same batch sent again
    is answered from it)."""
    rows = [(index, ctx.database.transact(partial(
        forwarding.open_upload, item=item, issuer=issuer, own_code=ctx.settings.issuer,
        terminal=terminal, now=now))) for index, item, issuer in items]
    link = _link(request, ctx, claims)
    answers: dict[str, Answer] = {}
    for issuer in {fwd.issuer for _, fwd in rows}:
        batch = [fwd for _, fwd in rows if fwd.issuer == issuer]
        if link is None:
            answers |= {fwd.g: fwd.answer for fwd in batch if fwd.answer is not None}
            continue
        answers |= forwarding.forward_uploads(ctx.database, link, rows=batch,
                                              federation=lambda: claims, clock=ctx.clock)
    missing = sorted({fwd.issuer for _, fwd in rows if fwd.g not in answers})
    if missing:
        raise Unavailable("ISSUER_UNREACHABLE", "offline sales of cards of another city"
                          " could not be settled now; send the batch again later",
                          issuers=missing, offline_allowed=True)
    return {index: answers[fwd.g].body for index, fwd in rows}


def offline_items_of_other_cities(
    request: Request, ctx: AppContext, *, officer: Officer, items: list[OfflinePayment],
    now: datetime,
) -> dict[int, dict[str, Any]]:
    """The branch point of ``/v1/payments/offline-batch``: answers, by position, for the
    items whose pay code another city issued (settled there) or that a national verdict
    refuses; the other items are ours and settle as before."""
    claims = _federation(ctx)()
    if claims is None:
        return {}
    terminal = ctx.database.transact(lambda session: terminal_of(session, officer),
                                     readonly=True)
    answers: dict[int, dict[str, Any]] = {}
    foreign: list[tuple[int, OfflinePayment, str]] = []
    for index, item in enumerate(items):
        try:
            issuer = foreign_upload_issuer(ctx, item=item, now=now, claims=claims)
        except DomainError as refusal:
            answers[index] = {"idempotency_key": item.idempotency_key, "outcome": "refused",
                              "code": refusal.code}
            continue
        if issuer is not None and item.amount_fen > terminal.offline_floor_fen:
            # Our terminal's floor is ours to hold; the card's own limit is the issuer's.
            answers[index] = {"idempotency_key": item.idempotency_key, "outcome": "refused",
                              "code": "OFFLINE_LIMIT_EXCEEDED"}
        elif issuer is not None:
            foreign.append((index, item, issuer))
    if foreign:
        answers |= forward_offline_items(request, ctx, terminal=terminal, items=foreign,
                                         now=now, claims=claims)
    return answers


# -- the daily interchange report -----------------------------------------------------------

Day = Annotated[date, Query(description="business day (Asia/Shanghai), YYYY-MM-DD",
                            ge=date(2000, 1, 1), le=date(2200, 12, 31))]
PeerCode = Annotated[str, Query(alias="with", pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,8}){1,3}$",
                                description="the other city's code, e.g. CN-HZ")]
Reader = Annotated[Officer, Depends(roles(Role.auditor, Role.supervisor))]
payments_router = APIRouter(prefix="/v1/payments", tags=["interchange"])


class ReportDayIn(_In):
    day: date = Field(ge=date(2000, 1, 1), le=date(2200, 12, 31))


def signed_report(ctx: AppContext, *, peer: str, day: date) -> dict[str, Any]:
    """Our report with ``peer`` for ``day`` and its signature (``{"report", "jwt"}``)."""

    def work(session: Session) -> dict[str, Any]:
        report = interchange_report(session, own_code=ctx.settings.issuer, peer=peer, day=day)
        signer = active_signer(session, keyring=ctx.keyring)
        return {"report": report, "jwt": sign_report(
            report, signer, alg=signing_alg(session, now=ctx.clock()))}

    return ctx.database.transact(work, readonly=True)


@payments_router.get("/interchange-report", responses=problems(401, 403, 422))
def report(ctx: Ctx, _officer: Reader, day: Day, peer: PeerCode) -> dict[str, Any]:
    """Every forward between us and the other city on that day, both ways, signed."""
    return signed_report(ctx, peer=peer, day=day)


@payments_router.get("/interchange-reconcile", responses=problems(401, 403, 422, 503))
def reconcile_with(request: Request, ctx: Ctx, _officer: Reader, day: Day,
                   peer: PeerCode) -> dict[str, Any]:
    """Our report against the other city's signed one: breaks, net to the fen."""
    ours = signed_report(ctx, peer=peer, day=day)["report"]
    claims = _federation(ctx)()
    link = _link(request, ctx, claims)
    if link is None or claims is None:
        raise Unavailable("ISSUER_UNREACHABLE", "no link to the other city")
    try:
        answer = link.post(peer, "/v1/interauth/interchange-report",
                           {"day": day.isoformat()}, reason="daily interchange report")
    except (httpx.HTTPError, DomainError) as failure:
        raise Unavailable("ISSUER_UNREACHABLE", f"{peer}: {type(failure).__name__}") from None
    if answer.status_code != 200:
        raise Unavailable("ISSUER_UNREACHABLE", f"{peer} answered {answer.status_code}")
    jwt = (answer_object(answer) or {}).get("jwt")
    return reconcile(ours, unverified_peer_jwt=jwt if isinstance(jwt, str) else "",
                     federation=claims)


@router.post("/interchange-report", responses=problems(401, 403, 422, 503))
def report_for_peer(body: ReportDayIn, ctx: Ctx, caller: InterauthCaller) -> dict[str, Any]:
    """Our signed report with the calling city, for its reconciliation."""
    return signed_report(ctx, peer=caller.issuer, day=body.day)
