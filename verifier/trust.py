"""The trusted set: a pinned root, the verified trust list, and verified status lists.

Like python-tuf's trusted metadata set, updates go through this object only; each is
verified against what is already trusted and refused on rollback or freeze.

Example::

    trusted = TrustedSet(root_fingerprint="kPrK_qmx...")
    trusted.update_trust_list(trust_list_jwt, now=now)
    trusted.update_status_list(status_list_jwt, now=now)
    trusted.update_timestamp(timestamp_jwt, now=now)   # when the authority publishes one
    state = trusted.snapshot()          # immutable input to verify_presentation
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from keys.ed25519 import jwk_thumbprint, verify_signature
from schemas._jose import b64url_decode, check_header, parse_json_object, split_compact
from schemas.codes import (
    BadSignature,
    KeyCompromised,
    Malformed,
    StatusUnavailable,
    TrustListRollback,
    TrustListStale,
    UnknownKey,
)
from schemas.federation import FederationClaims, IssuerEntry
from schemas.status_list import STATUS_LIST_TYP, StatusListClaims
from schemas.timestamp import TimestampClaims
from schemas.trust_list import TRUST_LIST_TYP, IssuerKey, KeyState, TrustListClaims
from verifier.federation import KidIndex, kid_index
from verifier.timestamp import verify_timestamp

__all__ = [
    "TrustedSet",
    "VerifierState",
    "national_trust_list",
    "verify_issuer_signed",
    "verify_status_list",
    "verify_trust_list",
]

_TRUST_HEADER = frozenset({"alg", "typ", "jwk", "kid"})
_ISSUER_SIGNED_HEADER = frozenset({"alg", "typ", "kid"})
_STATUS_SIGNERS = (KeyState.ACTIVE, KeyState.NEXT)


@dataclass(frozen=True)
class VerifierState:
    """Everything the offline check needs besides the presentation: already verified."""

    trust_list: TrustListClaims
    status_lists: Mapping[str, StatusListClaims] = field(default_factory=dict)
    keys_by_kid: Mapping[str, IssuerKey] = field(default_factory=dict)
    # The signed timestamp held (P8.5) and the digest of the trust list as served; None
    # for an authority that publishes no timestamp.
    timestamp: TimestampClaims | None = None
    trust_list_sha256: str | None = None
    # Pinned to the national root (P10): the verified federation list, its kids, and the
    # status lists of every city keyed (city code, list id), since list ids repeat across
    # cities. ``trust_list`` then only carries the federation list's version and dates.
    federation: FederationClaims | None = None
    kid_index: KidIndex | None = None
    city_status_lists: Mapping[tuple[str, str], StatusListClaims] = field(
        default_factory=dict)

    @staticmethod
    def of_federation(
        federation: FederationClaims,
        city_status_lists: Mapping[tuple[str, str], StatusListClaims],
    ) -> VerifierState:
        """The state of a verifier pinned to the national root: any listed city's cards."""
        return VerifierState(
            national_trust_list(federation),
            MappingProxyType({}),
            MappingProxyType({}),  # no single-city keys: a national state finds keys by kid
            None,
            None,
            federation,
            kid_index(federation),
            MappingProxyType(dict(city_status_lists)),
        )

    def issuer_entry(self, code: str) -> IssuerEntry | None:
        """The federation entry of city ``code`` (None when single-city or not listed)."""
        if self.federation is None:
            return None
        return self.federation.issuers_by_code.get(code)

    @staticmethod
    def of(
        trust_list: TrustListClaims,
        status_lists: Mapping[str, StatusListClaims],
        *,
        timestamp: TimestampClaims | None = None,
        trust_list_sha256: str | None = None,
    ) -> VerifierState:
        return VerifierState(
            trust_list,
            MappingProxyType(dict(status_lists)),
            MappingProxyType(trust_list.keys_by_kid),
            timestamp,
            trust_list_sha256,
        )


def national_trust_list(federation: FederationClaims) -> TrustListClaims:
    """The federation list's version and dates as a trust list without keys: what the
    freshness step and the displays read. It holds no key, so no single-city lookup can
    find one in it (keys come from the federation entry of their city)."""
    return TrustListClaims(federation.issuer, federation.version, federation.issued_at,
                           federation.expires_at, ())


def verify_trust_list(unverified_jwt: str, *, root_fingerprint: str) -> TrustListClaims:
    """Steps: split -> header (alg first) -> pinned root key -> signature -> claims."""
    signing_input, header_bytes, payload_bytes, signature = split_compact(unverified_jwt)
    unverified_header = parse_json_object(header_bytes)
    alg = check_header(
        unverified_header, expected_typ=TRUST_LIST_TYP, allowed_members=_TRUST_HEADER,
        require_kid=False,
    )
    unverified_jwk = unverified_header.get("jwk")
    if not isinstance(unverified_jwk, dict) or not all(
        isinstance(unverified_jwk.get(m), str) for m in ("kty", "crv", "x")
    ):
        raise Malformed("trust list header needs the root jwk")
    if unverified_jwk["kty"] != "OKP" or unverified_jwk["crv"] != "Ed25519":
        raise Malformed("root key must be OKP Ed25519")
    if jwk_thumbprint(unverified_jwk) != root_fingerprint:
        raise UnknownKey("trust list is not signed by the pinned root")
    root_key = b64url_decode(unverified_jwk["x"])
    if not verify_signature(root_key, signing_input, signature):
        raise BadSignature("trust list signature does not verify")
    claims = TrustListClaims.from_payload(parse_json_object(payload_bytes))
    claims.require_current_algorithm(alg, claims.issued_at)
    return claims


