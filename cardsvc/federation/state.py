"""The federation list an authority holds: one row, replaced only by a list that passes
``verifier.federation.verify_federation_list`` against the pinned national root with
``held=`` the stored one (so rollback, fork, another root, a stale or garbled list are
refused and change nothing).

Example::

    claims = accept_federation_list(session, unverified_jwt=jwt, pinned_root=settings.
                                    federation_root, now=now)
    held_federation(session)                  # the same claims, in any later transaction
    own_entry(session, settings=settings)     # this city's entry (its keys, blocks, state)

The held list is returned as held, also once expired: its expiry matters to whoever
checks a credential with it (they pass their own ``now``), not to what the authority
owns (its sequence blocks only ever grow).
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cardsvc.models import CodeSequence, FederationState
from cardsvc.services import _published
from cardsvc.services._locking import for_update
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.errors import Conflict, Invalid, Unavailable
from cardsvc.services.trust import issuer_keys
from cardsvc.settings import Settings
from keys import published_keys
from schemas.codes import FmcError
from schemas.federation import FederationClaims, IssuerEntry, SequenceBlock
from verifier.federation import verify_federation_list

__all__ = [
    "accept_federation_list",
    "federation_held",
    "held_federation",
    "held_federation_jwt",
    "highest_sequence",
    "own_entry",
    "own_sequence_blocks",
    "unpublished_key_changes",
]

_ROW = 1
# Parsing a 50-city list costs about a millisecond; a held list is read on every
# allocation and cross-city check, so the verified claims are kept per (root, token).
_parsed: dict[tuple[str, str], FederationClaims] = {}
_parsed_lock = threading.Lock()


def held_federation_jwt(session: Session) -> str | None:
    """The signed federation list as accepted (served at ``GET /v1/federation-list``)."""
    return session.scalar(select(FederationState.signed_jwt).where(FederationState.id == _ROW))


_HELD = select(FederationState.id).where(FederationState.id == _ROW)


def federation_held(session: Session) -> bool:
    """Whether a federation list was ever accepted (one indexed read, nothing parsed)."""
    return session.connection().execute(_HELD).first() is not None


def held_federation(session: Session) -> FederationClaims | None:
    """The held federation list's claims, or None when none was ever accepted."""
    row = session.get(FederationState, _ROW)
    if row is None:
        return None
    return _claims(row.signed_jwt, row.root_fingerprint)


def own_entry(session: Session, *, settings: Settings) -> IssuerEntry | None:
    """This city's entry (by ``settings.issuer``) in the held list; None without a held
    list or when the city is not (yet) listed."""
    federation = held_federation(session)
    if federation is None:
        return None
    return federation.issuers_by_code.get(settings.issuer)


def unpublished_key_changes(session: Session, *, issuer: str, now: int) -> tuple[str, ...]:
    """This city's key changes the held national list does not show yet: kids missing
    from its entry, or listed in another state (e.g. after ``cardsvc keys rotate`` or
    ``compromise``, before the national ``update-issuer`` and ``publish``). Until they
    are published, verifiers elsewhere refuse what the new key signs."""
    federation = held_federation(session)
    entry = None if federation is None else federation.issuers_by_code.get(issuer)
    if entry is None:
        return ()
    listed = {key.kid: key.state for key in entry.keys}
    return tuple(f"{key.kid} {key.state.value}" + (
        "" if key.kid not in listed else f" (listed {listed[key.kid].value})")
        for key in published_keys(issuer_keys(session), now=now)
        if listed.get(key.kid) is not key.state)


def own_sequence_blocks(session: Session, *, issuer: str) -> tuple[SequenceBlock, ...] | None:
    """The foreigner-code sequence blocks this city may allocate from: None without a held
    federation list (then 1..999, one city as before); ``()`` if the held list does not
    name the city (then it may allocate nothing)."""
    federation = held_federation(session)
    if federation is None:
        return None
    entry = federation.issuers_by_code.get(issuer)
    return () if entry is None else entry.sequence_blocks


def highest_sequence(session: Session) -> int:
    """The highest foreigner-code sequence number this authority ever allocated (0: none)."""
    return int(session.scalar(select(func.max(CodeSequence.last_value))) or 0)


