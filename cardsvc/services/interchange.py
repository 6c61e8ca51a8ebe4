"""The city's interchange key (P10): it signs requests to other authorities and nothing
else (docs/FEDERATION.md, "Between authorities").

Kids are ``<prefix>i1``, ``<prefix>i2`` ... (``CARDSVC_KID_PREFIX``): never a credential
kid, so no verifier could mistake one for the other. ``cardsvc init`` creates the first;
``cardsvc keys rotate-interchange`` makes a new one active and keeps the old one
published, retired, for :data:`INTERCHANGE_OVERLAP_SECONDS`: other cities learn the new key
only once the national list carries it, so the old one signs until then.
Both appear in the root-signed trust list as ``ik``; the national tool copies them into
the city's federation entry.

Example::

    create_interchange_key(session, keyring=keyring, kid_prefix="h", now=now)    # hi1
    signer = interchange_signer(session, keyring=keyring, issuer="CN-HZ", now=now)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.federation.interauth import InterauthClient
from cardsvc.federation.state import held_federation
from cardsvc.models import InterchangeKeyRecord, TrustState
from cardsvc.services._locking import for_update
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.errors import Unavailable
from cardsvc.services.trust import Keyring, published_interchange_keys
from keys import Signer
from schemas import KeyState

__all__ = [
    "INTERCHANGE_OVERLAP_SECONDS",
    "create_interchange_key",
    "interchange_signer",
    "open_interauth_client",
    "rotate_interchange_key",
]

INTERCHANGE_OVERLAP_SECONDS = 7 * 86_400


def _epoch(now: datetime) -> int:
    return int(now.timestamp())


def _bump_trust_version(session: Session) -> int:
    state = session.execute(for_update(select(TrustState).where(TrustState.id == 1))
                            ).scalar_one_or_none()
    if state is None:
        raise Unavailable("NOT_INITIALISED", "the authority is not initialised")
    state.version += 1  # the trust list is re-signed with ``ik`` at its next request
    return state.version


def _new_key(session: Session, *, keyring: Keyring, kid_prefix: str, now: datetime
             ) -> InterchangeKeyRecord:
    highest = session.scalar(select(InterchangeKeyRecord.seq)
                             .order_by(InterchangeKeyRecord.seq.desc()))
    seq = (highest or 0) + 1
    signer = keyring.generate(f"{kid_prefix}i{seq}")
    row = InterchangeKeyRecord(kid=signer.kid, seq=seq, public_key=signer.public_key,
                               state=KeyState.ACTIVE.value, valid_from=_epoch(now),
                               valid_until=None, created_at=now)
    session.add(row)
    session.flush()
    return row


def create_interchange_key(
    session: Session, *, keyring: Keyring, kid_prefix: str, now: datetime
) -> str | None:
    """The first interchange key (at init, or on an authority that has none yet); None
    if one exists already."""
    if session.scalar(select(InterchangeKeyRecord.kid)) is not None:
        return None
    row = _new_key(session, keyring=keyring, kid_prefix=kid_prefix, now=now)
    _bump_trust_version(session)
    return row.kid


def rotate_interchange_key(
    session: Session, *, keyring: Keyring, kid_prefix: str, actor: Actor, now: datetime
) -> str:
    """A new active interchange key; the old one retires after the overlap. Returns its kid."""
    epoch = _epoch(now)
    for row in session.scalars(for_update(select(InterchangeKeyRecord).where(
            InterchangeKeyRecord.state == KeyState.ACTIVE.value))):
        row.state = KeyState.RETIRED.value
        row.valid_until = epoch + INTERCHANGE_OVERLAP_SECONDS
    new = _new_key(session, keyring=keyring, kid_prefix=kid_prefix, now=now)
    version = _bump_trust_version(session)
    append_audit(session, actor=actor, action="keys.interchange_rotated",
                 subject=f"key:{new.kid}", details={"active": new.kid,
                                                    "trust_version": version}, now=now)
    return new.kid


def interchange_signer(
    session: Session, *, keyring: Keyring, issuer: str, now: datetime
) -> Signer:
    """The key to sign a request with now: the newest of this city's usable interchange
    keys that the held federation list already names (others would not know it yet);
    without a held list, the newest usable one."""
    usable = [key for key in published_interchange_keys(session, now=_epoch(now))
              if key.state in (KeyState.ACTIVE, KeyState.RETIRED)
              and (key.valid_until is None or _epoch(now) < key.valid_until)]
    federation = held_federation(session)
    entry = None if federation is None else federation.issuers_by_code.get(issuer)
    if entry is not None:
        listed = entry.interchange_keys_by_kid
        usable = [key for key in usable if key.kid in listed
                  and listed[key.kid].state is not KeyState.COMPROMISED]
    if not usable:
        raise Unavailable("INTERAUTH_NO_KEY", "no interchange key the federation list names;"
                          " run cardsvc keys rotate-interchange and update the national"
                          " entry")
    return keyring.signer(usable[-1].kid)


def open_interauth_client(
    session: Session, *, keyring: Keyring, issuer: str, http: httpx.Client, now: datetime,
    clock: Callable[[], int] | None = None,
) -> InterauthClient | None:
    """A client for requests to other cities, over the held federation list and this
    city's current interchange key; None without a held list (one city: nothing to ask).
    Open it inside a transaction, use it outside (it holds no session)."""
    federation = held_federation(session)
    if federation is None:
        return None
    signer = interchange_signer(session, keyring=keyring, issuer=issuer, now=now)
    return InterauthClient(http, signer=signer, federation=federation, caller=issuer,
                           clock=clock)
