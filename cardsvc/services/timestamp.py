"""The signed timestamp (P8.5, TUF's timestamp role): an online key, delegated by the
root in the trust list (``ts_keys``), signs a short-lived object naming the current trust
list and status lists, so a verifier learns within hours that a newer trust list exists.

The timestamp key is made at ``cardsvc init`` (or on start for a data dir made before
P8.5); its public part lives in the database so the trust list can name it without
opening the private key. A timestamp is re-signed when a quarter of its lifetime has
passed or when a list it names changed; ``ver`` goes up by one each time.

Example::

    create_timestamp_key(session, keyring=keyring)          # at init (audited with it)
    ensure_timestamp_key(session, keyring=keyring, actor=Actor.cli(), now=now)  # on start
    signed = signed_timestamp(session, keyring=keyring, issuer=settings.issuer, now=now,
                              lifetime_seconds=43_200)   # names the lists as last signed
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

import keys as keylib
from cardsvc.models import StatusListRecord, TimestampState, TrustState
from cardsvc.services import _published
from cardsvc.services._locking import for_update
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.errors import NotFound, Unavailable
from cardsvc.services.trust import Keyring, SignedObject, signing_alg, timestamp_keys
from schemas._jose import dump_json
from schemas.status_list import day_list_retired
from schemas.timestamp import ListRef, TimestampClaims, list_digest
from schemas.trust_list import TimestampKey

__all__ = [
    "TIMESTAMP_KID",
    "cached_timestamp",
    "create_timestamp_key",
    "ensure_timestamp_key",
    "replace_timestamp_key",
    "signed_timestamp",
    "timestamp_keys",
]

TIMESTAMP_KID = "ts1"
_TIMESTAMP_ROW = 1
_TRUST_ROW = 1


def create_timestamp_key(session: Session, *, keyring: Keyring) -> TimestampKey | None:
    """Make the timestamp key when there is none; the trust list is re-signed to name it.

    Returns the new key, or None when one exists already. A key file left by a run that
    failed before its commit is reused: its public part is all the database needs.
    """
    if session.get(TimestampState, _TIMESTAMP_ROW) is not None:
        return None
    if TIMESTAMP_KID in keyring.store.kids():
        signer = keyring.signer(TIMESTAMP_KID)
    else:
        signer = keyring.generate(TIMESTAMP_KID)
    session.add(TimestampState(id=_TIMESTAMP_ROW, kid=signer.kid, public_key=signer.public_key,
                               version=0, signed_jwt=None, issued_at=0, names=""))
    trust = session.get(TrustState, _TRUST_ROW)
    if trust is not None:
        _published.changed(session)
        trust.version += 1  # the root signs the delegation into the next trust list
    session.flush()
    return TimestampKey(signer.kid, signer.public_key)


def ensure_timestamp_key(
    session: Session, *, keyring: Keyring, actor: Actor, now: datetime
) -> TimestampKey | None:
    """On start: a data dir from before P8.5 gets its timestamp key (audited)."""
    created = create_timestamp_key(session, keyring=keyring)
    if created is not None:
        trust = session.get(TrustState, _TRUST_ROW)
        append_audit(session, actor=actor, action="keys.timestamp_created",
                     subject=f"key:{created.kid}",
                     details={"trust_version": None if trust is None else trust.version},
                     now=now)
    return created


def replace_timestamp_key(
    session: Session, *, keyring: Keyring, actor: Actor, now: datetime
) -> TimestampKey:
    """A new timestamp key in place of the current one (stolen, or simply old): the root
    signs the next trust list naming only the new key, and verifiers then drop what the
    old key signed (their fast-forward recovery). ``ver`` keeps counting up."""
    row = session.execute(
        for_update(select(TimestampState).where(TimestampState.id == _TIMESTAMP_ROW))
    ).scalar_one_or_none()
    trust = session.get(TrustState, _TRUST_ROW)
    if row is None or trust is None:
        raise _no_timestamp_key()
    old_kid = row.kid
    signer = keyring.generate(f"ts{int(old_kid.removeprefix('ts') or 0) + 1}")
    row.kid, row.public_key = signer.kid, signer.public_key
    row.signed_jwt, row.names = None, ""  # re-signed by the new key on the next request
    trust.version += 1
    _published.changed(session)
    append_audit(session, actor=actor, action="keys.timestamp_replaced",
                 subject=f"key:{signer.kid}",
                 details={"replaced": old_kid, "trust_version": trust.version}, now=now)
    session.flush()
    return TimestampKey(signer.kid, signer.public_key)


def cached_timestamp(
    session: Session, *, now: datetime, lifetime_seconds: int
) -> SignedObject | None:
    """The last signed timestamp if it names the lists as last signed (read only), else
    None."""
    row = session.get(TimestampState, _TIMESTAMP_ROW)
    trust = session.get(TrustState, _TRUST_ROW)
    if row is None or trust is None:
        raise _no_timestamp_key()
    names = _names(trust, _signed_status_lists(session, now))
    if _stale(row, names, int(now.timestamp()), lifetime_seconds):
        return None
    assert row.signed_jwt is not None
    return SignedObject.of(row.signed_jwt, row.issued_at)


def signed_timestamp(
    session: Session,
    *,
    keyring: Keyring,
    issuer: str,
    now: datetime,
    lifetime_seconds: int,
) -> SignedObject:
    """The current timestamp over the trust list and status lists as last signed (the
    caller brings them up to date first), re-signed when due. They are read under the
    timestamp row's lock, so two workers never sign one naming older lists."""
    epoch = int(now.timestamp())
    row = session.execute(
        for_update(select(TimestampState).where(TimestampState.id == _TIMESTAMP_ROW))
    ).scalar_one_or_none()
    trust = session.get(TrustState, _TRUST_ROW)
    if row is None or trust is None:
        raise _no_timestamp_key()
    status_lists = _signed_status_lists(session, now)
    names = _names(trust, status_lists)
    if _stale(row, names, epoch, lifetime_seconds):
        assert trust.signed_jwt is not None  # _names refuses an unsigned trust list
        row.version += 1
        _published.changed(session)
        claims = TimestampClaims(
            issuer, row.version, epoch, epoch + lifetime_seconds,
            ListRef(trust.signed_version, list_digest(trust.signed_jwt)),
            {list_id: ListRef(signed.issued_at, list_digest(signed.jwt))
             for list_id, signed in status_lists.items()},
        )
        row.signed_jwt = keylib.sign_timestamp(claims, keyring.signer(row.kid),
                                               alg=signing_alg(session, now=now))
        row.issued_at, row.names = epoch, names
        session.flush()
    assert row.signed_jwt is not None
    return SignedObject.of(row.signed_jwt, row.issued_at)


