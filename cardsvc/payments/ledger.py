"""The double-entry ledger: accounts, balanced transactions, and each card's balance row.

Amounts are integer fen, debit positive and credit negative; the entries of every
transaction sum to zero, checked before anything is written. A card account is a
liability (what the authority owes the holder), so the spendable balance is minus the
sum of its entries; ``overdraft`` is an asset (what holders owe after offline payments
beyond their balance). :class:`~cardsvc.payments.models.CardBalance` caches both per
card and is the row a charge locks.

Money arriving on a card (a top-up, a refund) repays its overdraft first; money leaving
it never takes the balance below zero, except that an offline payment may move the
missing part to the overdraft account, explicitly.

Example::

    row = lock_card_balance(session, card_id=7, now=now, create=True)
    assert row is not None
    legs = [(cash_account(session, now=now), 500), *credit_card(session, row, 500)]
    txn_id = post(session, kind="topup", reference="top_1", card_id=7, legs=legs, now=now)
    assert check_ledger(session).ok
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cardsvc.payments.models import CardBalance, LedgerAccount, LedgerEntry, LedgerTransaction
from cardsvc.services._locking import for_update

__all__ = [
    "CASH",
    "OVERDRAFT",
    "LedgerCheck",
    "Leg",
    "UnbalancedTransaction",
    "balanced_entries",
    "card_account_key",
    "cash_account",
    "check_ledger",
    "credit_card",
    "debit_card",
    "lock_card_balance",
    "merchant_account",
    "merchant_account_key",
    "overdraft_account",
    "post",
]

CASH = "cash"
OVERDRAFT = "overdraft"
Leg = tuple[int, int]  # (account id, amount in fen: debit positive, credit negative)


class UnbalancedTransaction(AssertionError):
    """A bug: a transaction whose entries do not sum to zero was about to be written."""


def card_account_key(card_id: int) -> str:
    return f"card:{card_id}"


def merchant_account_key(merchant_id: int) -> str:
    return f"merchant:{merchant_id}"


def _insert_ignore(session: Session, model: type[Any], values: dict[str, Any]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on both databases (concurrent creators race)."""
    dialect = session.get_bind().dialect.name
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(builder(model).values(**values).on_conflict_do_nothing())


def _account(
    session: Session, key: str, kind: str, *, now: datetime, card_id: int | None = None,
    merchant_id: int | None = None,
) -> int:
    found = session.scalar(select(LedgerAccount.id).where(LedgerAccount.key == key))
    if found is not None:
        return found
    _insert_ignore(session, LedgerAccount, dict(key=key, kind=kind, card_id=card_id,
                                                merchant_id=merchant_id, created_at=now))
    return session.scalars(select(LedgerAccount.id).where(LedgerAccount.key == key)).one()


def cash_account(session: Session, *, now: datetime) -> int:
    """Money received at top-ups (an asset)."""
    return _account(session, CASH, "cash", now=now)


def overdraft_account(session: Session, *, now: datetime) -> int:
    """What holders owe after offline payments beyond their balance (an asset)."""
    return _account(session, OVERDRAFT, "overdraft", now=now)


def merchant_account(session: Session, *, merchant_id: int, now: datetime) -> int:
    """What the authority owes one merchant (a liability)."""
    return _account(session, merchant_account_key(merchant_id), "merchant", now=now,
                    merchant_id=merchant_id)


def lock_card_balance(
    session: Session, *, card_id: int, now: datetime, create: bool
) -> CardBalance | None:
    """The card's balance row, locked until commit; with ``create``, made when missing."""
    query = for_update(select(CardBalance).where(CardBalance.card_id == card_id))
    row = session.scalar(query)
    if row is None and create:
        account_id = _account(session, card_account_key(card_id), "card", now=now,
                              card_id=card_id)
        _insert_ignore(session, CardBalance, dict(card_id=card_id, account_id=account_id,
                                                  balance_fen=0, overdraft_fen=0,
                                                  updated_at=now))
        row = session.scalar(query)
    return row


def credit_card(session: Session, row: CardBalance, amount_fen: int, *,
                now: datetime) -> list[Leg]:
    """Money arriving on a card: the overdraft is repaid first, the rest is spendable.

    Updates the cached row and returns the card-side legs (their sum is ``-amount_fen``).
    """
    if amount_fen <= 0:
        raise ValueError("a credit is a positive amount")
    repaid = min(row.overdraft_fen, amount_fen)
    legs: list[Leg] = []
    if repaid:
        legs.append((overdraft_account(session, now=now), -repaid))
    if amount_fen - repaid:
        legs.append((row.account_id, -(amount_fen - repaid)))
    row.overdraft_fen -= repaid
    row.balance_fen += amount_fen - repaid
    row.updated_at = now
    return legs


