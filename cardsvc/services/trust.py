"""Issuer keys, rotation and the signed trust list.

Private keys live in the encrypted key store (``data_dir/keys``); public keys, states and
validity windows live in the database, so every process sees a rotation at once. Issuer
kids are short and sequential (k1, k2, ...) because the kid travels in every QR code; the
letters are the city's ``CARDSVC_KID_PREFIX`` (Hangzhou ``h1``, ``h2``), so that kids are
unique nationally (docs/FEDERATION.md).
A key that stops signing (retired or compromised) has its private part destroyed once that
change commits, and leaves the published trust list once all its credentials have expired
(``keys.published_keys``); its row stays for the record.

Example::

    keyring = Keyring(KeyStore(settings.keys_dir, passphrase=passphrase))
    rotate_keys(session, keyring=keyring, kid_prefix=settings.kid_prefix, actor=Actor.cli(),
                now=now)                                   # k2 active, k3 next
    trust = signed_trust_list(session, keyring=keyring, issuer=settings.issuer, now=now,
                              lifetime_seconds=30 * 86400)
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import event, select
from sqlalchemy.orm import Session

import keys as keylib
from cardsvc.models import InterchangeKeyRecord, IssuerKeyRecord, TimestampState, TrustState
from cardsvc.services import _published
from cardsvc.services._locking import for_update
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.errors import Conflict, Invalid, NotFound, Unavailable
from keys import Signer, SigningKeyStore
from schemas import IssuerKey, KeyState, TimestampKey, TrustListClaims
from schemas.trust_list import FORMAT_VERSION

__all__ = [
    "RETIREMENT_GRACE_SECONDS",
    "ROOT_KID",
    "Keyring",
    "SignedObject",
    "active_signer",
    "alg_cutover",
    "cached_trust_list",
    "compromise_key",
    "create_issuer_keys",
    "issuer_keys",
    "published_interchange_keys",
    "root_fingerprint",
    "rotate_keys",
    "set_alg_cutover",
    "signed_trust_list",
    "signer_and_alg",
    "signing_alg",
    "timestamp_keys",
]

_log = logging.getLogger(__name__)

ROOT_KID = "root"
# A request that read "k1 is active" just before a rotation committed may still sign with
# k1 a moment later; its credentials must not be born invalid. k1 is not compromised, so
# letting it sign for one more minute costs nothing.
RETIREMENT_GRACE_SECONDS = 60
_TRUST_ROW = 1
_KID_PREFIX = re.compile(r"[a-z]{1,3}")
_KID = re.compile(r"[a-z]{1,3}([1-9][0-9]{0,8})")


class Keyring:
    """Opens private keys from the store once per process and keeps them in memory.

    The store is the encrypted file store or an HSM token (``keys.SigningKeyStore``). The
    root may live apart, in a token plugged in only to sign a trust list (P13): then
    ``open_root`` opens it on demand, and its absence is ROOT_OFFLINE, never a crash.
    """

    def __init__(self, store: SigningKeyStore,
                 open_root: Callable[[], SigningKeyStore] | None = None) -> None:
        self.store = store
        self._open_root = open_root
        self._root_store: SigningKeyStore | None = None
        self._signers: dict[str, Signer] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Keyring({self.store!r})"

    @property
    def root_apart(self) -> bool:
        """True when the root lives in its own token (an offline root)."""
        return self._open_root is not None

    def signer(self, kid: str) -> Signer:
        with self._lock:
            signer = self._signers.get(kid)
            if signer is None:
                try:
                    signer = self.store.load(kid)
                except keylib.KeyStoreError as exc:
                    raise Unavailable("KEY_UNAVAILABLE", f"key {kid} cannot be opened") from exc
                self._signers[kid] = signer
            return signer

    def opened(self, kid: str) -> Signer | None:
        """The signer of ``kid`` if it is open already (None: opening it reads the store,
        which an event loop must not wait for)."""
        return self._signers.get(kid)

    def _root_token(self) -> SigningKeyStore:
        """The root's own token, opened at the first use that finds it plugged in (a
        ceremony's short process); absent, every use is ROOT_OFFLINE."""
        assert self._open_root is not None
        with self._lock:
            if self._root_store is None:
                try:
                    self._root_store = self._open_root()
                except keylib.KeyStoreError as exc:
                    raise Unavailable("ROOT_OFFLINE", "the root token is not available; plug"
                                      " it in and run `cardsvc trust sign`") from exc
            return self._root_store

    def root(self) -> Signer:
        if self._open_root is None:
            return self.signer(ROOT_KID)
        try:
            return self._root_token().load(ROOT_KID)
        except keylib.KeyStoreError as exc:
            raise Unavailable("ROOT_OFFLINE", "the root token holds no root key") from exc

    def generate_root(self) -> Signer:
        """The root key, made at init in the root's own store (or the common one)."""
        store = self.store if self._open_root is None else self._root_token()
        try:
            return store.generate(ROOT_KID)
        except keylib.KeyStoreError as exc:
            raise Unavailable("KEYS_UNAVAILABLE", f"cannot make the root key: {exc}") from exc

    def destroy(self, kid: str) -> bool:
        """Forget a key that stopped signing and destroy its private part in the store."""
        with self._lock:
            self._signers.pop(kid, None)
        return self.store.destroy(kid)

    def generate(self, kid: str) -> Signer:
        signer = self.store.generate(kid)
        with self._lock:
            self._signers[kid] = signer
        return signer


