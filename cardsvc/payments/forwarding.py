"""The acquirer's side of payments between cities (docs/FEDERATION.md, "Payments between
cities"): a terminal of ours scans another city's card; we forward the charge to that
city (the issuer), which holds the account and signs the receipt.

Exactly once across the hop rests on one outbox row per forward id ``g`` (table
``forwarded_charges``), committed **before** leg B is sent:

1. :func:`foreign_issuer` verifies the pay code against the federation list (the key is
   found by kid, the signature checked, the signed ``iss`` is that key's city); it is
   ours -> the same-city path, unchanged.
2. :func:`open_forward` writes the row (``pending``) with ``g = "<own>:<terminal>:<K>"``;
   a retry of the terminal's K finds the same row and never makes another ``g``.
3. :func:`run_forward` sends leg B (``POST /v1/interauth/charges``, Idempotency-Key ``g``)
   with bounded retries; the issuer's answer is replayed for the same ``g``.
4. On success :func:`complete_forward` checks the issuer's receipt offline (federation
   list), debits ``interchange:<issuer>`` (receivable), credits the merchant, row
   ``done``, in one transaction. A refusal (402/409/422) is stored as the row's answer.
5. Unreachable after the retries -> 503 ``ISSUER_UNREACHABLE`` with ``offline_allowed``;
   the row turns ``voiding`` and ``g`` is voided at the issuer (a late charge is refused,
   one already made is reversed); ``void`` once the issuer acknowledges.

:func:`resume_forwards` (the recovery loop, at start-up and periodically) takes every
``pending`` row not in flight and every ``voiding`` row forward again.

Example::

    issuer = foreign_issuer(text, federation=federation, own_code="CN-YW", now=epoch)
    if issuer is not None:
        answer = forward_charge(database, link, terminal=terminal, issuer=issuer, ...)
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import httpx
from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.federation.interauth import answer_object
from cardsvc.payments._idempotency import Answer, request_hash
from cardsvc.payments._paycode import pay_code_replay_key, verify_any_status
from cardsvc.payments.charges import OfflinePayment, _sale_challenge
from cardsvc.payments.interchange import interchange_account
from cardsvc.payments.interchange_models import ForwardedCharge
from cardsvc.payments.ledger import merchant_account, post
from cardsvc.payments.models import Terminal
from cardsvc.services._locking import for_update
from cardsvc.services.errors import Conflict, Invalid, Unavailable
from schemas import FmcError, b64url_encode
from schemas._jose import parse_json_object
from schemas.codes import ResultCode
from schemas.federation import FederationClaims
from schemas.presentation import decode_presentation
from verifier.federation import resolve_key_by_kid, trust_for
from verifier.receipts import verify_receipt

__all__ = [
    "ForwardPolicy",
    "IssuerLink",
    "charge_forward_id",
    "foreign_issuer",
    "forward_charge",
    "forward_uploads",
    "open_forward",
    "resume_forwards",
    "unreachable_body",
    "upload_forward_id",
]

CHARGE_PATH = "/v1/interauth/charges"
UPLOAD_PATH = "/v1/interauth/uploads"
# A national verdict on the key's city: refused here, the issuer is never asked.
_CITY_REFUSALS = {ResultCode.ISSUER_SUSPENDED.value, ResultCode.ISSUER_REMOVED.value,
                  ResultCode.KEY_COMPROMISED.value, ResultCode.ISSUER_UNKNOWN.value}
_RETRYABLE_4XX = {401, 403, 404, 408, 425, 429}  # the hop, not the card, was refused


class IssuerLink(Protocol):
    """Leg B: a signed request to another city (``InterauthClient`` of
    ``cardsvc.federation.interauth`` fits this shape)."""

    def post(self, callee_code: str, path: str, json_body: dict[str, Any], *,
             idempotency_key: str | None = None, officer_id: int | None = None,
             reason: str) -> httpx.Response: ...


@dataclass(frozen=True, slots=True)
class ForwardPolicy:
    """Bounded retries of leg B inside the terminal's own timeout."""

    attempts: int = 3
    backoff_seconds: float = 0.2
    in_flight_seconds: int = 15  # a pending row younger than this: 202 to a retry
    sleep: Callable[[float], None] = time.sleep


def charge_forward_id(*, own_code: str, terminal_id: int, idempotency_key: str) -> str:
    return f"{own_code}:{terminal_id}:{idempotency_key}"