def _no_timestamp_key() -> NotFound:
    # 404, not 503: to a verifier this authority publishes no timestamp (yet); it is made
    # at init or on start, so only an app run without either gets here.
    return NotFound("NO_TIMESTAMP_KEY", "this authority publishes no signed timestamp")


def _signed_status_lists(session: Session, now: datetime) -> dict[str, SignedObject]:
    """The lists published at ``now`` as last signed (a retired day list is not named)."""
    epoch = int(now.timestamp())
    rows = session.execute(
        select(StatusListRecord.id, StatusListRecord.signed_jwt, StatusListRecord.signed_at)
        .where(StatusListRecord.signed_jwt.is_not(None)).order_by(StatusListRecord.id))
    return {list_id: SignedObject.of(jwt, signed_at) for list_id, jwt, signed_at in rows
            if not day_list_retired(list_id, epoch)}


def _names(trust: TrustState, status_lists: Mapping[str, SignedObject]) -> str:
    if trust.signed_jwt is None:
        raise Unavailable("NOT_INITIALISED", "no trust list has been signed yet")
    return dump_json({
        "tl": [trust.signed_version, list_digest(trust.signed_jwt)],
        "sl": {list_id: [signed.issued_at, list_digest(signed.jwt)]
               for list_id, signed in status_lists.items()},
    }).decode()


def _stale(row: TimestampState, names: str, epoch: int, lifetime_seconds: int) -> bool:
    return (
        row.signed_jwt is None
        or row.names != names
        or epoch - row.issued_at >= lifetime_seconds // 4
        or epoch < row.issued_at
    )