@dataclass(frozen=True, slots=True)
class SignedObject:
    """A signed JWT as served: the token, an ETag and when it was signed."""

    jwt: str
    issued_at: int
    etag: str

    @staticmethod
    def of(jwt: str, issued_at: int) -> SignedObject:
        return SignedObject(jwt, issued_at, '"' + hashlib.sha256(jwt.encode()).hexdigest()[:32]
                            + '"')


def _epoch(now: datetime) -> int:
    return int(now.timestamp())


def issuer_keys(session: Session) -> tuple[IssuerKey, ...]:
    rows = session.scalars(select(IssuerKeyRecord).order_by(IssuerKeyRecord.seq))
    return tuple(IssuerKey(row.kid, row.public_key, KeyState(row.state), row.valid_from,
                           row.valid_until) for row in rows)


def published_interchange_keys(session: Session, *, now: int) -> tuple[IssuerKey, ...]:
    """The interchange keys the trust list publishes as ``ik`` (P10): every one not yet
    past its window, oldest first (cardsvc.services.interchange manages them)."""
    rows = session.scalars(select(InterchangeKeyRecord).order_by(InterchangeKeyRecord.seq))
    return tuple(IssuerKey(row.kid, row.public_key, KeyState(row.state), row.valid_from,
                           row.valid_until) for row in rows
                 if row.valid_until is None or row.valid_until > now)


def timestamp_keys(session: Session) -> tuple[TimestampKey, ...]:
    """The keys the trust list delegates the timestamp role to (P8.5; none before it)."""
    row = session.get(TimestampState, 1)
    return () if row is None else (TimestampKey(row.kid, row.public_key),)


_ACTIVE_KID = select(IssuerKeyRecord.kid).where(IssuerKeyRecord.state == KeyState.ACTIVE.value)


def active_signer(session: Session, *, keyring: Keyring) -> Signer:
    """The key that signs credentials and status lists now (read from the database)."""
    kid = session.scalar(_ACTIVE_KID)
    if kid is None:
        raise Unavailable("NOT_INITIALISED", "no active issuer key; run cardsvc init")
    return keyring.signer(kid)


def alg_cutover(session: Session) -> int | None:
    """The announced cut-over to ``Ed25519`` (epoch seconds), or None."""
    state = session.get(TrustState, _TRUST_ROW)
    return None if state is None else state.alg_cutover


def signing_alg(session: Session, *, now: datetime) -> str:
    """The JOSE ``alg`` to sign with at ``now``: RFC 9864's ``Ed25519`` from the cut-over
    the trust list announces, the deprecated ``EdDSA`` before it (docs/FORMATS.md)."""
    cutover = alg_cutover(session)
    return _alg_at(cutover, now)