def upload_forward_id(*, own_code: str, terminal_id: int, idempotency_key: str) -> str:
    """An offline item's forward id. The "upload id" is the terminal and the "index" the
    item's own idempotency key: a batch sent again may be cut differently, a key is not."""
    return f"{own_code}:upload:{terminal_id}:{idempotency_key}"


def unreachable_body(issuer: str, detail: str = "") -> dict[str, Any]:
    return {"type": "about:blank", "title": "Issuer unreachable", "status": 503,
            "code": "ISSUER_UNREACHABLE", "issuer": issuer, "offline_allowed": True,
            "detail": detail or f"the card's issuing city {issuer} did not answer; the sale"
                                " may be taken offline within the terminal's limits"}


def foreign_issuer(
    unverified_pay_code: str, *, federation: FederationClaims | None, own_code: str, now: int,
    challenge: str | None = None, terminal: Callable[[], Terminal] | None = None,
    amount_fen: int = 0,
) -> str | None:
    """The city that issued this pay code, if it is another listed city and the code
    verifies under that city's keys (signature, signed ``iss``, dates, holder proof; the
    card's status is the issuer's to check). None: ours, or not a federation code (the
    same-city path then judges it). Raises Invalid with the verifier's code otherwise.
    ``terminal`` (read only for another city's code) checks a bound code's challenge."""
    if federation is None:
        return None
    try:
        header = parse_json_object(decode_presentation(unverified_pay_code).header)
        unverified_kid = header.get("kid")
        if not isinstance(unverified_kid, str):
            return None
        entry, _key = resolve_key_by_kid(federation, unverified_kid=unverified_kid)
    except FmcError as error:
        if error.code.value in _CITY_REFUSALS:
            raise Invalid(error.code.value, error.detail) from None
        return None
    if entry.code == own_code:
        return None
    if federation.expires_at <= now:
        raise Invalid(ResultCode.TRUST_LIST_STALE.value,
                      "the held federation list has expired; another city's card cannot be"
                      " checked until it is synced")
    try:
        sale = None if terminal is None else _sale_challenge(challenge, terminal=terminal(),
                                                             amount_fen=amount_fen)
        trust = trust_for(federation, entry.code)
    except FmcError as error:
        raise Invalid(error.code.value, error.detail) from None
    result = verify_any_status(unverified_pay_code, trust=trust, now=now, challenge=sale)
    if not result.ok:
        raise Invalid(result.code.value, result.detail or "the pay code was refused")
    return entry.code


# -- the outbox -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Forward:
    g: str
    id: str
    issuer: str
    kind: str
    state: str
    pay_code: str
    amount_fen: int
    merchant_id: int
    terminal_id: int
    idempotency_key: str
    challenge: str | None
    accepted_at: datetime | None
    updated_at: datetime
    answer: Answer | None

    @staticmethod
    def of(row: ForwardedCharge, replayed: bool = False) -> _Forward:
        answer = (None if row.status_code is None or row.response is None
                  else Answer(row.status_code, json.loads(row.response), replayed=replayed))
        return _Forward(row.g, row.id, row.issuer, row.kind, row.state, row.pay_code,
                        row.amount_fen, row.merchant_id, row.terminal_id,
                        row.idempotency_key, row.challenge, row.accepted_at, row.updated_at,
                        answer)


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def open_forward(
    session: Session, *, g: str, issuer: str, kind: str, terminal: Terminal, pay_code: str,
    amount_fen: int, idempotency_key: str, digest: str, now: datetime,
    challenge: str | None = None, accepted_at: datetime | None = None,
) -> _Forward:
    """The outbox row of ``g``, written now (``pending``) or found (the terminal's retry).
    The caller commits before leg B is sent."""
    found = session.get(ForwardedCharge, g)
    if found is not None:
        if found.request_hash != digest:
            raise Conflict("IDEMPOTENCY_KEY_REUSED",
                           "this idempotency key was used for another request")
        return _Forward.of(found, replayed=True)
    session.execute(insert(ForwardedCharge).values(
        g=g, id=f"fwd_{secrets.token_hex(10)}", issuer=issuer, kind=kind,
        terminal_id=terminal.id, merchant_id=terminal.merchant_id,
        officer_id=terminal.officer_id, idempotency_key=idempotency_key, request_hash=digest,
        pay_code=pay_code, challenge=challenge, amount_fen=amount_fen, accepted_at=accepted_at,
        state="pending", attempts=0, created_at=now, updated_at=now))
    return _Forward.of(session.get_one(ForwardedCharge, g))


