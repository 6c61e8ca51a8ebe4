"""Personal data sealed at rest (P13): envelope encryption and a keyed blind index.

- The key-encryption key (KEK) lives only in the key store: with ``--keys pkcs11:…`` an
  AES-256 key generated inside the token, never extractable, which wraps and unwraps
  there; else ``data-kek.key``, 32 bytes encrypted under the key passphrase (development
  default). Each ``data_keys`` row names its KEK (``pkcs11:<label>`` / ``file:<name>``),
  never a byte of it; :class:`KekRing` opens the one named.
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
import itertools
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.orm import Session

from cardsvc.models import SEALER_INFO, Passport, Portrait, UtcDateTime
from cardsvc.services.errors import Conflict, Unavailable
from cardsvc.settings import Settings
from keys import KeyStore, KeyStoreError
from keys.kek import FILE_PREFIX, PKCS11_PREFIX, DataKek, FileKek
from keys.pkcs11 import HsmKeyStore

__all__ = [
    "KEK_NAME",
    "DataKeys",
    "KekRing",
    "Rewrapped",
    "SealedDataError",
    "Sealer",
    "data_keks_for",
    "data_key_store",
    "data_keys_for",
    "ensure_data_keys",
    "move_kek_to_hsm",
    "open_data_keys",
    "passport_index",
    "reseal_batch",
    "retire_keks",
    "rewrap_data_keys",
    "rotate_data_key",
    "rotate_kek",
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
    sa.Column("kek", sa.String(80)),
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


def _current_kek(rows: list[sa.Row[Any]]) -> str:
    # Every row is under one KEK (a re-wrap is one transaction); the newest row names it.
    return str(max(rows, key=lambda row: row[0])[2])


def ensure_data_keys(connection: sa.Connection, *, keks: KekRing, now: datetime) -> bool:
    """Make a DEK and an index key (wrapped, in ``data_keys``) unless they exist, and the
    KEK that wraps them where this authority keeps its keys (the token with ``--keys
    pkcs11:…``, else the passphrase store). True when something was made. Idempotent."""
    rows = list(connection.execute(sa.select(DATA_KEYS.c.id, DATA_KEYS.c.purpose,
                                             DATA_KEYS.c.kek)))
    kek = keks.open(_current_kek(rows)) if rows else keks.first()
    made = False
    for purpose in ("seal", "index"):
        if purpose not in {row.purpose for row in rows}:
            connection.execute(DATA_KEYS.insert().values(
                purpose=purpose, wrapped=kek.wrap(os.urandom(32)), kek=kek.name,
                created_at=now))
            made = True
    return made


def rotate_data_key(connection: sa.Connection, *, keks: KekRing, now: datetime) -> int:
    """Add a new DEK; fields sealed from now on use it. Returns its id."""
    rows = list(connection.execute(sa.select(DATA_KEYS.c.id, DATA_KEYS.c.purpose,
                                             DATA_KEYS.c.kek)))
    if not rows:
        raise Unavailable("DATA_KEY_UNAVAILABLE", "no data keys in the database; run cardsvc"
                          " upgrade")
    kek = keks.open(_current_kek(rows))
    result = connection.execute(DATA_KEYS.insert().values(
        purpose="seal", wrapped=kek.wrap(os.urandom(32)), kek=kek.name, created_at=now))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


@dataclass(frozen=True, slots=True)
class Rewrapped:
    """What a KEK move or rotation did: the KEK now wrapping every data key, how many rows
    it re-wrapped, and the KEKs that no longer wrap any."""

    kek: str
    rows: int
    replaced: tuple[str, ...]


def rewrap_data_keys(connection: sa.Connection, *, keks: KekRing, to: DataKek) -> Rewrapped:
    """Unwrap every data key with the KEK its row names and wrap it with ``to``, in the
    caller's transaction (all rows or none). The data keys stay the same: no field is
    re-sealed. Rows already under ``to`` are left alone."""
    rows = list(connection.execute(sa.select(DATA_KEYS.c.id, DATA_KEYS.c.wrapped,
                                             DATA_KEYS.c.kek).order_by(DATA_KEYS.c.id)))
    replaced: set[str] = set()
    done = 0
    for row in rows:
        if row.kek == to.name:
            continue
        key = _unwrap(keks.open(row.kek), bytes(row.wrapped))
        connection.execute(DATA_KEYS.update().where(DATA_KEYS.c.id == row.id).values(
            wrapped=to.wrap(key), kek=to.name))
        replaced.add(str(row.kek))
        done += 1
    return Rewrapped(to.name, done, tuple(sorted(replaced)))


def move_kek_to_hsm(connection: sa.Connection, *, keks: KekRing) -> Rewrapped:
    """Re-wrap every data key with a new KEK made inside the token (an authority whose
    signing keys moved to a token before its KEK did). Idempotent: when every row is
    already wrapped in a token, nothing changes."""
    if not keks.in_hsm:
        raise Conflict("KEYS_NOT_IN_HSM", "this authority keeps its keys in files; init it"
                       " with --keys pkcs11:… first")
    names = set(connection.scalars(sa.select(DATA_KEYS.c.kek)))
    if not names:
        raise Unavailable("DATA_KEY_UNAVAILABLE", "no data keys in the database; run cardsvc"
                          " upgrade")
    if all(name.startswith(PKCS11_PREFIX) for name in names):
        return Rewrapped(sorted(names)[-1], 0, ())
    return rewrap_data_keys(connection, keks=keks, to=keks.create())


def rotate_kek(connection: sa.Connection, *, keks: KekRing) -> Rewrapped:
    """A new KEK where this authority keeps its keys; every data key re-wrapped with it."""
    if connection.scalar(sa.select(sa.func.count()).select_from(DATA_KEYS)) == 0:
        raise Unavailable("DATA_KEY_UNAVAILABLE", "no data keys in the database; run cardsvc"
                          " upgrade")
    return rewrap_data_keys(connection, keks=keks, to=keks.create())


def open_data_keys(connection: sa.Connection, *, keks: KekRing) -> Sealer:
    return _open_with(connection, keks, {})


def _unwrap(kek: DataKek, wrapped: bytes) -> bytes:
    try:
        return kek.unwrap(wrapped)
    except KeyStoreError:
        raise Unavailable("DATA_KEY_UNAVAILABLE",
                          f"the KEK {kek.name} does not unwrap this database's keys") from None


def _open_with(connection: sa.Connection, keks: KekRing,
               unwrapped: dict[tuple[str, bytes], bytes]) -> Sealer:
    """The sealer of the database's data keys; ``unwrapped`` caches keys already unwrapped
    (by KEK name and wrapped bytes), so a re-read asks the KEK (the token) only for new
    rows."""
    rows = list(connection.execute(sa.select(DATA_KEYS.c.id, DATA_KEYS.c.purpose,
                                             DATA_KEYS.c.wrapped, DATA_KEYS.c.kek
                                             ).order_by(DATA_KEYS.c.id)))
    if not any(row.purpose == "index" for row in rows) or not any(
            row.purpose == "seal" for row in rows):
        raise Unavailable("DATA_KEY_UNAVAILABLE",
                          "no data keys in the database; run cardsvc upgrade")
    deks: dict[int, bytes] = {}
    index_key = b""
    for row in rows:
        wrapped = bytes(row.wrapped)
        key = unwrapped.get((row.kek, wrapped))
        if key is None:
            key = unwrapped[(row.kek, wrapped)] = _unwrap(keks.open(row.kek), wrapped)
        if row.purpose == "seal":
            deks[int(row.id)] = key
        elif row.purpose == "index" and not index_key:
            index_key = key
    return Sealer(deks, max(deks), index_key)


class KekRing:
    """The KEKs an authority can reach: the passphrase key store (``file:<name>``) and,
    when its keys are in a PKCS#11 token (``init --keys pkcs11:…``), that token
    (``pkcs11:<label>``). Each is opened on first need, then kept for the process. New
    KEKs are made in the token when there is one, else in the key store."""

    def __init__(self, *, file_store: Callable[[], KeyStore],
                 token: Callable[[], HsmKeyStore] | None = None) -> None:
        self._open_file_store, self._open_token = file_store, token
        self._file_store: KeyStore | None = None
        self._token: HsmKeyStore | None = None
        self._open: dict[str, DataKek] = {}
        self._lock = threading.RLock()

    @classmethod
    def of_file(cls, store: KeyStore) -> KekRing:
        return cls(file_store=lambda: store)

    def __repr__(self) -> str:
        return f"KekRing(in_hsm={self.in_hsm}, keys=***)"

    @property
    def in_hsm(self) -> bool:
        return self._open_token is not None

    def _files(self) -> KeyStore:
        if self._file_store is None:
            self._file_store = self._open_file_store()
        return self._file_store

    def _hsm(self) -> HsmKeyStore:
        if self._open_token is None:
            raise Unavailable("DATA_KEY_UNAVAILABLE", "the data keys are wrapped in a token,"
                              " but this authority's keys are not in one (--keys pkcs11:…)")
        if self._token is None:
            self._token = self._open_token()
        return self._token

    def open(self, name: str) -> DataKek:
        """The KEK a ``data_keys`` row names (DATA_KEY_UNAVAILABLE when it cannot be had:
        no such key, a wrong passphrase or PIN, the token absent)."""
        with self._lock:
            kek = self._open.get(name)
            if kek is not None:
                return kek
            try:
                if name.startswith(FILE_PREFIX):
                    secret = name.removeprefix(FILE_PREFIX)
                    kek = FileKek(secret, self._files().load_secret(secret))
                elif name.startswith(PKCS11_PREFIX):
                    kek = self._hsm().load_kek(name.removeprefix(PKCS11_PREFIX))
                else:
                    raise KeyStoreError("unknown kind of KEK")
            except KeyStoreError as error:
                raise Unavailable("DATA_KEY_UNAVAILABLE",
                                  f"the KEK {name} cannot be opened: {error}; restore the key"
                                  " store or plug in the token that goes with this database"
                                  ) from None
            self._open[name] = kek
            return kek

    def first(self) -> DataKek:
        """The KEK of a database without data keys: a file store's ``data-kek`` if one was
        left by an interrupted init, else a new one (:meth:`create`)."""
        if not self.in_hsm and self._files().has_secret(KEK_NAME):
            return self.open(FILE_PREFIX + KEK_NAME)
        return self.create()

    def create(self) -> DataKek:
        """A new KEK, in the token when there is one (AES-256, generated there, sensitive
        and never extractable), else 32 random bytes in the passphrase store."""
        with self._lock:
            try:
                if self.in_hsm:
                    token = self._hsm()
                    kek: DataKek = token.generate_kek(_free(KEK_NAME, set(token.kek_labels())))
                else:
                    files = self._files()
                    secret = next(name for name in itertools.chain(
                        [KEK_NAME], (f"{KEK_NAME}-{n}" for n in itertools.count(2)))
                        if not files.has_secret(name))
                    files.save_secret(secret, os.urandom(32))
                    kek = FileKek(secret, files.load_secret(secret))
            except KeyStoreError as error:
                raise Unavailable("DATA_KEY_UNAVAILABLE", f"no new KEK was made: {error}"
                                  ) from None
            self._open[kek.name] = kek
            return kek

    def destroy(self, name: str) -> bool:
        """Destroy a KEK no row names any more: a file's bytes are overwritten, a token's
        key deleted there."""
        with self._lock:
            self._open.pop(name, None)
            try:
                if name.startswith(FILE_PREFIX):
                    return self._files().destroy_secret(name.removeprefix(FILE_PREFIX))
                return self._hsm().destroy_kek(name.removeprefix(PKCS11_PREFIX))
            except KeyStoreError as error:
                raise Unavailable("DATA_KEY_UNAVAILABLE", f"{name} was not destroyed: {error}"
                                  ) from None


def _free(prefix: str, taken: set[str]) -> str:
    return next(f"{prefix}-{n}" for n in range(1, len(taken) + 2)
                if f"{prefix}-{n}" not in taken)


def retire_keks(connection: sa.Connection, *, keks: KekRing, names: tuple[str, ...]) -> list[str]:
    """Destroy the KEKs of ``names`` that no data key names any more (after the re-wrap
    committed); returns those destroyed."""
    still = set(connection.scalars(sa.select(DATA_KEYS.c.kek)))
    return [name for name in names if name not in still and keks.destroy(name)]


class DataKeys:
    """What a :class:`cardsvc.db.Database` puts in each session's ``info``: opens the data
    keys on first use (the KEKs from the key store or the token, the DEKs from the
    database) and keeps them for the process. It reads the wrapped keys again after
    ``refresh_seconds`` (so a DEK rotated by another process seals here too within a
    minute) or when a field names a DEK it does not know yet; only new rows are
    unwrapped again."""

    def __init__(self, open_keks: Callable[[], KekRing | KeyStore], *,
                 refresh_seconds: float = 60.0) -> None:
        self._open_keks = open_keks
        self._keks: KekRing | None = None  # opened once (scrypt, a token login)
        self._unwrapped: dict[tuple[str, bytes], bytes] = {}
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
                if self._keks is None:
                    opened = self._open_keks()
                    self._keks = (KekRing.of_file(opened) if isinstance(opened, KeyStore)
                                  else opened)
                self._sealer = _open_with(connection, self._keks, self._unwrapped)
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
    """The passphrase key store of the data dir (file KEKs; migration 0190 uses it)."""
    from cardsvc.services.bootstrap import load_passphrase

    return KeyStore(settings.keys_dir, passphrase=load_passphrase(settings))


def data_keks_for(settings: Settings) -> KekRing:
    """The KEKs of this data dir: its passphrase store, and the token of ``--keys
    pkcs11:…`` when init chose one (its PIN from CARDSVC_HSM_PIN). Both open on use."""
    from cardsvc.services.bootstrap import key_location

    location = key_location(settings)
    if not location.in_hsm:
        return KekRing(file_store=lambda: data_key_store(settings))

    def token() -> HsmKeyStore:
        pin = "" if settings.hsm_pin is None else settings.hsm_pin.get_secret_value()
        if not pin:
            raise Unavailable("NO_PIN", "set CARDSVC_HSM_PIN: the data keys are wrapped in"
                              " the token")
        try:
            return HsmKeyStore.open(location.keys, pin=pin)
        except KeyStoreError as error:
            raise Unavailable("DATA_KEY_UNAVAILABLE", f"the token of the data KEK: {error}"
                              ) from None

    return KekRing(file_store=lambda: data_key_store(settings), token=token)


def data_keys_for(settings: Settings) -> DataKeys:
    """The data keys of this data dir (the passphrase or the token opened on first use)."""
    return DataKeys(lambda: data_keks_for(settings))


def sealer_of(session: Session, *, dek_id: int | None = None) -> Sealer:
    """The sealer of this session's database (Unavailable when it has no key store)."""
    provider = session.info.get(SEALER_INFO)
    if provider is None:
        raise Unavailable("DATA_KEY_UNAVAILABLE", "this database was opened without keys")
    sealer: Sealer = provider(session.connection(), dek_id=dek_id)
    return sealer


def passport_index(session: Session, *, number: str, country: str) -> str:
    return sealer_of(session).passport_index(number, country)