def verify_issuer_signed(
    unverified_jwt: str,
    *,
    trust_list: TrustListClaims,
    typ: str,
    signer_states: tuple[KeyState, ...],
    what: str,
) -> tuple[IssuerKey, dict[str, Any]]:
    """An issuer-signed JWT (status list, receipt): split -> header (alg first) -> issuer
    key by kid -> its state -> signature -> payload parsed -> ``EdDSA`` refused after the
    issuer's cut-over. Returns the key and the now-signed payload object."""
    signing_input, header_bytes, payload_bytes, signature = split_compact(unverified_jwt)
    unverified_header = parse_json_object(header_bytes)
    alg = check_header(
        unverified_header, expected_typ=typ, allowed_members=_ISSUER_SIGNED_HEADER,
        require_kid=True,
    )
    key = trust_list.keys_by_kid.get(unverified_header["kid"])
    if key is None:
        raise UnknownKey(f"{what} signed by a key not in the trust list")
    if key.state is KeyState.COMPROMISED:
        raise KeyCompromised(f"{what} signed by a compromised key")
    if key.state not in signer_states:
        raise UnknownKey(f"{what} signed by a key that may not sign it")
    if not verify_signature(key.public_key, signing_input, signature):
        raise BadSignature(f"{what} signature does not verify")
    payload = parse_json_object(payload_bytes)
    # Every issuer-signed object carries iat; its type's parser checks it is an integer.
    unverified_iat = payload.get("iat")
    if type(unverified_iat) is int:
        trust_list.require_current_algorithm(alg, unverified_iat)
    return key, payload


def verify_status_list(unverified_jwt: str, *, trust_list: TrustListClaims) -> StatusListClaims:
    """Steps: split -> header (alg first) -> issuer key by kid -> signature -> claims."""
    _, payload = verify_issuer_signed(
        unverified_jwt, trust_list=trust_list, typ=STATUS_LIST_TYP,
        signer_states=_STATUS_SIGNERS, what="status list",
    )
    return StatusListClaims.from_payload(payload)


class TrustedSet:
    """Holds the pinned root and refuses rollback (lower version) and freeze (expired)."""

    def __init__(self, *, root_fingerprint: str) -> None:
        if not root_fingerprint:
            raise ValueError("a root fingerprint must be pinned")
        self.root_fingerprint = root_fingerprint
        self.trust_list: TrustListClaims | None = None
        self.status_lists: dict[str, StatusListClaims] = {}
        self.timestamp: TimestampClaims | None = None

    def update_trust_list(self, unverified_jwt: str, *, now: int) -> TrustListClaims:
        claims = verify_trust_list(unverified_jwt, root_fingerprint=self.root_fingerprint)
        if self.trust_list is not None and claims.version < self.trust_list.version:
            raise TrustListRollback(
                f"trust list version {claims.version} < cached {self.trust_list.version}"
            )
        if claims.expires_at <= now:
            raise TrustListStale("trust list has expired")
        if self.trust_list is not None and {
            (key.kid, key.public_key) for key in self.trust_list.timestamp_keys
        } - {(key.kid, key.public_key) for key in claims.timestamp_keys}:
            # A timestamp key was taken back by the root (maybe stolen): what it signed
            # no longer bounds rollback, or a thief's fast-forwarded ver would lock us out.
            self.timestamp = None
        self.trust_list = claims
        return claims

    def update_status_list(self, unverified_jwt: str, *, now: int) -> StatusListClaims:
        if self.trust_list is None:
            raise StatusUnavailable("load a trust list before status lists")
        claims = verify_status_list(unverified_jwt, trust_list=self.trust_list)
        cached = self.status_lists.get(claims.list_id)
        if cached is not None and claims.issued_at < cached.issued_at:
            raise StatusUnavailable("status list older than the cached one")
        if claims.expires_at <= now:
            raise StatusUnavailable("status list has expired")
        self.status_lists[claims.list_id] = claims
        return claims

    def update_timestamp(self, unverified_jwt: str, *, now: int) -> TimestampClaims:
        """Verified against the trust list loaded (it delegates the key) and the held one."""
        if self.trust_list is None:
            raise TrustListStale("load a trust list before the timestamp")
        claims = verify_timestamp(unverified_jwt, trust_list=self.trust_list,
                                  held=self.timestamp, now=now)
        self.timestamp = claims
        return claims

    def snapshot(self) -> VerifierState:
        if self.trust_list is None:
            raise TrustListStale("no trust list loaded")
        return VerifierState.of(self.trust_list, self.status_lists, timestamp=self.timestamp)
