"""Initialising a data dir: passphrase, database schema, keys, the first officer.

Example::

    result = initialise(get_settings(data_dir=Path("data")), now=datetime.now(UTC))
    print(result.root_fingerprint, result.admin_token)   # the token only when created
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.migrations import upgrade_to_head
from cardsvc.models import TrustState
from cardsvc.roles import ALL_ROLES
from cardsvc.services.audit import Actor, append_audit, create_chain_head
from cardsvc.services.errors import Invalid, Unavailable
from cardsvc.services.interchange import create_interchange_key
from cardsvc.services.officers import create_officer
from cardsvc.services.sealing import data_keks_for, data_key_store, ensure_data_keys
from cardsvc.services.status import create_status_list
from cardsvc.services.timestamp import create_timestamp_key
from cardsvc.services.trust import Keyring, create_issuer_keys, root_fingerprint
from cardsvc.settings import Settings
from keys import KeyStore, KeyStoreError, SigningKeyStore
from keys._atomic import write_atomically
from keys.pkcs11 import HsmKeyStore, Pkcs11Uri

__all__ = [
    "HSM_CONFIG",
    "InitResult",
    "KeyLocation",
    "initialise",
    "key_location",
    "load_passphrase",
    "open_keyring",
    "prepare_data_dir",
]


@dataclass(frozen=True, slots=True)
class InitResult:
    created: bool  # False: the authority was already initialised
    root_fingerprint: str
    admin_token: str | None  # shown once, only when created
    passphrase_file: Path | None  # set when a development passphrase was generated


def prepare_data_dir(settings: Settings) -> Path | None:
    """Create the data dir; make a development passphrase file when none is configured."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if settings.key_passphrase is not None or settings.passphrase_file.exists():
        return None
    fd = os.open(settings.passphrase_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_urlsafe(32).encode("ascii"))
    finally:
        os.close(fd)
    return settings.passphrase_file


def load_passphrase(settings: Settings) -> bytes:
    if settings.key_passphrase is not None:
        value = settings.key_passphrase.get_secret_value().encode("utf-8")
        if value:
            return value
    try:
        value = settings.passphrase_file.read_bytes().strip()
    except FileNotFoundError:
        value = b""
    if not value:
        raise Unavailable("NO_PASSPHRASE",
                          "set CARDSVC_KEY_PASSPHRASE or run cardsvc init for a development one")
    return value


HSM_CONFIG = "pkcs11.json"  # in the key dir: token URIs only (no PIN, no key material)


@dataclass(frozen=True, slots=True)
class KeyLocation:
    """Where an authority's keys live, as ``cardsvc init --keys/--root-keys`` chose."""

    keys: str  # "file" or a pkcs11: URI
    root_keys: str | None = None  # a pkcs11: URI of the root's own token

    @property
    def in_hsm(self) -> bool:
        return self.keys.startswith("pkcs11:")


def key_location(settings: Settings) -> KeyLocation:
    """The recorded choice (a data dir keeps what init chose), else the settings'."""
    recorded = settings.keys_dir / HSM_CONFIG
    if recorded.exists():
        try:
            chosen = json.loads(recorded.read_text("utf-8"))
            return KeyLocation(str(chosen["keys"]), chosen.get("root_keys"))
        except (ValueError, KeyError, TypeError) as error:
            raise Unavailable("KEYS_CONFIG_CORRUPT", f"{recorded} is unreadable") from error
    return KeyLocation(settings.keys, settings.root_keys)


def _record_location(settings: Settings, location: KeyLocation) -> None:
    if not location.in_hsm and location.root_keys is None:
        return  # the file store needs no record
    for uri in filter(None, (location.keys, location.root_keys)):
        try:
            Pkcs11Uri.parse(uri)
        except KeyStoreError as error:
            raise Invalid("BAD_KEYS_URI", str(error)) from None
    settings.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(settings.keys_dir / HSM_CONFIG, json.dumps(
        {"keys": location.keys, "root_keys": location.root_keys}, indent=2).encode(), mode=0o600)


def _pin(secret: SecretStr | None, variable: str) -> str:
    value = "" if secret is None else secret.get_secret_value()
    if not value:
        raise Unavailable("NO_PIN", f"set {variable} to open the token")
    return value


def _open_token(uri: str, secret: SecretStr | None, variable: str) -> SigningKeyStore:
    try:
        return HsmKeyStore.open(uri, pin=_pin(secret, variable))
    except KeyStoreError as error:
        raise Unavailable("KEYS_UNAVAILABLE", str(error)) from None


def open_keyring(settings: Settings) -> Keyring:
    """The keyring over the file store or the HSM token init chose (P13)."""
    location = key_location(settings)
    store: SigningKeyStore
    if location.in_hsm:
        store = _open_token(location.keys, settings.hsm_pin, "CARDSVC_HSM_PIN")
    else:
        store = KeyStore(settings.keys_dir, passphrase=load_passphrase(settings))
    root_uri = location.root_keys
    if root_uri is None:
        return Keyring(store)

    def open_root() -> SigningKeyStore:
        try:
            return HsmKeyStore.open(root_uri, pin=_pin(settings.root_pin, "CARDSVC_ROOT_PIN"))
        except (KeyStoreError, Unavailable) as error:
            raise KeyStoreError(f"root token: {error}") from None

    return Keyring(store, open_root)


def initialise(
    settings: Settings, *, now: datetime, database: Database | None = None
) -> InitResult:
    """Idempotent: a second run changes nothing and shows no new token."""
    generated = prepare_data_dir(settings)
    if not (settings.keys_dir / HSM_CONFIG).exists():
        _record_location(settings, KeyLocation(settings.keys, settings.root_keys))
    data_store = data_key_store(settings)
    upgrade_to_head(settings.database_url_or_default(), key_store=data_store)
    keyring = open_keyring(settings)
    keks = data_keks_for(settings)  # with --keys pkcs11:…, the KEK is made in the token
    own = database is None
    db = database or Database.from_settings(settings)
    try:
        def work(session: Session) -> InitResult:
            ensure_data_keys(session.connection(), keks=keks, now=now)
            if session.scalar(select(TrustState.id)) is not None:
                return InitResult(False, root_fingerprint(session), None, generated)
            create_chain_head(session)
            fingerprint = create_issuer_keys(session, keyring=keyring,
                                             kid_prefix=settings.kid_prefix, now=now)
            interchange = create_interchange_key(session, keyring=keyring,
                                                 kid_prefix=settings.kid_prefix, now=now)
            timestamp_key = create_timestamp_key(session, keyring=keyring)
            assert timestamp_key is not None  # a first init has none yet
            create_status_list(session, list_id="1", size=settings.status_list_size, now=now)
            actor = Actor.cli()
            append_audit(session, actor=actor, action="authority.initialised",
                         subject=settings.issuer,
                         details={"root_fingerprint": fingerprint,
                                  "active": f"{settings.kid_prefix}1",
                                  "next": f"{settings.kid_prefix}2",
                                  "timestamp": timestamp_key.kid,
                                  "interchange": interchange}, now=now)
            _, token = create_officer(session, name="admin", roles=ALL_ROLES, actor=actor,
                                      now=now)
            return InitResult(True, fingerprint, token, generated)

        return db.transact(work)
    finally:
        if own:
            db.dispose()
