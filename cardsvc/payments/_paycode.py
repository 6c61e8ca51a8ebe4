"""The authority checks a pay code with the verifier library against its own live state.

The trust list is built from the issuer keys in the database (a compromised key counts
at once). The status comes from the card's status entry, read after the card's balance
row is locked: the first pass lets every status through, because the list and index
are known only once the issuer signature has passed; when the entry is not valid the
code is checked again with that status. The answer is therefore exactly the one an
offline verifier with a perfectly fresh list would give (same checks, same order).

Replay is not checked here (``replay_cache=None``): the payments table charges each
pay code once, with a unique key written in the same transaction as the debit.

Example::

    trust = authority_trust(session, issuer=settings.issuer, now=now)
    first = verify_any_status(text, trust=trust, now=now)
    result = verify_live_status(session, text, trust=trust, first=first, now=now)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.models import IssuerKeyRecord, StatusEntry, TrustState
from cardsvc.services.trust import alg_cutover
from schemas import (
    STATUS_VALID,
    IssuerKey,
    KeyState,
    StatusList,
    StatusListClaims,
    TrustListClaims,
)
from schemas.challenge import Challenge
from schemas.presentation import decode_presentation
from verifier import POLICIES, VerificationResult, VerifierState, replay_key, verify_presentation

__all__ = [
    "PAYMENT_POLICY",
    "AuthorityTrustCache",
    "active_kid",
    "authority_trust",
    "pay_code_replay_key",
    "trust_version_now",
    "verify_any_status",
    "verify_live_status",
    "verify_with_status",
]

PAYMENT_POLICY = POLICIES["payment"]
_LIFETIME = 86_400
_TRUST_ROW = 1
_REBUILD_AFTER = 3_600  # the in-memory trust list's own window (iat/exp) moves on hourly


class _EveryIndexValid(StatusList):
    """A status list in which every index reads as valid (the first pass)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(bytearray(), 2)

    def get(self, index: int) -> int:
        if index < 0:
            raise IndexError(index)
        return STATUS_VALID


class _EveryListValid(Mapping[str, StatusListClaims]):
    def __init__(self, now: int) -> None:
        self._now = now

    def __getitem__(self, list_id: str) -> StatusListClaims:
        return StatusListClaims(list_id, "", self._now - 1, self._now + _LIFETIME, _LIFETIME,
                                _EveryIndexValid())

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def authority_trust(session: Session, *, issuer: str, now: int) -> TrustListClaims:
    """The issuer keys as they stand in the database, as a trust list valid around ``now``."""
    rows = session.execute(select(IssuerKeyRecord.kid, IssuerKeyRecord.public_key,
                                  IssuerKeyRecord.state, IssuerKeyRecord.valid_from,
                                  IssuerKeyRecord.valid_until).order_by(IssuerKeyRecord.seq))
    keys = tuple(IssuerKey(kid, public_key, KeyState(state), valid_from, valid_until)
                 for kid, public_key, state, valid_from, valid_until in rows)
    return TrustListClaims(issuer, 0, now - 1, now + _LIFETIME, keys,
                           alg_cutover=alg_cutover(session))


def trust_version_now(session: Session) -> int | None:
    """The trust state's version: it moves on with every key or cut-over change."""
    return session.scalar(select(TrustState.version).where(TrustState.id == _TRUST_ROW))


@dataclass(frozen=True, slots=True)
class _HeldTrust:
    version: int | None
    built_at: int
    claims: TrustListClaims


class AuthorityTrustCache:
    """The authority's trust list held in memory between charges (one per app).

    Rebuilt from the database only when the trust state's version moved (a rotation, a
    compromise, a cut-over: every such change bumps it in the same transaction) or its
    own validity window has moved on. The caller reads the version in a statement it
    makes anyway, after the card's row lock, and calls :meth:`get` again with it: a key
    compromised by another process counts from the next charge, exactly as before."""

    def __init__(self) -> None:
        self._held: _HeldTrust | None = None
        self._lock = threading.Lock()

    def get(self, session: Session, *, issuer: str, now: int,
            version: int | None = None) -> tuple[TrustListClaims, int | None]:
        """(the trust list, the version it was built at). ``version``: the version the
        caller just read (None: trust what is held unless its window moved on)."""
        held = self._held
        if (held is not None and (version is None or held.version == version)
                and 0 <= now - held.built_at < _REBUILD_AFTER):
            return held.claims, held.version
        current = trust_version_now(session)
        claims = authority_trust(session, issuer=issuer, now=now)
        with self._lock:
            self._held = _HeldTrust(current, now, claims)
        return claims, current

    def held(self, *, now: int) -> tuple[TrustListClaims, int] | None:
        """What is held, without the database: None when nothing is, its window moved
        on, or it was built at no version (the charge made on the event loop, which
        compares the version in its own statements, then leaves it to :meth:`get`)."""
        held = self._held
        if held is None or held.version is None or not 0 <= now - held.built_at < _REBUILD_AFTER:
            return None
        return held.claims, held.version


def active_kid(trust: TrustListClaims) -> str | None:
    """The key that signs now (what receipts are signed with)."""
    return next((key.kid for key in trust.keys if key.state is KeyState.ACTIVE), None)


def verify_any_status(
    unverified_pay_code: str, *, trust: TrustListClaims, now: int,
    challenge: Challenge | None = None,
) -> VerificationResult:
    state = VerifierState(trust, _EveryListValid(now), MappingProxyType(trust.keys_by_kid))
    return verify_presentation(unverified_pay_code, state=state, policy=PAYMENT_POLICY,
                               now=now, replay_cache=None, challenge=challenge)


def verify_live_status(
    session: Session, unverified_pay_code: str, *, trust: TrustListClaims,
    first: VerificationResult, now: int, challenge: Challenge | None = None,
) -> VerificationResult:
    """``first`` again, with the card's status entry as it is now in the database."""
    credential = first.credential
    if credential is None:
        return first
    ref = credential.status
    status = session.scalar(select(StatusEntry.status).where(
        StatusEntry.list_id == ref.list_id, StatusEntry.idx == ref.index))
    return verify_with_status(unverified_pay_code, trust=trust, first=first, status=status,
                              now=now, challenge=challenge)


def verify_with_status(
    unverified_pay_code: str, *, trust: TrustListClaims, first: VerificationResult,
    status: int | None, now: int, challenge: Challenge | None = None,
) -> VerificationResult:
    """``first`` again with the card's entry ``status`` as read (None: no such entry)."""
    credential = first.credential
    if credential is None:
        return first
    ref = credential.status
    if status == STATUS_VALID:
        return first
    statuses = StatusList.empty(0)  # an index unknown here reads as STATUS_UNAVAILABLE
    if status is not None:
        statuses = StatusList.empty(ref.index + 1)
        statuses.set(ref.index, status)
    lists = {ref.list_id: StatusListClaims(ref.list_id, "", now - 1, now + _LIFETIME,
                                           _LIFETIME, statuses)}
    return verify_presentation(unverified_pay_code, state=VerifierState.of(trust, lists),
                               policy=PAYMENT_POLICY, now=now, replay_cache=None,
                               challenge=challenge)


def pay_code_replay_key(verified_pay_code: str) -> bytes:
    """The replay key of a pay code that has passed verification."""
    parts = decode_presentation(verified_pay_code)
    return replay_key(parts.signature, parts.proof_time)