def _alg_at(cutover: int | None, now: datetime) -> str:
    return keylib.ALG_ED25519 if cutover is not None and _epoch(now) >= cutover \
        else keylib.ALG_EDDSA


# The active kid and the cut-over in one statement, built once (provisioning signs with
# both; two reads, one of them loading the whole trust row, cost a round trip and the ORM).
_SIGNING_STATE = select(
    IssuerKeyRecord.kid,
    select(TrustState.alg_cutover).where(TrustState.id == _TRUST_ROW).scalar_subquery(),
).where(IssuerKeyRecord.state == KeyState.ACTIVE.value)


def signer_and_alg(session: Session, *, keyring: Keyring, now: datetime) -> tuple[Signer, str]:
    """``active_signer`` and ``signing_alg`` together, in one statement."""
    row = session.connection().execute(_SIGNING_STATE).first()
    if row is None:
        raise Unavailable("NOT_INITIALISED", "no active issuer key; run cardsvc init")
    return keyring.signer(row[0]), _alg_at(row[1], now)


def set_alg_cutover(session: Session, *, at: datetime, actor: Actor, now: datetime) -> int:
    """Announce (or move) the day this authority starts signing ``Ed25519``.

    Only a future time, and only while the current cut-over has not passed: moving it
    back over objects already signed ``EdDSA`` would make verifiers refuse them.
    """
    state = _lock_trust_state(session)
    epoch, when = _epoch(now), _epoch(at)
    if state.alg_cutover is not None and state.alg_cutover <= epoch:
        raise Conflict("CUTOVER_PASSED", "this authority already signs Ed25519")
    if when < epoch:
        raise Invalid("CUTOVER_IN_PAST", "the cut-over must not be in the past")
    state.alg_cutover = when
    state.version += 1  # the trust list announces it at its next signing
    append_audit(session, actor=actor, action="keys.alg_cutover", subject="trust",
                 details={"alg_cutover": when, "trust_version": state.version}, now=now)
    return when


def root_fingerprint(session: Session) -> str:
    state = session.get(TrustState, _TRUST_ROW)
    if state is None:
        raise Unavailable("NOT_INITIALISED", "the authority is not initialised")
    return state.root_fingerprint


def create_issuer_keys(
    session: Session, *, keyring: Keyring, kid_prefix: str, now: datetime
) -> str:
    """At init: root (kept if the store has one), k1 active, k2 next (with the city's
    prefix: h1, h2); returns the fingerprint."""
    try:
        root = keyring.root()
    except Unavailable:
        root = keyring.generate_root()
    fingerprint = keylib.jwk_thumbprint(keylib.public_jwk(root.public_key))
    first = keyring.generate(f"{kid_prefix}1")
    second = keyring.generate(f"{kid_prefix}2")
    keyset = keylib.initial_keys(active_kid=first.kid, active_pub=first.public_key,
                                 next_kid=second.kid, next_pub=second.public_key,
                                 now=_epoch(now))
    _store_keys(session, keyset, now=now)
    # A new authority has no EdDSA credential to honour: it signs Ed25519 from the start.
    session.add(TrustState(id=_TRUST_ROW, version=0, signed_jwt=None, signed_version=0,
                           issued_at=0, expires_at=0, root_fingerprint=fingerprint,
                           alg_cutover=_epoch(now)))
    session.flush()
    return fingerprint


def rotate_keys(
    session: Session, *, keyring: Keyring, kid_prefix: str, actor: Actor, now: datetime
) -> str:
    """Next -> active, active -> retired, and a new next key published; returns the new active kid.

    The new next key is written to the key store before the database commits; if the
    commit fails an unused key file is all that remains. The retired key's private part is
    destroyed only after the commit, so a failed commit never leaves the active key unopenable.
    """
    state = _lock_trust_state(session)
    keyset = issuer_keys(session)
    current = keylib.active_key(keyset).kid if any(
        key.state is KeyState.ACTIVE for key in keyset) else None
    new_kid = _next_kid(session, kid_prefix)
    new_key = keyring.generate(new_kid)
    try:
        rotated = keylib.rotate(keyset, new_next_kid=new_kid, new_next_pub=new_key.public_key,
                                now=_epoch(now))
    except keylib.RotationError as exc:
        raise Conflict("ROTATION_REFUSED", str(exc)) from exc
    rotated = tuple(
        replace(key, valid_until=_epoch(now) + RETIREMENT_GRACE_SECONDS)
        if key.kid == current and key.state is KeyState.RETIRED else key
        for key in rotated
    )
    _store_keys(session, rotated, now=now)
    _destroy_private_parts_after_commit(session, rotated, keyring=keyring)
    state.version += 1
    active = keylib.active_key(rotated).kid
    append_audit(session, actor=actor, action="keys.rotated", subject=f"key:{active}",
                 details={"active": active, "next": new_kid, "trust_version": state.version},
                 now=now)
    return active