def _locked(session: Session, g: str) -> ForwardedCharge:
    return session.scalars(for_update(select(ForwardedCharge)
                                      .where(ForwardedCharge.g == g))).one()


def _note_attempt(session: Session, *, g: str, error: str, now: datetime) -> None:
    row = _locked(session, g)
    if row.state == "pending":
        row.attempts += 1
        row.last_error, row.updated_at = error[:200], now


def _refuse(session: Session, *, g: str, status: int, body: dict[str, Any],
            now: datetime) -> Answer:
    """The issuer judged the card (402, 409, 422): that is the terminal's answer."""
    row = _locked(session, g)
    if row.state != "pending":
        return _Forward.of(row).answer or Answer(status, body)
    row.state, row.status_code, row.response = "refused", status, _dumps(body)
    row.updated_at = now
    return Answer(status, body)


def _mark_voiding(session: Session, *, g: str, detail: str, now: datetime) -> Answer:
    row = _locked(session, g)
    if row.state != "pending":
        return _Forward.of(row).answer or Answer(503, unreachable_body(row.issuer))
    body = unreachable_body(row.issuer)
    row.state, row.status_code, row.response = "voiding", 503, _dumps(body)
    row.last_error, row.updated_at = detail[:200], now
    return Answer(503, body)


def _finish_void(session: Session, *, g: str, now: datetime) -> None:
    row = _locked(session, g)
    if row.state == "voiding":
        row.state, row.updated_at = "void", now


class _BadIssuerAnswer(Exception):
    pass


def complete_forward(
    session: Session, *, g: str, body: dict[str, Any], federation: FederationClaims,
    now: datetime,
) -> Answer:
    """The issuer charged (or settled) ``g``: check its receipt offline, clear it to the
    merchant in one transaction, and store the terminal's answer."""
    row = _locked(session, g)
    if row.state != "pending":
        stored = _Forward.of(row, replayed=True).answer
        assert stored is not None
        return stored
    if row.kind == "upload" and (body.get("outcome") != "settled" or body.get("same_sale")):
        # Not charged by the issuer (double spend, refused, or the sale it had already
        # paid): the merchant is not credited here; the answer says why.
        answer = {**body, "idempotency_key": row.idempotency_key, "issuer": row.issuer}
        answer.pop("g", None)
        row.state, row.status_code, row.response = "refused", 200, _dumps(answer)
        row.updated_at = now
        return Answer(200, answer)
    try:
        receipt = verify_receipt(str(body["receipt"]), trust_list=trust_for(federation,
                                                                             row.issuer))
    except (FmcError, KeyError) as error:
        raise _BadIssuerAnswer(f"receipt refused: {error}") from None
    expected_key = b64url_encode(pay_code_replay_key(row.pay_code))
    if (receipt.kind, receipt.amount_fen, receipt.pay_code) != (
            "payment", row.amount_fen, expected_key) or (
            row.kind == "charge" and (receipt.merchant_id, receipt.terminal_id) != (
                row.merchant_id, row.terminal_id)):
        raise _BadIssuerAnswer("the receipt names another sale")
    txn_id = post(session, kind="charge", reference=row.id, card_id=None, legs=[
        (interchange_account(session, city=row.issuer, now=now), row.amount_fen),
        (merchant_account(session, merchant_id=row.merchant_id, now=now), -row.amount_fen)],
        now=now)
    if row.kind == "charge":
        status = 201
        answer = {"payment_id": receipt.payment_id, "status": "accepted", "mode": "online",
                  "card_number": receipt.card_number, "amount_fen": receipt.amount_fen,
                  "balance_fen": receipt.balance_fen, "merchant_id": row.merchant_id,
                  "terminal_id": row.terminal_id, "settled_at": now.isoformat(),
                  "receipt": body["receipt"], "issuer": row.issuer, "forward_id": row.g}
        if receipt.pay_handle is not None:  # a one-use pay code (P13.3): no card, no balance
            answer = {name: value for name, value in answer.items()
                      if name not in ("card_number", "balance_fen")}
            answer["pay_handle"] = receipt.pay_handle
    else:
        status = 200
        answer = {**body, "idempotency_key": row.idempotency_key, "issuer": row.issuer}
        answer.pop("g", None)
    row.state, row.status_code, row.response = "done", status, _dumps(answer)
    row.receipt, row.issued_at, row.transaction_id = str(body["receipt"]), receipt.issued_at, \
        txn_id
    row.updated_at = now
    return Answer(status, answer)


# -- leg B ------------------------------------------------------------------------------------