def accept_federation_list(
    session: Session, *, unverified_jwt: str, pinned_root: str, now: int
) -> FederationClaims:
    """Verify a fetched list against the pinned root and the held one; store it if newer.

    Refusals raise :class:`~cardsvc.services.errors.Invalid` with the verifier's code
    (UNKNOWN_KEY, BAD_SIGNATURE, MALFORMED, TRUST_LIST_ROLLBACK, TRUST_LIST_STALE, ...)
    and change nothing; a held list under another root is FEDERATION_ROOT_MISMATCH.
    The identical list again is accepted (only ``accepted_at`` moves). A new version is
    audited (``federation.list_accepted``): it may change what the city may allocate.
    """
    if not pinned_root:
        raise ValueError("a national root fingerprint must be pinned")
    row = _lock_row(session)
    held = None
    if row is not None:
        if row.root_fingerprint != pinned_root:
            raise Conflict("FEDERATION_ROOT_MISMATCH",
                           "the held federation list is under another national root")
        held = _claims(row.signed_jwt, row.root_fingerprint)
    try:
        claims = verify_federation_list(unverified_jwt, pinned_root_fingerprint=pinned_root,
                                        now=now, held=held)
    except FmcError as error:
        raise Invalid(error.code.value, f"federation list refused: {error.detail}") from None
    if row is None:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        session.execute(insert(FederationState).values(
            id=_ROW, root_fingerprint=pinned_root, version=claims.version,
            issued_at=claims.issued_at, expires_at=claims.expires_at,
            signed_jwt=unverified_jwt, accepted_at=now).on_conflict_do_nothing())
        row = _lock_row(session)
        assert row is not None
        if row.signed_jwt != unverified_jwt:  # another process stored one meanwhile
            return accept_federation_list(session, unverified_jwt=unverified_jwt,
                                          pinned_root=pinned_root, now=now)
        _audit(session, claims, unverified_jwt, held=None, now=now)
        _published.changed(session)  # the publisher serves it from memory
    elif claims.version > row.version:
        row.version, row.signed_jwt = claims.version, unverified_jwt
        row.issued_at, row.expires_at = claims.issued_at, claims.expires_at
        _audit(session, claims, unverified_jwt, held=held, now=now)
        _published.changed(session)
    row.accepted_at = now
    session.flush()
    with _parsed_lock:
        _parsed[(pinned_root, unverified_jwt)] = claims
    return claims


def _audit(session: Session, claims: FederationClaims, jwt: str, *,
           held: FederationClaims | None, now: int) -> None:
    append_audit(session, actor=Actor("federation"), action="federation.list_accepted",
                 subject=f"federation:{claims.version}",
                 details={"version": claims.version,
                          "previous": None if held is None else held.version,
                          "expires_at": claims.expires_at, "cities": len(claims.issuers),
                          "sha256": hashlib.sha256(jwt.encode("ascii", "replace")).hexdigest()},
                 now=datetime.fromtimestamp(now, UTC))


def _lock_row(session: Session) -> FederationState | None:
    return session.execute(
        for_update(select(FederationState).where(FederationState.id == _ROW))
    ).scalar_one_or_none()


def _claims(signed_jwt: str, root_fingerprint: str) -> FederationClaims:
    key = (root_fingerprint, signed_jwt)
    with _parsed_lock:
        found = _parsed.get(key)
    if found is not None:
        return found
    # Verified again, as anything read from the database: a row edited behind our back
    # fails here rather than handing out keys or sequence blocks nobody signed. The expiry
    # is the caller's concern (see the module docstring), hence ``now=0``.
    try:
        claims = verify_federation_list(signed_jwt, pinned_root_fingerprint=root_fingerprint,
                                        now=0, held=None)
    except FmcError as error:
        raise Unavailable("FEDERATION_STATE_INVALID", "the stored federation list no longer"
                          f" verifies ({error.code.value}); sync it again") from None
    with _parsed_lock:
        if len(_parsed) >= 8:
            _parsed.clear()
        _parsed[key] = claims
    return claims
