"""Initialising a data dir: passphrase, database schema, keys, the first officer.

Example::

    result = initialise(get_settings(data_dir=Path("data")), now=datetime.now(UTC))
    print(result.root_fingerprint, result.admin_token)   # the token only when created
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.migrations import upgrade_to_head
from cardsvc.models import TrustState
from cardsvc.roles import ALL_ROLES
from cardsvc.services.audit import Actor, append_audit, create_chain_head
from cardsvc.services.errors import Unavailable
from cardsvc.services.officers import create_officer
from cardsvc.services.sealing import ensure_data_keys
from cardsvc.services.status import create_status_list
from cardsvc.services.timestamp import create_timestamp_key
from cardsvc.services.trust import Keyring, create_issuer_keys, root_fingerprint
from cardsvc.settings import Settings
from keys import KeyStore

__all__ = ["InitResult", "initialise", "load_passphrase", "open_keyring", "prepare_data_dir"]


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


def open_keyring(settings: Settings) -> Keyring:
    return Keyring(KeyStore(settings.keys_dir, passphrase=load_passphrase(settings)))


def initialise(
    settings: Settings, *, now: datetime, database: Database | None = None
) -> InitResult:
    """Idempotent: a second run changes nothing and shows no new token."""
    generated = prepare_data_dir(settings)
    keyring = open_keyring(settings)
    upgrade_to_head(settings.database_url_or_default(), key_store=keyring.store)
    own = database is None
    db = database or Database.from_settings(settings)
    try:
        def work(session: Session) -> InitResult:
            ensure_data_keys(session.connection(), store=keyring.store, now=now)
            if session.scalar(select(TrustState.id)) is not None:
                return InitResult(False, root_fingerprint(session), None, generated)
            create_chain_head(session)
            fingerprint = create_issuer_keys(session, keyring=keyring, now=now)
            timestamp_key = create_timestamp_key(session, keyring=keyring)
            assert timestamp_key is not None  # a first init has none yet
            create_status_list(session, list_id="1", size=settings.status_list_size, now=now)
            actor = Actor.cli()
            append_audit(session, actor=actor, action="authority.initialised",
                         subject=settings.issuer,
                         details={"root_fingerprint": fingerprint, "active": "k1",
                                  "next": "k2", "timestamp": timestamp_key.kid}, now=now)
            _, token = create_officer(session, name="admin", roles=ALL_ROLES, actor=actor,
                                      now=now)
            return InitResult(True, fingerprint, token, generated)

        return db.transact(work)
    finally:
        if own:
            db.dispose()
