"""Encryption to an offline recovery key (P13): what ``cardsvc backup --recipient`` writes.

HPKE-like: an ephemeral X25519 key agrees a secret with the recipient's public key,
HKDF-SHA256 (salt: both public keys) makes a ChaCha20-Poly1305 key, and the stream is
sealed in 1 MiB chunks whose nonce is the chunk counter plus a last-chunk flag (STREAM),
so a reordered, cut or extended file does not open. Only the private half, kept
offline, opens it.

File: ``MAGIC || ephemeral public (32) || { length (4, big endian) || chunk }*``.

Example::

    private_pem, public_text = recovery_keypair()
    with open("b.fmcx", "wb") as out, SealedWriter(out, load_recipient(public_text)) as w:
        w.write(archive_bytes)
    open_sealed(open("b.fmcx", "rb"), plain_out, load_identity(private_pem))
"""

from __future__ import annotations

import base64
import binascii
import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "MAGIC",
    "RecipientError",
    "SealedWriter",
    "is_sealed",
    "load_identity",
    "load_recipient",
    "open_sealed",
    "recovery_keypair",
]

MAGIC = b"FMC-SEALED-X25519/1\n"
_CHUNK = 1 << 20
_LENGTH = struct.Struct(">I")
_PUBLIC_PREFIX = "fmc-recovery-x25519:"


class RecipientError(Exception):
    """A key is unreadable, or the file does not open with this identity."""


def recovery_keypair() -> tuple[bytes, str]:
    """A new recovery key: (private PKCS#8 PEM, public text ``fmc-recovery-x25519:<b64>``).
    Keep the private half offline; give the public text to ``cardsvc backup``."""
    private = X25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem, _PUBLIC_PREFIX + base64.b64encode(_raw(private.public_key())).decode("ascii")


def load_recipient(text_or_path: str) -> X25519PublicKey:
    """A public recovery key from its text (with or without the prefix) or a file of it."""
    text = text_or_path.strip()
    if not text.startswith(_PUBLIC_PREFIX):
        path = Path(text)
        try:
            if path.is_file():
                text = path.read_text("ascii").strip()
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RecipientError(f"cannot read the recipient file: {exc}") from None
    text = text.removeprefix(_PUBLIC_PREFIX)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RecipientError("the recipient is not a recovery public key") from None
    if len(raw) != 32:
        raise RecipientError("the recipient is not a recovery public key")
    return X25519PublicKey.from_public_bytes(raw)


def load_identity(pem_or_path: bytes | Path) -> X25519PrivateKey:
    """The private recovery key, from its PEM bytes or its file."""
    try:
        pem = pem_or_path.read_bytes() if isinstance(pem_or_path, Path) else pem_or_path
        key = serialization.load_pem_private_key(pem, password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise RecipientError(f"cannot read the recovery private key: {exc}") from None
    if not isinstance(key, X25519PrivateKey):
        raise RecipientError("not an X25519 recovery private key")
    return key


def is_sealed(head: bytes) -> bool:
    return head.startswith(MAGIC)


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _aead(shared: bytes, ephemeral: bytes, recipient: bytes) -> ChaCha20Poly1305:
    key = HKDF(hashes.SHA256(), 32, salt=ephemeral + recipient,
               info=b"fmc-sealed-x25519/1").derive(shared)
    return ChaCha20Poly1305(key)


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class SealedWriter:
    """A write-only stream that seals what it is given to ``recipient``; ``close()`` (or
    leaving the ``with``) writes the last chunk. It does not close ``out``."""

    def __init__(self, out: BinaryIO, recipient: X25519PublicKey) -> None:
        ephemeral = X25519PrivateKey.generate()
        ephemeral_raw = _raw(ephemeral.public_key())
        self._aead = _aead(ephemeral.exchange(recipient), ephemeral_raw, _raw(recipient))
        self._ad = MAGIC + ephemeral_raw + _raw(recipient)
        self._out = out
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        out.write(MAGIC + ephemeral_raw)

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("write to a closed SealedWriter")
        self._buffer += data
        while len(self._buffer) > _CHUNK:  # keep at least one byte for the last chunk
            self._emit(bytes(self._buffer[:_CHUNK]), last=False)
            del self._buffer[:_CHUNK]
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def _emit(self, chunk: bytes, *, last: bool) -> None:
        box = self._aead.encrypt(_nonce(self._counter, last), chunk, self._ad)
        self._out.write(_LENGTH.pack(len(box)) + box)
        self._counter += 1

    def close(self) -> None:
        if not self._closed:
            self._emit(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True

    def __enter__(self) -> SealedWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.close()


def open_sealed(source: BinaryIO, out: BinaryIO, identity: X25519PrivateKey) -> int:
    """Open a sealed stream into ``out``; returns the bytes written. Any wrong key, flipped
    byte, missing or extra chunk raises :class:`RecipientError` (``out`` then holds a
    prefix the caller must throw away)."""
    head = source.read(len(MAGIC) + 32)
    if len(head) != len(MAGIC) + 32 or not is_sealed(head):
        raise RecipientError("not a sealed file")
    ephemeral_raw = head[len(MAGIC):]
    recipient_raw = _raw(identity.public_key())
    try:
        shared = identity.exchange(X25519PublicKey.from_public_bytes(ephemeral_raw))
    except ValueError:
        raise RecipientError("the file does not open with this key") from None
    aead = _aead(shared, ephemeral_raw, recipient_raw)
    ad = MAGIC + ephemeral_raw + recipient_raw
    counter, written = 0, 0
    while True:
        length_bytes = source.read(_LENGTH.size)
        if len(length_bytes) != _LENGTH.size:
            raise RecipientError("the file is cut short")
        (length,) = _LENGTH.unpack(length_bytes)
        if length > _CHUNK + 16:
            raise RecipientError("a chunk is too long")
        box = source.read(length)
        if len(box) != length:
            raise RecipientError("the file is cut short")
        for last in (False, True):
            try:
                chunk = aead.decrypt(_nonce(counter, last), box, ad)
                break
            except InvalidTag:
                continue
        else:
            raise RecipientError("the file does not open with this key (or was altered)")
        out.write(chunk)
        written += len(chunk)
        counter += 1
        if last:
            if source.read(1):
                raise RecipientError("bytes follow the last chunk")
            return written
