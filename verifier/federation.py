"""Verifying the national federation list and finding a city's key in it (pure functions).

A verifier pins the national root only. The federation list it signs names every city
issuer with its keys, so one signature chain (national root -> federation list -> city
key -> credential) covers every card in the country. Checks run in this order, each
failure with its own code:

1. split the compact JWS, parse the header: ``alg`` first (ALGORITHM_NOT_ALLOWED), then
   ``crit``, members and ``typ`` (MALFORMED);
2. the header's root JWK must have the pinned RFC 7638 thumbprint (UNKNOWN_KEY);
3. the signature (BAD_SIGNATURE);
4. only now the claims are read (MALFORMED on any bad field);
5. against the list already held: a lower version, or the same version with other
   contents, is a rollback (TRUST_LIST_ROLLBACK);
6. expiry against the injected clock: an expired list is a freeze (TRUST_LIST_STALE).

Finding a credential's key (``resolve_key_by_kid``), before its signature: kids are
unique nationally (the format refuses a list naming one kid twice), so the kid alone
names one key and its city. Then, in order: the city suspended (ISSUER_SUSPENDED) or
removed (ISSUER_REMOVED), the key compromised (KEY_COMPROMISED). A kid on no entry is
UNKNOWN_KEY. All of this is national, signed data: no claim of the credential is read.
After the signature the caller compares the signed ``iss`` with ``entry.code``
(UNKNOWN_KEY on a mismatch).

Example::

    federation = verify_federation_list(jwt, pinned_root_fingerprint=pin, now=now, held=None)
    city, key = resolve_key_by_kid(federation, unverified_kid="h1")
    hangzhou = trust_for(federation, "CN-HZ")   # a TrustListClaims for receipts, status lists
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from keys.ed25519 import jwk_thumbprint, verify_signature
from schemas._jose import b64url_decode, check_header, parse_json_object, split_compact
from schemas.codes import (
    BadSignature,
    IssuerRemoved,
    IssuerSuspended,
    IssuerUnknown,
    KeyCompromised,
    Malformed,
    TrustListRollback,
    TrustListStale,
    UnknownKey,
)
from schemas.federation import FEDERATION_TYP, FederationClaims, IssuerEntry, IssuerState
from schemas.trust_list import IssuerKey, KeyState, TrustListClaims

__all__ = [
    "KidIndex",
    "kid_index",
    "read_federation_list",
    "resolve_issuer",
    "resolve_issuer_key",
    "resolve_key_by_kid",
    "trust_for",
    "verify_federation_list",
]

KidIndex = Mapping[str, tuple[IssuerEntry, IssuerKey]]

_HEADER_MEMBERS = frozenset({"alg", "typ", "jwk", "kid"})


def read_federation_list(unverified_jwt: str, *, pinned_root_fingerprint: str
                         ) -> FederationClaims:
    """Steps 1-4 only (header, pinned root, signature, claims): for re-reading a list a
    sync already accepted (the cache), where rollback and expiry are judged elsewhere."""
    if not pinned_root_fingerprint:
        raise ValueError("a national root fingerprint must be pinned")
    signing_input, header_bytes, payload_bytes, signature = split_compact(unverified_jwt)
    unverified_header = parse_json_object(header_bytes)
    check_header(unverified_header, expected_typ=FEDERATION_TYP,
                 allowed_members=_HEADER_MEMBERS, require_kid=False)
    unverified_jwk = unverified_header.get("jwk")
    if not isinstance(unverified_jwk, dict) or unverified_jwk.get("kty") != "OKP" or \
            unverified_jwk.get("crv") != "Ed25519" or not isinstance(unverified_jwk.get("x"), str):
        raise Malformed("federation list header needs the national root as an OKP Ed25519 jwk")
    if jwk_thumbprint(unverified_jwk) != pinned_root_fingerprint:
        raise UnknownKey("federation list is not signed by the pinned national root")
    if not verify_signature(b64url_decode(unverified_jwk["x"]), signing_input, signature):
        raise BadSignature("federation list signature does not verify")
    return FederationClaims.from_payload(parse_json_object(payload_bytes))


def verify_federation_list(
    unverified_jwt: str,
    *,
    pinned_root_fingerprint: str,
    now: int,
    held: FederationClaims | None,
) -> FederationClaims:
    """The verified federation list, or the exception of the first check that failed."""
    claims = read_federation_list(unverified_jwt,
                                  pinned_root_fingerprint=pinned_root_fingerprint)
    if held is not None:
        if claims.version < held.version:
            raise TrustListRollback(
                f"federation list version {claims.version} < held {held.version}")
        if claims.version == held.version and claims != held:
            # One version names one list: two different lists under one number is a fork.
            raise TrustListRollback(f"a different federation list with version {claims.version}")
    if claims.expires_at <= now:
        raise TrustListStale("federation list has expired")
    return claims


def resolve_issuer(federation: FederationClaims, *, unverified_issuer: str) -> IssuerEntry:
    """The city named by a credential's ``iss``, if the national list lets it issue now."""
    entry = federation.issuers_by_code.get(unverified_issuer)
    if entry is None:
        raise IssuerUnknown("the card's issuer is not on the federation list")
    if entry.state is IssuerState.SUSPENDED:
        raise IssuerSuspended(f"issuer {entry.code} is suspended nationally")
    if entry.state is IssuerState.REMOVED:
        raise IssuerRemoved(f"issuer {entry.code} was removed from the federation")
    return entry


