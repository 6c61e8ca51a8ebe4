"""Tables of payments between cities (docs/FEDERATION.md, "Payments between cities").

:class:`ForwardedCharge` is the acquirer's outbox: one row per forward id ``g`` (``"<own
code>:<terminal id>:<K>"`` for a charge, ``"<own code>:upload:<upload id>:<index>"`` for an
offline item), committed before leg B is sent. :class:`InterchangeCharge` is the issuer's
side: the answer given to ``(acquirer, g)``, or a void that refuses a late charge.

Example::

    row = session.get(ForwardedCharge, g)
    row.state  # pending | done | refused | voiding | void
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.models import Base, UtcDateTime

__all__ = ["FORWARD_STATES", "ForwardedCharge", "InterchangeCharge"]

FORWARD_STATES = ("pending", "done", "refused", "voiding", "void")


class ForwardedCharge(Base):
    """The acquirer's outbox row of one charge (or offline item) of another city's card."""

    __tablename__ = "forwarded_charges"
    __table_args__ = (Index("ix_forwarded_charges_state", "state"),
                      Index("ix_forwarded_charges_issuer_issued", "issuer", "issued_at"))

    g: Mapped[str] = mapped_column(String(160), primary_key=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)  # the ledger reference
    issuer: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(8))  # charge | upload
    terminal_id: Mapped[int] = mapped_column(ForeignKey("terminals.id"))
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"))
    idempotency_key: Mapped[str] = mapped_column(String(64))  # the terminal's K
    request_hash: Mapped[str] = mapped_column(String(64))  # of the terminal's request
    pay_code: Mapped[str] = mapped_column(Text)  # needed to resume leg B; cleared when final
    challenge: Mapped[str | None] = mapped_column(Text, nullable=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    state: Mapped[str] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status_code: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    response: Mapped[str | None] = mapped_column(Text, nullable=True)  # answer to terminal
    receipt: Mapped[str | None] = mapped_column(Text, nullable=True)  # the issuer's
    issued_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # receipt's
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"),
                                                       nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class InterchangeCharge(Base):
    """The issuer's record of one forward id of one acquirer city: charged (with the
    stored answer), void (a late charge is refused), or reversed (charged, then voided)."""

    __tablename__ = "interchange_charges"
    __table_args__ = (Index("ix_interchange_charges_acquirer_issued", "acquirer",
                            "issued_at"),)

    acquirer: Mapped[str] = mapped_column(String(16), primary_key=True)
    g: Mapped[str] = mapped_column(String(160), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # charge | upload | void
    state: Mapped[str] = mapped_column(String(8))  # charged | refused | void | reversed
    request_hash: Mapped[str] = mapped_column(String(64))
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"), nullable=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)  # what the acquirer is owed
    issued_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status_code: Mapped[int] = mapped_column(SmallInteger)
    response: Mapped[str] = mapped_column(Text)  # canonical JSON answer
    void_response: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
