"""Receipts: compact JWS (``typ`` fmc-receipt+jwt, Ed25519) signed by the authority's active
issuer key, so a terminal checks them offline against the trust list it synced
(:func:`verifier.receipts.verify_receipt`; the format is :mod:`schemas.receipt`).

Example::

    jwt = sign_receipt(Receipt(...), signer)
    assert verify_receipt(jwt, trust_list=trust_list).amount_fen == 1250
"""

from __future__ import annotations

from keys import ALG_ED25519, Signer, sign_compact
from schemas._jose import dump_json
from schemas.receipt import RECEIPT_TYP, Receipt
from verifier.receipts import verify_receipt

__all__ = ["RECEIPT_TYP", "Receipt", "sign_receipt", "verify_receipt"]


def sign_receipt(receipt: Receipt, signer: Signer, *, alg: str = ALG_ED25519) -> str:
    header = {"alg": alg, "kid": signer.kid, "typ": RECEIPT_TYP}
    return sign_compact(header, dump_json(receipt.to_payload()), signer)
