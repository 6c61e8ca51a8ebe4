"""An encrypted key store: one PKCS#8 PEM per key, encrypted with a passphrase, mode 0600.

Example::

    store = KeyStore(Path("data/keys"), passphrase=b"correct horse")
    store.save(Ed25519Signer.generate(kid="k1"))
    signer = store.load("k1")
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys._atomic import write_atomically
from keys.ed25519 import Ed25519Signer

__all__ = ["KID_PATTERN", "KeyStore", "KeyStoreError"]

KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class KeyStoreError(Exception):
    """A key is missing, or the passphrase does not open it."""


class KeyStore:
    """Private keys at rest, encrypted (the passphrase is held but never shown)."""

    def __init__(self, directory: Path, *, passphrase: bytes) -> None:
        if not passphrase:
            raise KeyStoreError("an empty passphrase would leave keys in clear")
        self.directory = directory
        self._passphrase = passphrase

    def __repr__(self) -> str:
        return f"KeyStore({str(self.directory)!r}, passphrase=***)"

    def _path(self, kid: str) -> Path:
        if not KID_PATTERN.match(kid):
            raise KeyStoreError("invalid kid")
        return self.directory / f"{kid}.pem"

    def save(self, signer: Ed25519Signer) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.from_private_bytes(signer.seed).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._passphrase),
        )
        path = self._path(signer.kid)
        write_atomically(path, pem, mode=0o600)
        return path

    def load(self, kid: str) -> Ed25519Signer:
        path = self._path(kid)
        try:
            pem = path.read_bytes()
        except FileNotFoundError as exc:
            raise KeyStoreError(f"no key {kid!r} in the store") from exc
        try:
            key = serialization.load_pem_private_key(pem, password=self._passphrase)
        except (ValueError, TypeError) as exc:
            raise KeyStoreError("the passphrase does not open this key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyStoreError("not an Ed25519 key")
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return Ed25519Signer(seed, kid)

    def kids(self) -> list[str]:
        if not self.directory.exists():
            return []
        return sorted(p.stem for p in self.directory.glob("*.pem"))