def debit_card(
    session: Session, row: CardBalance, amount_fen: int, *, now: datetime,
    allow_overdraft: bool,
) -> tuple[list[Leg], int]:
    """Money leaving a card; returns the card-side legs (sum ``+amount_fen``) and the part
    moved to the overdraft account (0 unless ``allow_overdraft`` and the balance is short).

    The caller has checked the balance when an overdraft is not allowed.
    """
    if amount_fen <= 0:
        raise ValueError("a debit is a positive amount")
    from_balance = min(row.balance_fen, amount_fen)
    short = amount_fen - from_balance
    if short and not allow_overdraft:
        raise ValueError("balance too low and no overdraft allowed")
    legs: list[Leg] = []
    if from_balance:
        legs.append((row.account_id, from_balance))
    if short:
        legs.append((overdraft_account(session, now=now), short))
    row.balance_fen -= from_balance
    row.overdraft_fen += short
    row.updated_at = now
    return legs, short


def balanced_entries(kind: str, reference: str, legs: Sequence[Leg]) -> list[Leg]:
    """The entries of one transaction (legs on one account merged); UnbalancedTransaction
    unless they sum to zero over two accounts or more."""
    merged: dict[int, int] = {}
    for account_id, amount in legs:
        merged[account_id] = merged.get(account_id, 0) + amount
    entries = [(account, amount) for account, amount in merged.items() if amount]
    if sum(amount for _, amount in entries) != 0 or len(entries) < 2:
        raise UnbalancedTransaction(f"{kind} {reference}: entries {entries} do not balance")
    return entries


def post(
    session: Session, *, kind: str, reference: str, card_id: int | None, legs: Sequence[Leg],
    now: datetime,
) -> int:
    """Write one balanced transaction (legs on one account are merged); returns its id.
    ``card_id`` is None only for an acquirer's clearing of another city's card."""
    entries = balanced_entries(kind, reference, legs)
    txn_id: int = session.execute(
        insert(LedgerTransaction)
        .values(kind=kind, reference=reference, card_id=card_id, posted_at=now)
        .returning(LedgerTransaction.id)
    ).scalar_one()
    session.execute(insert(LedgerEntry), [
        {"transaction_id": txn_id, "account_id": account, "amount_fen": amount}
        for account, amount in entries
    ])
    return txn_id


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    """The whole ledger walked: it must sum to zero, per transaction and in total, and
    every card's cached balance and overdraft must equal its entries."""

    transactions: int
    entries: int
    total_fen: int
    unbalanced_transactions: tuple[int, ...]
    balances_out_of_step: tuple[int, ...]  # card ids
    overdrafts_out_of_step: tuple[int, ...]  # card ids

    @property
    def ok(self) -> bool:
        return (self.total_fen == 0 and not self.unbalanced_transactions
                and not self.balances_out_of_step and not self.overdrafts_out_of_step)


def check_ledger(session: Session) -> LedgerCheck:
    """Sums over the whole ledger (for tests, audits and after a crash; not a hot path)."""
    total = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)))
    entries = session.scalar(select(func.count()).select_from(LedgerEntry))
    transactions = session.scalar(select(func.count()).select_from(LedgerTransaction))
    unbalanced = session.scalars(
        select(LedgerEntry.transaction_id).group_by(LedgerEntry.transaction_id)
        .having(func.sum(LedgerEntry.amount_fen) != 0).limit(100)
    ).all()
    sums = (select(LedgerEntry.account_id, func.sum(LedgerEntry.amount_fen).label("total"))
            .group_by(LedgerEntry.account_id).subquery())
    balances = session.scalars(
        select(CardBalance.card_id)
        .outerjoin(sums, sums.c.account_id == CardBalance.account_id)
        .where(CardBalance.balance_fen != -func.coalesce(sums.c.total, 0)).limit(100)
    ).all()
    owed = (select(LedgerTransaction.card_id, func.sum(LedgerEntry.amount_fen).label("owed"))
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .where(LedgerAccount.key == OVERDRAFT)
            .group_by(LedgerTransaction.card_id).subquery())
    overdrafts = session.scalars(
        select(CardBalance.card_id)
        .outerjoin(owed, owed.c.card_id == CardBalance.card_id)
        .where(CardBalance.overdraft_fen != func.coalesce(owed.c.owed, 0)).limit(100)
    ).all()
    return LedgerCheck(int(transactions or 0), int(entries or 0), int(total or 0),
                       tuple(unbalanced), tuple(balances), tuple(overdrafts))