def _charge_body(fwd: _Forward) -> dict[str, Any]:
    return {"g": fwd.g, "pay_code": fwd.pay_code, "amount_fen": fwd.amount_fen,
            "merchant_id": fwd.merchant_id, "terminal_id": fwd.terminal_id,
            "challenge": fwd.challenge}


def _problem(response: httpx.Response) -> dict[str, Any]:
    return answer_object(response) or {"status": response.status_code,
                                       "code": "ISSUER_ANSWER_INVALID"}


def forward_charge(
    database: Database, link: IssuerLink, *, fwd: _Forward,
    federation: Callable[[], FederationClaims | None], clock: Callable[[], datetime],
    policy: ForwardPolicy = ForwardPolicy(),
) -> Answer:
    """Leg B for one pending charge row, with bounded retries; then the terminal's answer
    (stored in the row). Unreachable -> 503 ISSUER_UNREACHABLE and ``g`` voided."""
    if fwd.state == "voiding":
        _void(database, link, fwd=fwd, clock=clock)
    if fwd.state != "pending":
        assert fwd.answer is not None
        return fwd.answer
    error = "not sent"
    for attempt in range(policy.attempts):
        if attempt:
            policy.sleep(policy.backoff_seconds * 2 ** (attempt - 1))
        try:
            response = link.post(fwd.issuer, CHARGE_PATH, _charge_body(fwd),
                                 idempotency_key=fwd.g, reason="charge of a card of the city")
        except (httpx.HTTPError, Unavailable) as failure:
            error = f"{type(failure).__name__}: {failure}"
        else:
            status = response.status_code
            if status in (200, 201):
                claims, body = federation(), answer_object(response)
                if claims is None:
                    error = "no federation list held"
                elif body is None:
                    error = "the issuer's answer is not a JSON object"
                else:
                    try:
                        return database.transact(partial(
                            complete_forward, g=fwd.g, body=body, federation=claims,
                            now=clock()))
                    except _BadIssuerAnswer as bad:
                        error = str(bad)
            elif 400 <= status < 500 and status not in _RETRYABLE_4XX:
                body = _problem(response)
                if body.get("code") == "FORWARD_VOIDED":
                    error = "voided at the issuer"
                    break
                return database.transact(partial(_refuse, g=fwd.g, status=status, body=body,
                                                 now=clock()))
            else:
                error = f"HTTP {status}"
        database.transact(partial(_note_attempt, g=fwd.g, error=error, now=clock()))
    answer = database.transact(lambda s: _mark_voiding(s, g=fwd.g, detail=error, now=clock()))
    _void(database, link, fwd=fwd, clock=clock)
    return answer


def _void(database: Database, link: IssuerLink, *, fwd: _Forward,
          clock: Callable[[], datetime]) -> bool:
    """Void ``g`` at the issuer once; the row is ``void`` when the issuer acknowledged."""
    try:
        response = link.post(fwd.issuer, f"{CHARGE_PATH}/{fwd.g}/void", {"g": fwd.g},
                             idempotency_key=f"{fwd.g}:void", reason="void of a forward")
    except (httpx.HTTPError, Unavailable):
        return False
    if response.status_code != 200:
        return False
    database.transact(lambda s: _finish_void(s, g=fwd.g, now=clock()))
    return True


def open_and_forward_charge(
    database: Database, link: IssuerLink, *, terminal: Terminal, issuer: str, own_code: str,
    pay_code: str, amount_fen: int, idempotency_key: str, challenge: str | None,
    federation: Callable[[], FederationClaims | None], clock: Callable[[], datetime],
    policy: ForwardPolicy = ForwardPolicy(),
) -> Answer:
    """Leg A at the acquirer: the outbox row (committed), then leg B, or the stored answer
    or ``202`` (``status: pending``) while another attempt is in flight."""
    digest = request_hash("payment", {"pay_code": pay_code, "amount_fen": amount_fen}
                          | ({} if challenge is None else {"challenge": challenge}))
    g = charge_forward_id(own_code=own_code, terminal_id=terminal.id,
                          idempotency_key=idempotency_key)
    now = clock()
    fwd = database.transact(lambda s: open_forward(
        s, g=g, issuer=issuer, kind="charge", terminal=terminal, pay_code=pay_code,
        amount_fen=amount_fen, idempotency_key=idempotency_key, digest=digest, now=now,
        challenge=challenge))
    if fwd.answer is None and fwd.state == "pending" and fwd.updated_at != now and \
            now - fwd.updated_at < timedelta(seconds=policy.in_flight_seconds):
        return Answer(202, {"status": "pending", "forward_id": g, "issuer": issuer,
                            "retry_after": 1})
    answer = forward_charge(database, link, fwd=fwd, federation=federation, clock=clock,
                            policy=policy)
    return Answer(answer.status_code, answer.body, replayed=fwd.answer is not None)


