"""Key-encryption keys (KEKs) of the personal data: they wrap and unwrap data keys (P13).

Two kinds, one wrapped format (AES key wrap, RFC 3394: 40 bytes for a 32-byte key):

- :class:`FileKek`: 32 bytes from the passphrase key store (``keys/<name>.key``), the
  development default. Its name is ``file:<name>``.
- :class:`keys.pkcs11.HsmKek`: an AES-256 secret key generated inside a PKCS#11 token,
  sensitive and never extractable; the token wraps and unwraps (``CKM_AES_KEY_WRAP``).
  Its name is ``pkcs11:<label>``.

A name is what the database records beside each wrapped key: it says which KEK opens it,
never a byte of it.

Example::

    kek = FileKek("data-kek", os.urandom(32))
    wrapped = kek.wrap(dek)              # 40 bytes
    assert kek.unwrap(wrapped) == dek    # KeyStoreError when another KEK wrapped it
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from keys.keystore import KeyStoreError

__all__ = ["FILE_PREFIX", "PKCS11_PREFIX", "DataKek", "FileKek"]

FILE_PREFIX = "file:"
PKCS11_PREFIX = "pkcs11:"


class DataKek(Protocol):
    """A KEK: wraps a data key for the database, unwraps it for this process."""

    @property
    def name(self) -> str: ...

    def wrap(self, key: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes) -> bytes: ...


class FileKek:
    """A KEK held in this process (opened from the passphrase key store)."""

    __slots__ = ("_key", "_secret")

    def __init__(self, secret: str, key: bytes) -> None:
        if len(key) != 32:
            raise KeyStoreError("a KEK is 32 bytes")
        self._secret, self._key = secret, key

    @property
    def name(self) -> str:
        return FILE_PREFIX + self._secret

    def wrap(self, key: bytes) -> bytes:
        return aes_key_wrap(self._key, key)

    def unwrap(self, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._key, wrapped)
        except (InvalidUnwrap, ValueError):
            raise KeyStoreError(f"{self.name} does not unwrap this key") from None

    def __repr__(self) -> str:
        return f"FileKek({self.name!r}, key=***)"
