"""Receipts: what the authority signs for a charge or a refund (``typ`` fmc-receipt+jwt).

A receipt is a compact JWS by an issuer key of the trust list (docs/FORMATS.md,
"Receipts"); :func:`verifier.receipts.verify_receipt` checks one offline, and
:func:`verifier.receipts.receipt_matches_sale` binds it to the sale a terminal made.

Example::

    receipt = Receipt.from_payload(payload)    # Malformed on a missing or odd claim
    receipt.kind, receipt.amount_fen, receipt.pay_code
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.codes import Malformed

__all__ = ["MAX_AMOUNT_FEN", "RECEIPT_KINDS", "RECEIPT_TYP", "Receipt"]

RECEIPT_TYP = "fmc-receipt+jwt"
MAX_AMOUNT_FEN = 10_000_000  # 100,000 yuan: the authority's cap on one payment
RECEIPT_KINDS = ("payment", "refund")
_MODES = ("online", "offline")


@dataclass(frozen=True, slots=True)
class Receipt:
    """The claims of a receipt.

    ``pay_code`` is the pay code's replay key (base64url of SHA-256 over the credential
    signature and the proof time): the terminal recomputes it from the code it scanned.

    A receipt for a one-use pay code (P13.3) names its pseudonymous handle (``ph``)
    instead of the card number (``cn``) and carries neither the card's balance nor its
    overdraft (``bal``, ``od``): those would let a merchant link the card's payments.
    """

    receipt_id: str  # the payment id, or the refund id
    kind: str  # payment | refund
    payment_id: str
    issuer: str
    card_number: str | None  # None: a one-use pay code's receipt (``ph`` instead)
    merchant_id: int
    terminal_id: int
    amount_fen: int  # charged, or refunded
    balance_fen: int | None  # the card's balance after it (None with ``ph``)
    overdraft_fen: int | None  # the part of this payment the holder now owes (offline only)
    mode: str  # online | offline (of the payment)
    issued_at: int
    accepted_at: int
    pay_code: str
    pay_handle: str | None = None  # the one-use pay code's handle, base64url

    _NAMES = (("rid", "receipt_id", str), ("knd", "kind", str), ("pid", "payment_id", str),
              ("iss", "issuer", str), ("cn", "card_number", str), ("mid", "merchant_id", int),
              ("tid", "terminal_id", int), ("amt", "amount_fen", int),
              ("bal", "balance_fen", int), ("od", "overdraft_fen", int), ("mode", "mode", str),
              ("iat", "issued_at", int), ("at", "accepted_at", int), ("pc", "pay_code", str),
              ("ph", "pay_handle", str))
    # Present with ``cn``, absent with ``ph`` (and the other way round).
    _CARD_ONLY = frozenset({"cn", "bal", "od"})

    def to_payload(self) -> dict[str, Any]:
        return {claim: getattr(self, name) for claim, name, _ in self._NAMES
                if getattr(self, name) is not None}

    @staticmethod
    def from_payload(payload: dict[str, Any]) -> Receipt:
        one_use = "ph" in payload
        values: dict[str, Any] = {}
        for claim, name, kind in Receipt._NAMES:
            if claim == "ph" and not one_use:
                continue
            value = payload.get(claim)
            if one_use and claim in Receipt._CARD_ONLY:
                if value is not None:
                    raise Malformed(f"a receipt naming a pay handle carries no {claim}")
                values[name] = None
                continue
            if type(value) is not kind:
                raise Malformed(f"receipt claim {claim} missing or of the wrong type")
            if isinstance(value, int) and value < 0:
                raise Malformed(f"receipt claim {claim} is negative")
            values[name] = value
        if values["kind"] not in RECEIPT_KINDS or values["mode"] not in _MODES:
            raise Malformed("unknown receipt kind or mode")
        return Receipt(**values)
