"""Personal data sealed at rest (P13): envelope encryption and a keyed blind index.

- The key-encryption key (KEK, 32 bytes) lives only in the key store (``data-kek.key``,
  encrypted under the key passphrase; an HSM later). The database never holds it.
- Data-encryption keys (DEK, 32 bytes, ``purpose='seal'``) and the blind-index key
  (``purpose='index'``) are rows of ``data_keys``, each wrapped with AES key wrap
  (RFC 3394) by the KEK. A database dump alone opens nothing.
- A sealed field is ``0x01 || dek id (4 bytes) || nonce (12) || AES-256-GCM(ciphertext)``,
  its associated data ``table, column, the row's identity and the header``: a
  ciphertext moved to another row, column or table does not open.
- A passport is found by ``HMAC-SHA256(index key, country NUL number)`` (normalised).

Example::

    sealer = sealer_of(session)
    box = sealer.seal(b"A1234567", table="passports", column="number", row="7:ab12...")
    sealer.open(box, table="passports", column="number", row="7:ab12...")   # b"A1234567"
    sealer.passport_index("A1234567", "NGA")      # 64 hex digits, the same every time
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)
from sqlalchemy.orm import Session

from cardsvc.models import SEALER_INFO, Passport, Portrait, UtcDateTime
from cardsvc.services.errors import Unavailable
from cardsvc.settings import Settings
from keys import KeyStore, KeyStoreError

__all__ = [
    "KEK_NAME",
    "DataKeys",
    "SealedDataError",
    "Sealer",
    "data_key_store",
    "data_keys_for",
    "ensure_data_keys",
    "open_data_keys",
    "passport_index",
    "reseal_batch",
    "rotate_data_key",
    "sealer_of",
]

KEK_NAME = "data-kek"
_VERSION = 1
_HEADER = struct.Struct(">BI")  # version, dek id
_NONCE = 12
_AD_PREFIX = b"fmc-seal/1"

# The table as the migration and the keys code see it (core, independent of the models).
_metadata = sa.MetaData()
DATA_KEYS = sa.Table(
    "data_keys", _metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("purpose", sa.String(16)),
    sa.Column("wrapped", sa.LargeBinary),
    sa.Column("created_at", UtcDateTime),
)


class SealedDataError(Unavailable):
    """A sealed field did not open: wrong row, tampered bytes or an unknown key (503
    ``SEALED_DATA_INVALID``: the database was altered outside the service)."""

    def __init__(self, detail: str) -> None:
        super().__init__("SEALED_DATA_INVALID", detail)


@dataclass(frozen=True, slots=True)
class Sealer:
    """Opened data keys: seals and opens fields, computes the blind index."""

    deks: dict[int, bytes]
    current: int
    index_key: bytes
    # Built once: a cipher context and an HMAC state per key, not per field.
    _aeads: dict[int, AESGCM] = field(init=False, repr=False, compare=False)
    _index: hmac.HMAC = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_aeads", {i: AESGCM(key) for i, key in self.deks.items()})
        object.__setattr__(self, "_index", hmac.new(self.index_key, digestmod=hashlib.sha256))

    def __repr__(self) -> str:
        return f"Sealer(deks={sorted(self.deks)}, current={self.current}, keys=***)"

    def seal(self, plain: bytes, *, table: str, column: str, row: str) -> bytes:
        header = _HEADER.pack(_VERSION, self.current)
        nonce = os.urandom(_NONCE)
        box = self._aeads[self.current].encrypt(
            nonce, plain, _associated(header, table, column, row))
        return header + nonce + box

    def open(self, sealed: bytes, *, table: str, column: str, row: str) -> bytes:
        if len(sealed) < _HEADER.size + _NONCE + 16:
            raise SealedDataError("too short to be a sealed field")
        header = sealed[:_HEADER.size]
        version, dek_id = _HEADER.unpack(header)
        aead = self._aeads.get(dek_id)
        if version != _VERSION or aead is None:
            raise SealedDataError("sealed with an unknown key or version")
        nonce = sealed[_HEADER.size:_HEADER.size + _NONCE]
        try:
            return aead.decrypt(nonce, sealed[_HEADER.size + _NONCE:],
                                       _associated(header, table, column, row))
        except InvalidTag:
            raise SealedDataError(f"a sealed {table}.{column} does not open here") from None

    def dek_id(self, sealed: bytes) -> int:
        return int(_HEADER.unpack(sealed[:_HEADER.size])[1])

    def passport_index(self, number: str, country: str) -> str:
        """The blind index of a normalised passport (number and country already clean)."""
        state = self._index.copy()
        state.update(country.encode("ascii") + b"\x00" + number.encode("ascii"))
        return state.hexdigest()


def _associated(header: bytes, table: str, column: str, row: str) -> bytes:
    return b"\x00".join((_AD_PREFIX, table.encode(), column.encode(), row.encode(), header))


def ensure_data_keys(connection: sa.Connection, *, store: KeyStore, now: datetime) -> bool:
    """Make the KEK (in the store) and a DEK and an index key (wrapped, in ``data_keys``)
    unless they exist. True when something was made. Idempotent."""
    purposes = set(connection.scalars(sa.select(DATA_KEYS.c.purpose)))
    if not store.has_secret(KEK_NAME):
        if purposes:
            raise Unavailable("DATA_KEY_UNAVAILABLE",
                              "the database holds wrapped data keys but the key store has"
                              " no data-kek; restore the key store that goes with it")
        store.save_secret(KEK_NAME, os.urandom(32))
    kek = _kek(store)
    made = False
    for purpose in ("seal", "index"):
        if purpose not in purposes:
            connection.execute(DATA_KEYS.insert().values(
                purpose=purpose, wrapped=aes_key_wrap(kek, os.urandom(32)), created_at=now))
            made = True
    return made


def rotate_data_key(connection: sa.Connection, *, store: KeyStore, now: datetime) -> int:
    """Add a new DEK; fields sealed from now on use it. Returns its id."""
    wrapped = aes_key_wrap(_kek(store), os.urandom(32))
    result = connection.execute(DATA_KEYS.insert().values(purpose="seal", wrapped=wrapped,
                                                          created_at=now))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def open_data_keys(connection: sa.Connection, *, store: KeyStore) -> Sealer:
    return _open_with(connection, _kek(store))


def _open_with(connection: sa.Connection, kek: bytes) -> Sealer:
    rows = list(connection.execute(sa.select(DATA_KEYS.c.id, DATA_KEYS.c.purpose,
                                             DATA_KEYS.c.wrapped).order_by(DATA_KEYS.c.id)))
    if not any(row.purpose == "index" for row in rows) or not any(
            row.purpose == "seal" for row in rows):
        raise Unavailable("DATA_KEY_UNAVAILABLE",
                          "no data keys in the database; run cardsvc upgrade")
    deks: dict[int, bytes] = {}
    index_key = b""
    try:
        for row in rows:
            key = aes_key_unwrap(kek, bytes(row.wrapped))
            if row.purpose == "seal":
                deks[int(row.id)] = key
            elif row.purpose == "index" and not index_key:
                index_key = key
    except InvalidUnwrap:
        raise Unavailable("DATA_KEY_UNAVAILABLE",
                          "the key store's data-kek does not unwrap this database's keys"
                          ) from None
    return Sealer(deks, max(deks), index_key)


def _kek(store: KeyStore) -> bytes:
    try:
        return store.load_secret(KEK_NAME)
    except KeyStoreError as exc:
        raise Unavailable("DATA_KEY_UNAVAILABLE", f"the data-kek cannot be opened: {exc}"
                          ) from None


class DataKeys:
    """What a :class:`cardsvc.db.Database` puts in each session's ``info``: opens the data
    keys on first use (the KEK from the key store, the DEKs from the database) and keeps
    them for the process. It reads the wrapped keys again after ``refresh_seconds`` (so a
    DEK rotated by another process seals here too within a minute) or when a field names
    a DEK it does not know yet."""

    def __init__(self, open_store: Callable[[], KeyStore], *, refresh_seconds: float = 60.0
                 ) -> None:
        self._open_store = open_store
        self._kek: bytes | None = None  # opened once (scrypt), the DEKs re-read from it
        self._sealer: Sealer | None = None
        self._opened_at = 0.0
        self._refresh = refresh_seconds
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "DataKeys(***)"

    def __call__(self, connection: sa.Connection, *, dek_id: int | None = None) -> Sealer:
        with self._lock:
            stale = time.monotonic() - self._opened_at > self._refresh
            if self._sealer is None or stale or (
                    dek_id is not None and dek_id not in self._sealer.deks):
                if self._kek is None:
                    self._kek = _kek(self._open_store())
                self._sealer = _open_with(connection, self._kek)
                self._opened_at = time.monotonic()
            return self._sealer

    def forget(self) -> None:
        """Read the keys again at next use (after a rotation in this process)."""
        with self._lock:
            self._sealer = None


def reseal_batch(session: Session, *, batch: int = 500) -> int:
    """Re-seal up to ``batch`` passports and as many portraits still sealed under an older
    DEK with the current one; returns how many. Run until 0 after a rotation."""
    sealer = sealer_of(session)
    header = _HEADER.pack(_VERSION, sealer.current)
    done = 0
    passports = session.scalars(sa.select(Passport).where(
        sa.func.substr(Passport.number_sealed, 1, _HEADER.size) != header).limit(batch)).all()
    for passport in passports:
        passport.number = passport.number  # marks it: sealed at flush with the current DEK
    portraits = session.scalars(sa.select(Portrait).where(
        sa.func.substr(Portrait.jpeg_sealed, 1, _HEADER.size) != header).limit(batch)).all()
    for portrait in portraits:
        portrait.jpeg = portrait.jpeg
    done = len(passports) + len(portraits)
    session.flush()
    return done


def data_key_store(settings: Settings) -> KeyStore:
    """Where the data-kek lives: the file key store of the data dir, under the key
    passphrase, also when the signing keys are in an HSM (the KEK moving into the token,
    wrapping and unwrapping there, is the next step)."""
    from cardsvc.services.bootstrap import load_passphrase

    return KeyStore(settings.keys_dir, passphrase=load_passphrase(settings))


def data_keys_for(settings: Settings) -> DataKeys:
    """The data keys of this data dir's key store (the passphrase is read on first use)."""
    return DataKeys(lambda: data_key_store(settings))


def sealer_of(session: Session, *, dek_id: int | None = None) -> Sealer:
    """The sealer of this session's database (Unavailable when it has no key store)."""
    provider = session.info.get(SEALER_INFO)
    if provider is None:
        raise Unavailable("DATA_KEY_UNAVAILABLE", "this database was opened without keys")
    sealer: Sealer = provider(session.connection(), dek_id=dek_id)
    return sealer


def passport_index(session: Session, *, number: str, country: str) -> str:
    return sealer_of(session).passport_index(number, country)
