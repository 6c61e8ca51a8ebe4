"""SQLAlchemy models of payments, on the authority's ``Base`` (one metadata, one migration line).

Money is integer fen in ``BigInteger`` columns. The ledger is double-entry: every
:class:`LedgerTransaction` has entries whose ``amount_fen`` (debit positive, credit
negative) sum to zero. :class:`CardBalance` caches a card's balance and overdraft; it is
the row a charge locks, and its CHECK constraints keep both at or above zero.

Example::

    row = session.get(CardBalance, card.id)
    row.balance_fen, row.overdraft_fen
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.models import Base, UtcDateTime

__all__ = [
    "CardBalance",
    "DoubleSpend",
    "IdempotencyRecord",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "Merchant",
    "PayCodeSeenOnline",
    "Payment",
    "Refund",
    "Terminal",
    "TopUp",
]

# Auto-increment ids: BIGINT on PostgreSQL, INTEGER (the rowid) on SQLite.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


class Merchant(Base):
    """A shop that accepts the card; its payable account collects what it is owed."""

    __tablename__ = "merchants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("officers.id"), nullable=True)


class Terminal(Base):
    """A payment terminal of a merchant; it authenticates as an officer with role terminal."""

    __tablename__ = "terminals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"), unique=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    offline_floor_fen: Mapped[int] = mapped_column(BigInteger)  # per offline payment
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (CheckConstraint("offline_floor_fen >= 0", name="floor_nonneg"),)


class LedgerAccount(Base):
    """An account of the ledger. ``key`` names it: ``card:<id>``, ``merchant:<id>``,
    ``cash`` (money received at top-ups) or ``overdraft`` (owed by holders after offline
    overdrafts)."""

    __tablename__ = "ledger_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # card | merchant | cash | overdraft
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"), nullable=True)
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CardBalance(Base):
    """A card's stored value, cached from the ledger and updated in the same transaction.

    ``balance_fen`` is what the holder may spend; ``overdraft_fen`` what the holder owes
    after offline payments beyond the balance (the card's share of the overdraft account).
    """

    __tablename__ = "card_balances"
    __table_args__ = (
        CheckConstraint("balance_fen >= 0", name="balance_nonneg"),
        CheckConstraint("overdraft_fen >= 0", name="overdraft_nonneg"),
    )

    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), primary_key=True,
                                         autoincrement=False)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), unique=True)
    balance_fen: Mapped[int] = mapped_column(BigInteger)
    overdraft_fen: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LedgerTransaction(Base):
    """One movement of money; ``reference`` is the payment, refund or top-up id."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (Index("ix_ledger_transactions_posted_at", "posted_at"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # topup | charge | refund
    reference: Mapped[str] = mapped_column(String(32), index=True)
    # None for an acquirer's clearing of another city's card (the card is not ours)
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"), index=True,
                                                nullable=True)
    posted_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LedgerEntry(Base):
    """One side of a transaction: debit positive, credit negative, never zero."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount_fen <> 0", name="amount_nonzero"),
        Index("ix_ledger_entries_account_transaction", "account_id", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"),
                                                index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)


class Payment(Base):
    """A charged pay code. ``replay_key`` is unique: a pay code is charged once, anywhere."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("refunded_fen >= 0 AND refunded_fen <= amount_fen",
                        name="refunds_within_amount"),
        Index("ix_payments_merchant_settled", "merchant_id", "settled_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    terminal_id: Mapped[int] = mapped_column(ForeignKey("terminals.id"))
    mode: Mapped[str] = mapped_column(String(8))  # online | offline
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    overdraft_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    balance_after_fen: Mapped[int] = mapped_column(BigInteger)
    replay_key: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256
    proof_time: Mapped[int] = mapped_column(BigInteger)
    accepted_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the terminal's, offline
    settled_at: Mapped[datetime] = mapped_column(UtcDateTime)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    receipt: Mapped[str] = mapped_column(Text)


class Refund(Base):
    """Money given back on a payment; all refunds of a payment stay within its amount."""

    __tablename__ = "refunds"
    __table_args__ = (CheckConstraint("amount_fen > 0", name="amount_positive"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200))
    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))


class TopUp(Base):
    """Money paid in by a cashier; an outstanding overdraft is repaid first."""

    __tablename__ = "topups"
    __table_args__ = (CheckConstraint("amount_fen > 0", name="amount_positive"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    overdraft_repaid_fen: Mapped[int] = mapped_column(BigInteger)
    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))


class DoubleSpend(Base):
    """An offline pay code that had already been charged: recorded, never charged again."""

    __tablename__ = "double_spends"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    replay_key: Mapped[str] = mapped_column(String(64), index=True)
    original_payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"))
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    terminal_id: Mapped[int] = mapped_column(ForeignKey("terminals.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    accepted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    card_suspended: Mapped[bool] = mapped_column(Boolean)


class IdempotencyRecord(Base):
    """The answer given to one (officer or terminal, idempotency key): replayed on retry."""

    __tablename__ = "idempotency_records"

    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"), primary_key=True,
                                            autoincrement=False)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(SmallInteger)
    response: Mapped[str] = mapped_column(Text)  # canonical JSON
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PayCodeSeenOnline(Base):
    """A pay code the online path refused (402, 409, 422, ...): it can never settle offline
    afterwards (a refused code re-sent as "accepted offline" would otherwise turn into
    money). Written in its own transaction, the one intended effect of a refusal."""

    __tablename__ = "pay_codes_seen_online"

    replay_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    terminal_id: Mapped[int] = mapped_column(ForeignKey("terminals.id"))
    code: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
