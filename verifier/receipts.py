"""Receipts checked offline, and bound to the sale a terminal made.

A signature proves who signed a receipt, not which sale it is for: a fake or
man-in-the-middle authority can hand a terminal a genuine receipt of another sale. So a
terminal asks two questions, in this order, each failure its own code:

1. :func:`verify_receipt` -- header (``alg`` first), a trust-listed issuer key in a state
   that may sign, the signature, then the claims, the issuer and the key's window.
2. :func:`receipt_matches_sale` -- a payment (not a refund) receipt of this terminal and
   merchant, for this amount and this pay code.

:func:`check_receipt` runs both and fails closed: no synced trust list, no receipt, or
no known sale is a refusal, never "unchecked".

A verifier pinned to the national root (P10) checks a receipt signed by any listed city:
:func:`check_receipt` with ``federation=`` finds the city by the receipt's ``kid`` (unique
nationally; suspended, removed or compromised refused) and checks the receipt against
that city's keys alone (``trust_for``), so the receipt's ``iss`` must be that city.

Example::

    sale = Sale(terminal_id=7, merchant_id=3, amount_fen=1250, pay_code=pay_code_key(code))
    check_receipt(unverified_jwt, trust_list=trust_list, sale=sale).code   # "RECEIPT_OK"
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas._jose import b64url_encode, parse_json_object, split_compact
from schemas.codes import FmcError, KeyNotValidAtIssue, UnknownKey
from schemas.federation import FederationClaims
from schemas.presentation import decode_presentation
from schemas.receipt import RECEIPT_TYP, Receipt
from schemas.trust_list import KeyState, TrustListClaims
from verifier.federation import resolve_key_by_kid
from verifier.replay import replay_key
from verifier.trust import verify_issuer_signed

__all__ = [
    "RECEIPT_OK",
    "ReceiptCheck",
    "Sale",
    "check_receipt",
    "city_trust_list",
    "pay_code_key",
    "receipt_matches_sale",
    "verify_receipt",
]

RECEIPT_OK = "RECEIPT_OK"
_RECEIPT_SIGNERS = (KeyState.ACTIVE, KeyState.RETIRED, KeyState.NEXT)


def verify_receipt(unverified_jwt: str, *, trust_list: TrustListClaims) -> Receipt:
    """Check a receipt offline. Raises FmcError with its code."""
    key, payload = verify_issuer_signed(
        unverified_jwt, trust_list=trust_list, typ=RECEIPT_TYP,
        signer_states=_RECEIPT_SIGNERS, what="receipt",
    )
    receipt = Receipt.from_payload(payload)
    if receipt.issuer != trust_list.issuer:
        raise UnknownKey("receipt issuer is not the trust list's issuer")
    if receipt.issued_at < key.valid_from or (
            key.valid_until is not None and receipt.issued_at >= key.valid_until):
        raise KeyNotValidAtIssue("the key was not valid when this receipt was signed")
    return receipt


@dataclass(frozen=True, slots=True)
class Sale:
    """The sale a terminal expects a receipt for: its own ids (from ``terminal setup``),
    the amount it asked for and the replay key of the pay code it scanned."""

    terminal_id: int
    merchant_id: int
    amount_fen: int
    pay_code: str


def receipt_matches_sale(receipt: Receipt, sale: Sale) -> str:
    """``RECEIPT_OK`` when a verified receipt is the payment receipt of exactly this sale,
    else the first failed check's code, in this fixed order: kind, terminal, merchant,
    amount, pay code."""
    if receipt.kind != "payment":
        return "RECEIPT_NOT_A_PAYMENT"
    if receipt.terminal_id != sale.terminal_id:
        return "RECEIPT_OTHER_TERMINAL"
    if receipt.merchant_id != sale.merchant_id:
        return "RECEIPT_OTHER_MERCHANT"
    if receipt.amount_fen != sale.amount_fen:
        return "RECEIPT_OTHER_AMOUNT"
    if receipt.pay_code != sale.pay_code:
        return "RECEIPT_OTHER_PAY_CODE"
    return RECEIPT_OK


@dataclass(frozen=True, slots=True)
class ReceiptCheck:
    """The outcome of :func:`check_receipt`: ``RECEIPT_OK`` or the refusal code."""

    code: str
    receipt: Receipt | None = None

    @property
    def ok(self) -> bool:
        return self.code == RECEIPT_OK


def city_trust_list(unverified_jwt: str, *, federation: FederationClaims) -> TrustListClaims:
    """The keys of the city whose key the receipt's ``kid`` names (a hint: the signature
    and ``iss`` are checked against that city alone afterwards)."""
    _, header_bytes, _, _ = split_compact(unverified_jwt)
    unverified_kid = parse_json_object(header_bytes).get("kid")
    if not isinstance(unverified_kid, str):
        raise UnknownKey("receipt names no key")
    entry, _ = resolve_key_by_kid(federation, unverified_kid=unverified_kid)
    return entry.as_trust_list(federation)


def check_receipt(unverified_jwt: object, *, trust_list: TrustListClaims | None,
                  sale: Sale | None,
                  federation: FederationClaims | None = None) -> ReceiptCheck:
    """Both questions, failing closed: a receipt that cannot be checked proves nothing.

    With ``federation`` (a verifier pinned nationally) the receipt may be any listed
    city's, checked against that city's keys; ``trust_list`` is then not used."""
    if trust_list is None and federation is None:
        return ReceiptCheck("RECEIPT_NO_TRUST_LIST")
    if not isinstance(unverified_jwt, str):
        return ReceiptCheck("RECEIPT_MISSING")
    try:
        if federation is not None:
            trust_list = city_trust_list(unverified_jwt, federation=federation)
        if trust_list is None:
            return ReceiptCheck("RECEIPT_NO_TRUST_LIST")
        receipt = verify_receipt(unverified_jwt, trust_list=trust_list)
    except FmcError as error:
        return ReceiptCheck(f"RECEIPT_{error.code.value}")
    if sale is None:
        return ReceiptCheck("RECEIPT_SALE_UNKNOWN", receipt)
    return ReceiptCheck(receipt_matches_sale(receipt, sale), receipt)


def pay_code_key(unverified_pay_code: str) -> str:
    """The replay key of a pay code (base64url), as receipts carry it; verifies nothing.

    Raises Malformed when the text is not a presentation."""
    parts = decode_presentation(unverified_pay_code)
    return b64url_encode(replay_key(parts.signature, parts.proof_time))
