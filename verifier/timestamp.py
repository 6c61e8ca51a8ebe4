"""The signed timestamp, checked (P8.5; TUF's timestamp role, ``update_timestamp``).

Pure functions of explicit inputs: the timestamp JWT, the verified trust list that
delegates the timestamp keys, the timestamp already held, and ``now``.

:func:`verify_timestamp` runs, in this order, the first failure deciding the code:

 1. split and header   ``alg`` allow-list first, typ, kid          ALGORITHM_NOT_ALLOWED,
                                                                     MALFORMED
 2. key                ``kid`` must name a ``ts_keys`` entry of the  UNKNOWN_KEY
                       trust list (an issuer key never signs one)
 3. signature          Ed25519                                       BAD_SIGNATURE
 4. claims             parsed only now; ``iss`` is the trust list's  MALFORMED, UNKNOWN_KEY
 5. rollback           ``ver`` (and the trust-list version it names) TIMESTAMP_ROLLBACK
                       never below the held one; the same ``ver``
                       must be the same timestamp
 6. expiry             ``exp`` after ``now``                         TIMESTAMP_STALE

:func:`require_named_lists` then compares what a sync fetched with what the timestamp
names (TRUST_LIST_OUTDATED, STATUS_UNAVAILABLE), and :func:`require_current_timestamp`
is the check-time step (TRUST_LIST_OUTDATED, TIMESTAMP_STALE after the grace).

Example::

    held = verify_timestamp(unverified_jwt, trust_list=trust_list, held=held, now=now)
    require_named_lists(held, trust_list=trust_list,
                        trust_list_sha256=list_digest(trust_list_jwt), status_lists={})
"""

from __future__ import annotations

from collections.abc import Mapping

from keys.ed25519 import verify_signature
from schemas._jose import check_header, parse_json_object, split_compact
from schemas.codes import (
    BadSignature,
    StatusUnavailable,
    TimestampRollback,
    TimestampStale,
    TrustListOutdated,
    UnknownKey,
)
from schemas.status_list import StatusListClaims
from schemas.timestamp import TIMESTAMP_TYP, TimestampClaims
from schemas.trust_list import TrustListClaims

__all__ = [
    "read_timestamp",
    "require_current_timestamp",
    "require_named_lists",
    "verify_timestamp",
]

_TIMESTAMP_HEADER = frozenset({"alg", "typ", "kid"})


def verify_timestamp(
    unverified_jwt: str,
    *,
    trust_list: TrustListClaims,
    held: TimestampClaims | None,
    now: int,
) -> TimestampClaims:
    """Verify a timestamp against the trust list that delegates its key and the one held."""
    claims = read_timestamp(unverified_jwt, trust_list=trust_list)
    if held is not None:
        if claims.version < held.version:
            raise TimestampRollback(f"timestamp ver {claims.version} < held {held.version}")
        if claims.version == held.version and claims != held:
            raise TimestampRollback("another timestamp with the held ver")
        if claims.trust_list.serial < held.trust_list.serial:
            raise TimestampRollback("timestamp names an older trust list than the held one")
    if claims.expires_at <= now:
        raise TimestampStale("timestamp has expired")
    return claims


def read_timestamp(unverified_jwt: str, *, trust_list: TrustListClaims) -> TimestampClaims:
    """Steps 1-4 only: for a cache re-reading the timestamp it stored (rollback is its
    floor's business, expiry the check's)."""
    signing_input, header_bytes, payload_bytes, signature = split_compact(unverified_jwt)
    unverified_header = parse_json_object(header_bytes)
    alg = check_header(unverified_header, expected_typ=TIMESTAMP_TYP,
                 allowed_members=_TIMESTAMP_HEADER, require_kid=True)
    key = trust_list.timestamp_keys_by_kid.get(unverified_header["kid"])
    if key is None:
        raise UnknownKey("timestamp signed by a key the trust list does not delegate")
    if not verify_signature(key.public_key, signing_input, signature):
        raise BadSignature("timestamp signature does not verify")
    claims = TimestampClaims.from_payload(parse_json_object(payload_bytes))
    if claims.issuer != trust_list.issuer:
        raise UnknownKey("timestamp issuer is not the trust list's issuer")
    trust_list.require_current_algorithm(alg, claims.issued_at)
    return claims


def require_named_lists(
    timestamp: TimestampClaims,
    *,
    trust_list: TrustListClaims,
    trust_list_sha256: str,
    status_lists: Mapping[str, tuple[StatusListClaims, str]],
) -> None:
    """The lists fetched are at least the ones the timestamp names (list id -> (claims,
    digest)). A newer list than named is fine: the authority signed it after the timestamp."""
    named = timestamp.trust_list
    if named.serial > trust_list.version or (
        named.serial == trust_list.version and named.sha256 != trust_list_sha256
    ):
        raise TrustListOutdated(
            f"the timestamp names trust list v{named.serial}; v{trust_list.version} was served"
        )
    for list_id, (claims, digest) in status_lists.items():
        ref = timestamp.status_lists.get(list_id)
        if ref is not None and (ref.serial > claims.issued_at or (
                ref.serial == claims.issued_at and ref.sha256 != digest)):
            raise StatusUnavailable(f"status list {list_id} is older than the timestamp names")


def require_current_timestamp(
    timestamp: TimestampClaims | None,
    *,
    trust_list: TrustListClaims,
    trust_list_sha256: str | None,
    grace: int,
    now: int,
) -> None:
    """The check-time step: the held trust list is the one the held timestamp names, and
    the timestamp expired at most ``grace`` ago. None (an authority without timestamps)
    passes: the trust list's own ``exp`` is then the only bound."""
    if timestamp is None:
        return
    named = timestamp.trust_list
    if named.serial > trust_list.version or (
        named.serial == trust_list.version and trust_list_sha256 is not None
        and named.sha256 != trust_list_sha256
    ):
        raise TrustListOutdated("a newer trust list exists; sync the verifier")
    if timestamp.expires_at + grace <= now:
        raise TimestampStale("the signed timestamp is too old; sync the verifier")
