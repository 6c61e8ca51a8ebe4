"""Provisioning: how a wallet redeems a one-time code for its credential bundle.

The wallet makes its device key on the phone and sends only the public key plus a
signature proving it holds the private key::

    POST /v1/provision
    {"provisioning_code": "<code shown by the officer>",
     "device_key": "<base64url Ed25519 public key, 32 bytes>",
     "proof": "<base64url Ed25519 signature over provisioning_proof_message(...)>"}

    200 {"card_number", "foreigner_code", "credentials": {"pay": JWS, "id": JWS, "svc": JWS},
         "expires_at": <int, earliest exp of the bundle>, "holder": {...display fields},
         "portrait": <base64 image or null>, "trust_list_url", "issuer"}

Example::

    message = provisioning_proof_message("ABCD-EFGH-JKLM", device.public_key)
    proof = device.sign(message)
"""

from __future__ import annotations

import hashlib

__all__ = [
    "PAY_BATCH_DOMAIN",
    "PROVISION_DOMAIN",
    "REFRESH_DOMAIN",
    "pay_batch_proof_message",
    "provisioning_proof_message",
    "refresh_proof_message",
]

PROVISION_DOMAIN = b"FMC1 provision\x00"
REFRESH_DOMAIN = b"FMC1 refresh\x00"
PAY_BATCH_DOMAIN = b"FMC1 pay batch\x00"


def provisioning_proof_message(provisioning_code: str, device_key: bytes) -> bytes:
    """Bytes the device key signs to show possession when redeeming a code."""
    normalized = provisioning_code.strip().upper().replace("-", "").replace(" ", "")
    return (
        PROVISION_DOMAIN
        + hashlib.sha256(normalized.encode("utf-8")).digest()
        + device_key
    )


def refresh_proof_message(card_number: str, device_key: bytes, proof_time: int) -> bytes:
    """Bytes the device key signs to ask for fresh credentials (POST /v1/wallet/refresh).

    ``b"FMC1 refresh\\x00" + proof_time (8 bytes, big-endian) + SHA-256(card number)
    + device key``.
    """
    return (
        REFRESH_DOMAIN
        + proof_time.to_bytes(8, "big")
        + hashlib.sha256(card_number.encode("ascii")).digest()
        + device_key
    )


def pay_batch_proof_message(card_number: str, device_key: bytes, proof_time: int,
                            holder_keys: list[bytes]) -> bytes:
    """Bytes the card's device key signs to ask for one-use pay credentials
    (POST /v1/wallet/pay-batch, P13.3): like the refresh message, plus SHA-256 over the
    fresh holder keys in order, so a relay cannot swap in keys of its own.

    ``b"FMC1 pay batch\\x00" + proof_time (8 bytes) + SHA-256(card number) + device key
    + SHA-256(holder key 1 || holder key 2 || ...)``.
    """
    return (
        PAY_BATCH_DOMAIN
        + proof_time.to_bytes(8, "big")
        + hashlib.sha256(card_number.encode("ascii")).digest()
        + device_key
        + hashlib.sha256(b"".join(holder_keys)).digest()
    )
