"""Ed25519 signing and verification (libsodium through PyNaCl: the fastest path here)."""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

import nacl.bindings
import nacl.exceptions
import nacl.signing

from schemas._jose import b64url_encode, dump_json

__all__ = [
    "Ed25519Signer",
    "Signer",
    "is_usable_public_key",
    "jwk_thumbprint",
    "public_jwk",
    "verify_signature",
]


@runtime_checkable
class Signer(Protocol):
    """What cardsvc and the wallet sign with; the private key never leaves the object."""

    @property
    def kid(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class Ed25519Signer:
    """An in-memory Ed25519 key. ``repr`` never shows the seed."""

    __slots__ = ("_key", "_kid")

    def __init__(self, seed: bytes, kid: str | None = None) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self._kid = kid or jwk_thumbprint(public_jwk(bytes(self._key.verify_key)))[:6]

    @classmethod
    def generate(cls, kid: str | None = None) -> Ed25519Signer:
        return cls(bytes(nacl.signing.SigningKey.generate()), kid)

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    @property
    def seed(self) -> bytes:
        """The private seed, for the encrypted key store only."""
        return bytes(self._key)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature

    def __repr__(self) -> str:
        return f"Ed25519Signer(kid={self._kid!r})"


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Strict Ed25519 verification (canonical S, no small-order keys); never raises."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def is_usable_public_key(public_key: bytes) -> bool:
    """A key a signature could ever verify under: 32 bytes encoding a point on the curve,
    in the prime-order subgroup, not of small order (what ``verify_signature`` refuses).
    For keys that arrive before any signature by them does (e.g. fresh holder keys)."""
    return len(public_key) == 32 and bool(nacl.bindings.crypto_core_ed25519_is_valid_point(
        public_key))


def public_jwk(public_key: bytes, kid: str | None = None) -> dict[str, str]:
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(public_key)}
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 SHA-256 thumbprint of an OKP key (required members only, sorted)."""
    required = {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}
    return b64url_encode(hashlib.sha256(dump_json(required)).digest())