def compromise_key(
    session: Session, *, kid: str, keyring: Keyring, kid_prefix: str, actor: Actor,
    now: datetime
) -> tuple[IssuerKey, ...]:
    """Mark a key compromised: nothing it signed verifies any more.

    A compromised active key is first rotated out (its published successor takes over);
    a compromised next key is replaced by a fresh next key. Its private part is destroyed
    once this commits.
    """
    _lock_trust_state(session)
    keyset = issuer_keys(session)
    by_kid = {key.kid: key for key in keyset}
    if kid not in by_kid:
        raise NotFound("KEY_NOT_FOUND", f"no issuer key {kid!r}")
    if by_kid[kid].state is KeyState.ACTIVE:
        rotate_keys(session, keyring=keyring, kid_prefix=kid_prefix, actor=actor, now=now)
        keyset = issuer_keys(session)
    elif by_kid[kid].state is KeyState.NEXT:
        replacement = _next_kid(session, kid_prefix)
        signer = keyring.generate(replacement)
        keyset = (*keyset, IssuerKey(replacement, signer.public_key, KeyState.NEXT,
                                     _epoch(now)))
    compromised = keylib.compromise(keyset, kid, now=_epoch(now))
    _store_keys(session, compromised, now=now)
    _destroy_private_parts_after_commit(session, compromised, keyring=keyring)
    state = _lock_trust_state(session)
    state.version += 1
    append_audit(session, actor=actor, action="keys.compromised", subject=f"key:{kid}",
                 details={"trust_version": state.version}, now=now)
    return compromised


def cached_trust_list(
    session: Session, *, now: datetime, lifetime_seconds: int
) -> SignedObject | None:
    """The last signed trust list if it is still current (read only), else None."""
    state = session.get(TrustState, _TRUST_ROW)
    if state is None:
        raise Unavailable("NOT_INITIALISED", "the authority is not initialised")
    if state.signed_jwt is None or _trust_list_stale(state, issuer_keys(session), _epoch(now),
                                                     lifetime_seconds):
        return None
    return SignedObject.of(state.signed_jwt, state.issued_at)


def signed_trust_list(
    session: Session, *, keyring: Keyring, issuer: str, now: datetime, lifetime_seconds: int,
    ceremony: bool = False,
) -> SignedObject:
    """The current trust list, re-signed when the keys changed or half its life has passed.

    ``ceremony``: sign now whatever its age, and fail (ROOT_OFFLINE) rather than serve the
    last one: what `cardsvc trust sign` does with the root's token plugged in.
    """
    epoch = _epoch(now)
    state = session.get(TrustState, _TRUST_ROW)
    if state is None:
        raise Unavailable("NOT_INITIALISED", "the authority is not initialised")
    if not ceremony and not _trust_list_stale(state, issuer_keys(session), epoch,
                                              lifetime_seconds):
        assert state.signed_jwt is not None
        return SignedObject.of(state.signed_jwt, state.issued_at)
    state = _lock_trust_state(session)
    keyset = issuer_keys(session)
    if ceremony or _trust_list_stale(state, keyset, epoch, lifetime_seconds):
        try:
            root = keyring.root()
        except Unavailable as offline:
            # An offline root (P13): serve what the last signing ceremony left while it
            # lasts; monitoring sees the age (docs/OPERATIONS.md) long before it expires.
            if ceremony or state.signed_jwt is None or state.expires_at <= epoch:
                raise
            _log.warning("trust list needs re-signing but the root is offline (%s)",
                         offline.code)
            return SignedObject.of(state.signed_jwt, state.issued_at)
        # Every signing gets a new version so "newer" always means "higher" to a verifier.
        state.version += 1
        cutover = state.alg_cutover
        claims = TrustListClaims(issuer, state.version, epoch, epoch + lifetime_seconds,
                                 keylib.published_keys(keyset, now=epoch),
                                 timestamp_keys(session), alg_cutover=cutover,
                                 # a verifier must understand Ed25519 once it is announced
                                 format_version=1 if cutover is None else FORMAT_VERSION,
                                 interchange_keys=published_interchange_keys(session,
                                                                             now=epoch))
        state.signed_jwt = keylib.sign_trust_list(claims, root,
                                                  alg=claims.signing_alg(epoch))
        state.signed_version, state.issued_at = state.version, epoch
        state.expires_at = epoch + lifetime_seconds
        session.flush()
    assert state.signed_jwt is not None
    return SignedObject.of(state.signed_jwt, state.issued_at)