def resolve_issuer_key(
    federation: FederationClaims, *, unverified_issuer: str, unverified_kid: str
) -> tuple[IssuerEntry, IssuerKey]:
    """The city and key that may have signed a credential with this ``iss`` and ``kid``.

    ``kid`` is only a hint inside the city named by ``iss``: a kid that exists in another
    city alone is UNKNOWN_KEY, never that city's key. The caller still checks the key's
    validity window against ``iat`` and the signature, as for a single city.
    """
    entry = resolve_issuer(federation, unverified_issuer=unverified_issuer)
    key = entry.keys_by_kid.get(unverified_kid)
    if key is None:
        raise UnknownKey(f"no key {unverified_kid!r} for issuer {entry.code}")
    if key.state is KeyState.COMPROMISED:
        raise KeyCompromised(f"key {unverified_kid!r} of {entry.code} is compromised")
    return entry, key


def kid_index(federation: FederationClaims) -> KidIndex:
    """Every kid in the list with its city and key (unique nationally, so one per kid).

    Built once per verified list so a check costs one dictionary lookup, however many
    cities there are."""
    return MappingProxyType({key.kid: (entry, key) for entry in federation.issuers
                             for key in entry.keys})


def resolve_key_by_kid(
    federation: FederationClaims, *, unverified_kid: str, index: KidIndex | None = None
) -> tuple[IssuerEntry, IssuerKey]:
    """The city and key a credential's ``kid`` names, if the national list lets it sign.

    In order: a kid no city has (UNKNOWN_KEY), its city suspended (ISSUER_SUSPENDED) or
    removed (ISSUER_REMOVED), the key compromised (KEY_COMPROMISED). ``index`` is
    ``kid_index(federation)`` when the caller keeps one. The caller then checks the
    signature and compares the signed ``iss`` with ``entry.code``."""
    found = (index if index is not None else kid_index(federation)).get(unverified_kid)
    if found is None:
        raise UnknownKey(f"no city on the federation list has key {unverified_kid!r}")
    entry, key = found
    if entry.state is IssuerState.SUSPENDED:
        raise IssuerSuspended(f"issuer {entry.code} is suspended nationally")
    if entry.state is IssuerState.REMOVED:
        raise IssuerRemoved(f"issuer {entry.code} was removed from the federation")
    if key.state is KeyState.COMPROMISED:
        raise KeyCompromised(f"key {unverified_kid!r} of {entry.code} is compromised")
    return entry, key


def trust_for(federation: FederationClaims, issuer_code: str) -> TrustListClaims:
    """City ``issuer_code``'s keys as a trust list (for its status lists and receipts),
    if the national list lets it sign now (ISSUER_UNKNOWN, _SUSPENDED, _REMOVED)."""
    return resolve_issuer(federation, unverified_issuer=issuer_code).as_trust_list(federation)
