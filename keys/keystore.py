"""An encrypted key store: one PKCS#8 PEM per key, encrypted with a passphrase, mode 0600.

Example::

    store = KeyStore(Path("data/keys"), passphrase=b"correct horse")
    store.save(Ed25519Signer.generate(kid="k1"))
    signer = store.load("k1")
    store.destroy("k1")          # retired: the private part is gone, k1.jwk keeps the public
    store.save_secret("data-kek", os.urandom(32))   # a symmetric key, <name>.key (P13)
    kek = store.load_secret("data-kek")
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from keys._atomic import fsync_directory, write_atomically
from keys.ed25519 import Ed25519Signer, Signer, public_jwk

__all__ = ["KID_PATTERN", "KeyStore", "KeyStoreError", "SigningKeyStore"]

KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECRET_FORMAT = "fmc-secret/1"  # noqa: S105 (a format name)
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1


class KeyStoreError(Exception):
    """A key is missing, or the passphrase does not open it."""


class SigningKeyStore(Protocol):
    """Where an authority's private keys live: this encrypted file store, or an HSM token
    (:class:`keys.pkcs11.HsmKeyStore`). A private key never leaves either as bytes."""

    def generate(self, kid: str) -> Signer: ...

    def load(self, kid: str) -> Signer: ...

    def destroy(self, kid: str) -> bool: ...

    def kids(self) -> list[str]: ...


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

    def generate(self, kid: str) -> Ed25519Signer:
        """A new key, saved encrypted before it is returned."""
        signer = Ed25519Signer.generate(kid=kid)
        self.save(signer)
        return signer

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

    def public_path(self, kid: str) -> Path:
        """Where :meth:`destroy` leaves the public JWK of a key whose private part is gone."""
        return self._path(kid).with_suffix(".jwk")

    def destroy(self, kid: str) -> bool:
        """Destroy a key's private part for good; its public JWK stays as ``<kid>.jwk``.

        The encrypted file is overwritten with random bytes and synced before it is
        unlinked and the directory synced, so neither an undelete nor a later copy of the
        directory (a backup) finds it. Best effort on copy-on-write or flash storage, where
        old blocks may survive; they are still encrypted. Returns False when there was
        nothing left to destroy (it is safe to call again after a crash).
        """
        path = self._path(kid)
        if not path.exists():
            return False
        signer = self.load(kid)
        write_atomically(self.public_path(kid),
                         json.dumps(public_jwk(signer.public_key, kid=kid)).encode(), mode=0o644)
        self._shred(path)
        return True

    def _shred(self, path: Path) -> None:
        """Overwrite a key file with random bytes, flush, unlink, flush the directory."""
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, os.urandom(os.fstat(fd).st_size))
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()
        fsync_directory(self.directory)

    def _secret_path(self, name: str) -> Path:
        return self._path(name).with_suffix(".key")

    def save_secret(self, name: str, secret: bytes) -> Path:
        """Keep a symmetric key (e.g. the key-encryption key of the personal data) as
        ``<name>.key``: AES-256-GCM under a scrypt key from the passphrase, mode 0600.
        An existing secret is never overwritten (it would orphan what it protects)."""
        path = self._secret_path(name)
        if path.exists():
            raise KeyStoreError(f"secret {name!r} exists")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        salt, nonce = os.urandom(16), os.urandom(12)
        box = AESGCM(self._stretch(salt)).encrypt(nonce, secret, _SECRET_FORMAT.encode()
                                                   + b"\x00" + name.encode())
        body = {"format": _SECRET_FORMAT, "kdf": "scrypt", "n": _SCRYPT_N, "r": _SCRYPT_R,
                "p": _SCRYPT_P, "salt": _b64(salt), "nonce": _b64(nonce), "box": _b64(box)}
        write_atomically(path, json.dumps(body).encode(), mode=0o600)
        return path

    def load_secret(self, name: str) -> bytes:
        path = self._secret_path(name)
        try:
            body = json.loads(path.read_bytes())
        except FileNotFoundError as exc:
            raise KeyStoreError(f"no secret {name!r} in the store") from exc
        except ValueError as exc:
            raise KeyStoreError(f"secret {name!r} is unreadable") from exc
        try:
            if body["format"] != _SECRET_FORMAT or (body["n"], body["r"], body["p"]) != (
                    _SCRYPT_N, _SCRYPT_R, _SCRYPT_P):
                raise KeyStoreError(f"secret {name!r} has an unknown format")
            key = self._stretch(base64.b64decode(body["salt"]))
            return AESGCM(key).decrypt(base64.b64decode(body["nonce"]),
                                       base64.b64decode(body["box"]),
                                       _SECRET_FORMAT.encode() + b"\x00" + name.encode())
        except InvalidTag as exc:
            raise KeyStoreError("the passphrase does not open this secret") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyStoreError(f"secret {name!r} is unreadable") from exc

    def has_secret(self, name: str) -> bool:
        return self._secret_path(name).exists()

    def destroy_secret(self, name: str) -> bool:
        """Overwrite and unlink ``<name>.key`` (as :meth:`destroy` does a private key);
        False when there was none."""
        path = self._secret_path(name)
        if not path.exists():
            return False
        self._shred(path)
        return True

    def _stretch(self, salt: bytes) -> bytes:
        return Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=_SCRYPT_R,
                      p=_SCRYPT_P).derive(self._passphrase)

    def kids(self) -> list[str]:
        if not self.directory.exists():
            return []
        return sorted(p.stem for p in self.directory.glob("*.pem"))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