# -- offline uploads ------------------------------------------------------------------------

def forward_uploads(
    database: Database, link: IssuerLink, *, rows: Sequence[_Forward],
    federation: Callable[[], FederationClaims | None], clock: Callable[[], datetime],
) -> dict[str, Answer]:
    """Send pending offline items of one issuer in one leg B; answers by ``g`` for the
    items the issuer settled (or flagged). Items left out stay pending (the recovery loop
    and the terminal's re-send take them again)."""
    pending = [row for row in rows if row.state == "pending"]
    done = {row.g: row.answer for row in rows if row.answer is not None}
    if not pending:
        return done
    issuer = pending[0].issuer
    items = [{"g": row.g, "pay_code": row.pay_code, "amount_fen": row.amount_fen,
              "accepted_at": (row.accepted_at or clock()).astimezone(UTC).isoformat(),
              "challenge": row.challenge, "merchant_id": row.merchant_id,
              "terminal_id": row.terminal_id, "idempotency_key": row.idempotency_key}
             for row in pending]
    try:
        response = link.post(issuer, UPLOAD_PATH, {"items": items},
                             reason="offline sales of cards of the city")
    except (httpx.HTTPError, Unavailable):
        return done
    claims = federation()
    if response.status_code != 200 or claims is None:
        return done
    results = (answer_object(response) or {}).get("results", [])
    for result in results if isinstance(results, list) else []:
        g = result.get("g") if isinstance(result, dict) else None
        if not isinstance(g, str) or g not in {row.g for row in pending}:
            continue
        try:
            done[g] = database.transact(partial(complete_forward, g=g, body=result,
                                                federation=claims, now=clock()))
        except _BadIssuerAnswer:
            continue
    return {g: answer for g, answer in done.items() if answer is not None}


def open_upload(
    session: Session, *, item: OfflinePayment, issuer: str, own_code: str, terminal: Terminal,
    now: datetime,
) -> _Forward:
    digest = request_hash("offline", {"pay_code": item.pay_code, "amount_fen": item.amount_fen,
                                      "accepted_at": int(item.accepted_at.timestamp())}
                          | ({} if item.challenge is None else {"challenge": item.challenge}))
    return open_forward(
        session, g=upload_forward_id(own_code=own_code, terminal_id=terminal.id,
                                     idempotency_key=item.idempotency_key),
        issuer=issuer, kind="upload", terminal=terminal, pay_code=item.pay_code,
        amount_fen=item.amount_fen, idempotency_key=item.idempotency_key, digest=digest,
        now=now, challenge=item.challenge, accepted_at=item.accepted_at)


# -- recovery -------------------------------------------------------------------------------

def resume_forwards(
    database: Database, link: IssuerLink, *, federation: Callable[[], FederationClaims | None],
    clock: Callable[[], datetime], policy: ForwardPolicy = ForwardPolicy(), limit: int = 200,
    older_than_seconds: int | None = None,
) -> int:
    """Take forward every ``pending`` row not in flight and every ``voiding`` row (after a
    crash, at start-up, and periodically). Returns how many rows it took."""
    quiet = policy.in_flight_seconds if older_than_seconds is None else older_than_seconds
    cutoff = clock() - timedelta(seconds=quiet)

    def stuck(session: Session) -> list[_Forward]:
        rows = session.scalars(select(ForwardedCharge).where(or_(
            ForwardedCharge.state == "voiding",
            (ForwardedCharge.state == "pending") & (ForwardedCharge.updated_at <= cutoff)))
            .order_by(ForwardedCharge.created_at).limit(limit))
        return [_Forward.of(row) for row in rows]

    rows = database.transact(stuck, readonly=True)
    uploads: dict[str, list[_Forward]] = {}
    for fwd in rows:
        if fwd.kind == "upload":
            uploads.setdefault(fwd.issuer, []).append(fwd)
        else:
            forward_charge(database, link, fwd=fwd, federation=federation, clock=clock,
                           policy=policy)
    for batch in uploads.values():
        forward_uploads(database, link, rows=batch, federation=federation, clock=clock)
    return len(rows)