def _trust_list_stale(
    state: TrustState, keyset: tuple[IssuerKey, ...], epoch: int, lifetime_seconds: int
) -> bool:
    return (
        state.signed_jwt is None
        or state.signed_version != state.version
        or epoch - state.issued_at >= lifetime_seconds // 2
        or epoch < state.issued_at
        # a key's retention ended since the last signing: drop it now, not weeks later
        or keylib.published_keys(keyset, now=epoch)
        != keylib.published_keys(keyset, now=state.issued_at)
    )


def _destroy_private_parts_after_commit(
    session: Session, keyset: tuple[IssuerKey, ...], *, keyring: Keyring
) -> None:
    """Once the new states are durable, destroy every private part no key state needs.

    After the commit, never before: a rolled-back rotation must find its active key. Every
    stopped key is swept, so one whose destruction was cut short goes at the next change.
    """
    kids = [key.kid for key in keyset if keylib.stopped_signing(key)]

    def destroy(_: Session) -> None:
        for kid in kids:
            try:
                if keyring.destroy(kid):
                    _log.info("private part of issuer key %s destroyed", kid)
            except (OSError, keylib.KeyStoreError) as error:
                # The commit stands; backups leave this key out, the next change retries.
                _log.error("private part of issuer key %s not destroyed: %s", kid,
                           type(error).__name__)

    event.listen(session, "after_commit", destroy, once=True)


def _lock_trust_state(session: Session) -> TrustState:
    _published.changed(session)
    state = session.execute(
        for_update(select(TrustState).where(TrustState.id == _TRUST_ROW))
    ).scalar_one_or_none()
    if state is None:
        raise Unavailable("NOT_INITIALISED", "the authority is not initialised")
    return state


def _next_kid(session: Session, kid_prefix: str) -> str:
    """The city's prefix and one above the highest number any issuer key had (so a city
    that changed its prefix never reuses a number)."""
    if not _KID_PREFIX.fullmatch(kid_prefix):
        raise ValueError(f"bad kid prefix {kid_prefix!r}")
    highest = session.scalar(select(IssuerKeyRecord.seq).order_by(IssuerKeyRecord.seq.desc()))
    return f"{kid_prefix}{(highest or 0) + 1}"


def _kid_number(kid: str) -> int:
    found = _KID.fullmatch(kid)
    if found is None:
        raise ValueError(f"issuer kid {kid!r} is not letters and a number")
    return int(found.group(1))


def _store_keys(session: Session, keyset: tuple[IssuerKey, ...], *, now: datetime) -> None:
    _published.changed(session)
    for key in keyset:
        row = session.get(IssuerKeyRecord, key.kid)
        if row is None:
            session.add(IssuerKeyRecord(kid=key.kid, seq=_kid_number(key.kid),
                                        public_key=key.public_key, state=key.state.value,
                                        valid_from=key.valid_from, valid_until=key.valid_until,
                                        created_at=now))
        else:
            row.state, row.valid_from = key.state.value, key.valid_from
            row.valid_until = key.valid_until
    session.flush()
