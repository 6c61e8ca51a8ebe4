"""Trust lists: the root-signed list of issuer keys a verifier may trust (docs/DESIGN.md section 6).

Header: ``{"alg": "EdDSA", "typ": "fmc-trust+jwt", "jwk": <root public JWK>}``.
Payload: ``{"iss", "ver", "iat", "exp", "keys": [issuer key JWK + window + state]}`` and,
from P8.5 on, ``"ts_keys": [timestamp key JWK]``: the online keys the root delegates the
timestamp role to (schemas.timestamp). The two lists are apart on purpose: a timestamp key
is never looked up for a credential or a status list, an issuer key never for a timestamp.
A list without ``ts_keys`` (an older authority) has none.

From P14 on, two more members say what a verifier must understand (docs/FORMATS.md,
"Rolling out a format change"): ``fmt``, the format version the issuer's objects need
(absent = 1; a verifier meeting a higher one than :data:`FORMAT_VERSION` refuses the list
with UNSUPPORTED_VERSION and keeps what it holds), and ``alg_cutover``, the time from which
the issuer signs with RFC 9864's ``Ed25519``: an object it issued at or after that time
which says ``EdDSA`` is a downgrade (ALGORITHM_DOWNGRADE).

From P10 on, ``ik`` lists the city's **interchange keys** (same JWK + state + window form
as ``keys``): they sign requests between authorities (``fmc-interauth+jwt``) and nothing
else. A credential or status list is never looked up among them, nor a request among
``keys``. A list without ``ik`` has none; verifiers before P10 ignore the member.

Example::

    claims = TrustListClaims.from_payload(payload)
    key = claims.keys_by_kid["k1"]
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from schemas._jose import ALG_ED25519, ALG_EDDSA, b64url_decode, b64url_encode
from schemas.codes import AlgorithmDowngrade, Malformed, UnsupportedVersion

__all__ = [
    "FORMAT_VERSION",
    "MAX_INTERCHANGE_KEYS",
    "TRUST_LIST_TYP",
    "IssuerKey",
    "KeyState",
    "TimestampKey",
    "TrustListClaims",
    "parse_interchange_keys",
]

TRUST_LIST_TYP = "fmc-trust+jwt"
# The highest format version this code understands. 1: the first format ("EdDSA", QR
# forms 0x01-0x02); 2: RFC 9864 "Ed25519" and the QR form 0x03 that implies it.
FORMAT_VERSION = 2


class KeyState(StrEnum):
    NEXT = "next"  # published ahead of use so offline verifiers already know it
    ACTIVE = "active"  # signs new credentials and status lists
    RETIRED = "retired"  # signs nothing new; its credentials verify until they expire
    COMPROMISED = "compromised"  # nothing it signed is accepted


@dataclass(frozen=True, slots=True)
class IssuerKey:
    """An issuer key with the window in which it may have signed (``iat`` in [from, until))."""

    kid: str
    public_key: bytes
    state: KeyState
    valid_from: int
    valid_until: int | None = None

    def to_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url_encode(self.public_key),
            "kid": self.kid,
            "use": "sig",
            "state": self.state.value,
            "valid_from": self.valid_from,
        }
        if self.valid_until is not None:
            jwk["valid_until"] = self.valid_until
        return jwk

    @staticmethod
    def from_jwk(jwk: Any) -> IssuerKey:
        if not isinstance(jwk, dict):
            raise Malformed("issuer key must be a JWK object")
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise Malformed("issuer keys must be OKP Ed25519")
        kid, x, valid_from = jwk.get("kid"), jwk.get("x"), jwk.get("valid_from")
        valid_until = jwk.get("valid_until")
        if not isinstance(kid, str) or not kid or not isinstance(x, str):
            raise Malformed("issuer key needs kid and x")
        if type(valid_from) is not int or not (valid_until is None or type(valid_until) is int):
            raise Malformed("issuer key window must be integer times")
        public_key = b64url_decode(x)
        if len(public_key) != 32:
            raise Malformed("Ed25519 public keys are 32 bytes")
        try:
            state = KeyState(str(jwk.get("state")))
        except ValueError as exc:
            raise Malformed("unknown key state") from exc
        return IssuerKey(kid, public_key, state, valid_from, valid_until)


@dataclass(frozen=True, slots=True)
class TimestampKey:
    """An online key the root delegated the timestamp role to (``"use": "ts"``)."""

    kid: str
    public_key: bytes

    def to_jwk(self) -> dict[str, Any]:
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(self.public_key),
                "kid": self.kid, "use": "ts"}

    @staticmethod
    def from_jwk(jwk: Any) -> TimestampKey:
        if not isinstance(jwk, dict):
            raise Malformed("timestamp key must be a JWK object")
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or jwk.get("use") != "ts":
            raise Malformed("timestamp keys must be OKP Ed25519 with use ts")
        kid, x = jwk.get("kid"), jwk.get("x")
        if not isinstance(kid, str) or not 1 <= len(kid) <= 64 or not isinstance(x, str):
            raise Malformed("timestamp key needs kid and x")
        public_key = b64url_decode(x)
        if len(public_key) != 32:
            raise Malformed("Ed25519 public keys are 32 bytes")
        return TimestampKey(kid, public_key)


@dataclass(frozen=True, slots=True)
class TrustListClaims:
    issuer: str
    version: int
    issued_at: int
    expires_at: int
    keys: tuple[IssuerKey, ...]
    timestamp_keys: tuple[TimestampKey, ...] = ()
    alg_cutover: int | None = None  # from then on everything this issuer signs is Ed25519
    format_version: int = 1
    interchange_keys: tuple[IssuerKey, ...] = ()  # sign requests between authorities only

    def require_current_algorithm(self, alg: str, issued_at: int) -> None:
        """Refuse the deprecated ``EdDSA`` on an object issued at or after the cut-over.

        Called only after the object's signature passed (``issued_at`` is a signed claim).
        Before the cut-over both names are accepted, so verifiers can be updated first.
        """
        if alg == ALG_EDDSA and self.alg_cutover is not None and issued_at >= self.alg_cutover:
            raise AlgorithmDowngrade("EdDSA on an object issued after the issuer's cut-over")

    def signing_alg(self, now: int) -> str:
        """The ``alg`` its issuer signs with at ``now``: ``Ed25519`` from the cut-over on."""
        if self.alg_cutover is not None and now >= self.alg_cutover:
            return ALG_ED25519
        return ALG_EDDSA

    @property
    def keys_by_kid(self) -> dict[str, IssuerKey]:
        return {key.kid: key for key in self.keys}

    @property
    def timestamp_keys_by_kid(self) -> dict[str, TimestampKey]:
        return {key.kid: key for key in self.timestamp_keys}

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "ver": self.version,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "keys": [key.to_jwk() for key in self.keys],
        }
        if self.timestamp_keys:  # absent, not empty, so older lists sign byte for byte alike
            payload["ts_keys"] = [key.to_jwk() for key in self.timestamp_keys]
        if self.alg_cutover is not None:
            payload["alg_cutover"] = self.alg_cutover
        if self.format_version != 1:
            payload["fmt"] = self.format_version
        if self.interchange_keys:  # absent, not empty, like ts_keys
            payload["ik"] = [key.to_jwk() for key in self.interchange_keys]
        return payload

    @staticmethod
    def from_payload(payload: dict[str, Any]) -> TrustListClaims:
        issuer, version = payload.get("iss"), payload.get("ver")
        iat, exp, keys = payload.get("iat"), payload.get("exp"), payload.get("keys")
        if not isinstance(issuer, str) or not issuer:
            raise Malformed("trust list needs iss")
        for value in (version, iat, exp):
            if type(value) is not int or value < 0:
                raise Malformed("ver, iat and exp must be integers")
        if not isinstance(keys, list) or not 1 <= len(keys) <= 256:
            raise Malformed("trust list needs 1 to 256 keys")
        parsed = tuple(IssuerKey.from_jwk(jwk) for jwk in keys)
        if len({key.kid for key in parsed}) != len(parsed):
            raise Malformed("duplicate kid in trust list")
        ts_keys = payload.get("ts_keys", [])
        if not isinstance(ts_keys, list) or len(ts_keys) > 16:
            raise Malformed("ts_keys must be a list of at most 16 keys")
        timestamp_keys = tuple(TimestampKey.from_jwk(jwk) for jwk in ts_keys)
        if len({key.kid for key in timestamp_keys}) != len(timestamp_keys):
            raise Malformed("duplicate kid in ts_keys")
        format_version = payload.get("fmt", 1)
        if type(format_version) is not int or format_version < 1:
            raise Malformed("fmt must be a positive integer")
        if format_version > FORMAT_VERSION:
            raise UnsupportedVersion(f"trust list needs format {format_version}; this"
                                     f" verifier understands up to {FORMAT_VERSION}")
        alg_cutover = payload.get("alg_cutover")
        if alg_cutover is not None and (type(alg_cutover) is not int or alg_cutover < 0):
            raise Malformed("alg_cutover must be an integer time")
        interchange_keys = parse_interchange_keys(payload.get("ik", []),
                                                  credential_kids={key.kid for key in parsed})
        assert isinstance(version, int) and isinstance(iat, int) and isinstance(exp, int)
        return TrustListClaims(issuer, version, iat, exp, parsed, timestamp_keys,
                               alg_cutover, format_version, interchange_keys)


MAX_INTERCHANGE_KEYS = 16


def parse_interchange_keys(unverified: Any, *, credential_kids: set[str]
                           ) -> tuple[IssuerKey, ...]:
    """An ``ik`` member: at most 16 keys, kids unique and none shared with a credential
    key (one kid never names both a card key and a link key)."""
    if not isinstance(unverified, list) or len(unverified) > MAX_INTERCHANGE_KEYS:
        raise Malformed(f"ik must be a list of at most {MAX_INTERCHANGE_KEYS} keys")
    keys = tuple(IssuerKey.from_jwk(jwk) for jwk in unverified)
    kids = {key.kid for key in keys}
    if len(kids) != len(keys):
        raise Malformed("duplicate kid in ik")
    if kids & credential_kids:
        raise Malformed("an interchange key shares its kid with a credential key")
    return keys
