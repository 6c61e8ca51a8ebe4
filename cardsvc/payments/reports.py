"""Reading money: a card's account with its history, and a merchant's day of settlement.

The settlement day is the business day in Yiwu (UTC+8, no daylight saving). The report
adds up payments, refunds and double spends from their own tables and sets the result
beside the movement of the merchant's ledger account on that day: ``reconciled`` says
the two agree to the fen.

Example::

    account_view(session, card_number="3312345678901234", limit=50)["balance_fen"]
    report = settlement_report(session, merchant_id=3, day=date(2027, 1, 15))
    assert report["reconciled"]
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.payments.ledger import OVERDRAFT, merchant_account_key
from cardsvc.payments.merchants import get_merchant
from cardsvc.payments.models import (
    CardBalance,
    DoubleSpend,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Payment,
    Refund,
)
from cardsvc.services.cards import get_card

__all__ = ["BUSINESS_TZ", "account_view", "settlement_report"]

BUSINESS_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


def account_view(
    session: Session, *, card_number: str, limit: int = 50, before: int | None = None
) -> dict[str, Any]:
    """Balance, overdraft and the latest transactions (newest first), paged by ``before``.

    Each transaction shows the holder's view: ``amount_fen`` signed (in +, out -), and how
    it moved the balance and the overdraft."""
    card = get_card(session, card_number=card_number)
    row = session.get(CardBalance, card.id)
    query = select(LedgerTransaction).where(LedgerTransaction.card_id == card.id)
    if before is not None:
        query = query.where(LedgerTransaction.id < before)
    txns = list(session.scalars(query.order_by(LedgerTransaction.id.desc()).limit(limit)))
    moves: dict[tuple[int, str], int] = {}
    if txns and row is not None:
        overdraft_id = session.scalar(select(LedgerAccount.id)
                                      .where(LedgerAccount.key == OVERDRAFT))
        accounts = {row.account_id: "card", overdraft_id: "overdraft"}
        for txn_id, account_id, amount in session.execute(
            select(LedgerEntry.transaction_id, LedgerEntry.account_id, LedgerEntry.amount_fen)
            .where(LedgerEntry.transaction_id.in_([t.id for t in txns]),
                   LedgerEntry.account_id.in_([a for a in accounts if a is not None]))
        ):
            moves[(txn_id, accounts[account_id])] = amount
    merchants: dict[str, int] = {}
    for reference, merchant_id in session.execute(
        select(Payment.id, Payment.merchant_id)
        .where(Payment.id.in_([t.reference for t in txns if t.kind == "charge"]))
        .union_all(select(Refund.id, Refund.merchant_id)
                   .where(Refund.id.in_([t.reference for t in txns if t.kind == "refund"])))
    ):
        merchants[reference] = merchant_id
    history = []
    for txn in txns:
        balance_change = -moves.get((txn.id, "card"), 0)
        overdraft_change = moves.get((txn.id, "overdraft"), 0)
        history.append({
            "transaction_id": txn.id, "kind": txn.kind, "reference": txn.reference,
            "posted_at": txn.posted_at.isoformat(),
            "amount_fen": balance_change - overdraft_change,
            "balance_change_fen": balance_change, "overdraft_change_fen": overdraft_change,
            "merchant_id": merchants.get(txn.reference),
        })
    return {
        "card_number": card.card_number, "card_state": card.state,
        "balance_fen": 0 if row is None else row.balance_fen,
        "overdraft_fen": 0 if row is None else row.overdraft_fen,
        "transactions": history,
        "next_before": txns[-1].id if len(txns) == limit else None,
    }


def settlement_report(session: Session, *, merchant_id: int, day: date) -> dict[str, Any]:
    """What a merchant took on one business day, reconciled against its ledger account."""
    merchant = get_merchant(session, merchant_id=merchant_id)
    start = datetime.combine(day, time(0), tzinfo=BUSINESS_TZ).astimezone(UTC)
    end = start + timedelta(days=1)
    account_id = session.scalar(select(LedgerAccount.id)
                                .where(LedgerAccount.key == merchant_account_key(merchant.id)))
    in_day = Payment.settled_at >= start, Payment.settled_at < end
    by_mode = {mode: (int(count), int(total or 0)) for mode, count, total in session.execute(
        select(Payment.mode, func.count(), func.sum(Payment.amount_fen))
        .where(Payment.merchant_id == merchant.id, *in_day).group_by(Payment.mode))}
    by_terminal = [
        {"terminal_id": terminal_id, "count": int(count), "total_fen": int(total or 0)}
        for terminal_id, count, total in session.execute(
            select(Payment.terminal_id, func.count(), func.sum(Payment.amount_fen))
            .where(Payment.merchant_id == merchant.id, *in_day)
            .group_by(Payment.terminal_id).order_by(Payment.terminal_id))
    ]
    refund_count, refund_total = session.execute(
        select(func.count(), func.coalesce(func.sum(Refund.amount_fen), 0))
        .where(Refund.merchant_id == merchant.id, Refund.created_at >= start,
               Refund.created_at < end)).one()
    double_count, double_total = session.execute(
        select(func.count(), func.coalesce(func.sum(DoubleSpend.amount_fen), 0))
        .where(DoubleSpend.merchant_id == merchant.id, DoubleSpend.detected_at >= start,
               DoubleSpend.detected_at < end)).one()
    ledger_movement = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerEntry.account_id == account_id, LedgerTransaction.posted_at >= start,
               LedgerTransaction.posted_at < end))
    owed = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0))
                          .where(LedgerEntry.account_id == account_id))
    charges_count = sum(count for count, _ in by_mode.values())
    charges_total = sum(total for _, total in by_mode.values())
    net = charges_total - int(refund_total)
    ledger_net = -int(ledger_movement or 0)  # a liability grows by credits
    return {
        "merchant_id": merchant.id, "merchant_name": merchant.name, "date": day.isoformat(),
        "timezone": "UTC+08:00", "from": start.isoformat(), "to": end.isoformat(),
        "charges": {"count": charges_count, "total_fen": charges_total,
                    "online": _pair(by_mode.get("online")),
                    "offline": _pair(by_mode.get("offline"))},
        "refunds": {"count": int(refund_count), "total_fen": int(refund_total)},
        "double_spends": {"count": int(double_count), "total_fen": int(double_total)},
        "net_fen": net,
        "ledger_net_fen": ledger_net,
        "reconciled": net == ledger_net,
        "owed_to_merchant_fen": -int(owed or 0),
        "terminals": by_terminal,
    }


def _pair(counted: tuple[int, int] | None) -> dict[str, int]:
    count, total = counted or (0, 0)
    return {"count": count, "total_fen": total}
