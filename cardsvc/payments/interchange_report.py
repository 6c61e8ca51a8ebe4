"""The daily interchange report between two cities (docs/FEDERATION.md, "Daily
interchange report") and its reconciliation with the peer's signed report.

A business day is Asia/Shanghai; every forward is placed on the day of the **issuer's
receipt timestamp**, which both sides hold, so both bucket it alike. Each side lists,
from its own records, every forward id ``g`` with its amount in fen:

- ``receivable``: we acquired, the peer issued (our ``interchange:<peer>`` debits);
- ``payable``: the peer acquired, we issued (our ``interchange:<peer>`` credits).

Each list carries ``ledger_fen``, the same forwards summed from the ledger, so a report
also proves it matches its own books. ``net_fen`` (receivable - payable) is what the
peer owes us. The report is signed with our active issuer key (``typ``
``fmc-interchange-report+jwt``); :func:`reconcile` checks the peer's signature through
the federation list and lists every break: a ``g`` on one side only, or two amounts.

Example::

    report = interchange_report(session, own_code="CN-YW", peer="CN-HZ", day=date(...))
    jwt = sign_report(report, signer)
    result = reconcile(report, unverified_peer_jwt=their_jwt, federation=federation)
    result["reconciled"], result["breaks"], result["net_fen"]
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.payments.interchange import interchange_account_key
from cardsvc.payments.interchange_models import ForwardedCharge, InterchangeCharge
from cardsvc.payments.models import LedgerAccount, LedgerEntry, LedgerTransaction
from cardsvc.payments.reports import BUSINESS_TZ
from keys import ALG_ED25519, Signer, sign_compact
from schemas import FmcError, KeyState
from schemas.codes import Malformed
from schemas.federation import FederationClaims
from verifier.federation import trust_for
from verifier.trust import verify_issuer_signed

__all__ = ["REPORT_TYP", "interchange_report", "reconcile", "sign_report", "verify_report"]

REPORT_TYP = "fmc-interchange-report+jwt"
_SIGNERS = (KeyState.ACTIVE, KeyState.RETIRED)


def _day_bounds(day: date) -> tuple[int, int]:
    start = datetime.combine(day, time(0), tzinfo=BUSINESS_TZ)
    return int(start.timestamp()), int((start + timedelta(days=1)).timestamp())


def _ledger_fen(session: Session, *, peer: str, references: list[str]) -> int:
    if not references:
        return 0
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerAccount.key == interchange_account_key(peer),
               LedgerTransaction.reference.in_(references)))
    return int(total or 0)


def _side(items: list[tuple[str, int]], ledger_fen: int) -> dict[str, Any]:
    return {"count": len(items), "total_fen": sum(amount for _, amount in items),
            "ledger_fen": ledger_fen,
            "items": [{"g": g, "amount_fen": amount} for g, amount in sorted(items)]}


def interchange_report(session: Session, *, own_code: str, peer: str,
                       day: date) -> dict[str, Any]:
    """One business day between us and ``peer``, from our own records and ledger."""
    start, end = _day_bounds(day)
    acquired = session.execute(
        select(ForwardedCharge.g, ForwardedCharge.amount_fen, ForwardedCharge.id)
        .where(ForwardedCharge.issuer == peer, ForwardedCharge.state == "done",
               ForwardedCharge.issued_at >= start, ForwardedCharge.issued_at < end)).all()
    issued = session.execute(
        select(InterchangeCharge.g, InterchangeCharge.amount_fen,
               InterchangeCharge.payment_id)
        .where(InterchangeCharge.acquirer == peer, InterchangeCharge.amount_fen > 0,
               InterchangeCharge.issued_at >= start, InterchangeCharge.issued_at < end)).all()
    receivable = _side([(g, int(amount)) for g, amount, _ in acquired],
                       _ledger_fen(session, peer=peer, references=[r for *_, r in acquired]))
    payable = _side([(g, int(amount)) for g, amount, _ in issued],
                    -_ledger_fen(session, peer=peer,
                                 references=[r for *_, r in issued if r is not None]))
    return {"city": own_code, "peer": peer, "day": day.isoformat(),
            "timezone": "Asia/Shanghai", "receivable": receivable, "payable": payable,
            "net_fen": receivable["total_fen"] - payable["total_fen"],
            "ledger_agrees": receivable["total_fen"] == receivable["ledger_fen"]
            and payable["total_fen"] == payable["ledger_fen"]}


def sign_report(report: dict[str, Any], signer: Signer, *, alg: str = ALG_ED25519) -> str:
    payload = json.dumps(report, sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False).encode("utf-8")
    return sign_compact({"alg": alg, "kid": signer.kid, "typ": REPORT_TYP}, payload, signer)


def verify_report(unverified_jwt: str, *, federation: FederationClaims,
                  peer: str) -> dict[str, Any]:
    """The peer's report, if signed by one of its keys on the federation list and naming
    it. Raises FmcError with the code."""
    _key, payload = verify_issuer_signed(unverified_jwt, trust_list=trust_for(federation, peer),
                                         typ=REPORT_TYP, signer_states=_SIGNERS,
                                         what="interchange report")
    if payload.get("city") != peer:
        raise Malformed("the report names another city")
    return payload


def _breaks(side: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[dict[str, Any]]:
    mine = {item["g"]: int(item["amount_fen"]) for item in ours["items"]}
    other = {str(item["g"]): int(item["amount_fen"]) for item in theirs["items"]}
    return [{"side": side, "g": g, "ours_fen": mine.get(g), "theirs_fen": other.get(g)}
            for g in sorted(mine.keys() | other.keys()) if mine.get(g) != other.get(g)]


def reconcile(report: dict[str, Any], *, unverified_peer_jwt: str,
              federation: FederationClaims) -> dict[str, Any]:
    """Our report against the peer's signed one: our receivable is its payable and our
    payable its receivable, ``g`` by ``g``, to the fen."""
    try:
        theirs = verify_report(unverified_peer_jwt, federation=federation,
                               peer=str(report["peer"]))
    except (FmcError, KeyError, TypeError) as error:
        code = error.code.value if isinstance(error, FmcError) else "MALFORMED"
        return {"reconciled": False, "code": code, "breaks": [], "net_fen": None}
    if (theirs.get("peer"), theirs.get("day")) != (report["city"], report["day"]):
        return {"reconciled": False, "code": "REPORT_MISMATCH", "breaks": [], "net_fen": None}
    breaks = (_breaks("receivable", report["receivable"], theirs["payable"])
              + _breaks("payable", report["payable"], theirs["receivable"]))
    agreed = not breaks and report["net_fen"] == -int(theirs["net_fen"])
    return {"reconciled": agreed and bool(report["ledger_agrees"]), "code": None,
            "breaks": breaks, "net_fen": report["net_fen"],
            "peer_net_fen": int(theirs["net_fen"]), "day": report["day"],
            "city": report["city"], "peer": report["peer"]}
