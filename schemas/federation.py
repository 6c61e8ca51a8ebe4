"""Federation lists: the national root's signed list of city issuers (docs/FEDERATION.md).

Header: ``{"alg": "EdDSA", "typ": "fmc-federation+jwt", "jwk": <national root public JWK>}``.
Payload: ``{"iss", "ver", "iat", "exp", "issuers": [issuer entry]}``; each entry names a city
(``code`` such as ``CN-YW``, which is also the ``iss`` of its credentials), its names in
English and Chinese, its state, its root key, its issuer keys flattened from its own
root-signed trust list, where its status lists and payment API live, and the blocks of
foreigner-code sequence numbers it may allocate. An optional member ``ik`` copies the
city's interchange keys from its trust list (requests between authorities,
``fmc-interauth+jwt``); absent, the city can neither make nor answer such requests.

Kids are unique nationally, not only within an issuer: each city mints short sequential
kids under its own prefix (``k1``, ``k2`` in Yiwu; ``h1`` in Hangzhou) because the kid
travels in every QR code. So the kid alone finds the one key, and its city, before the
signature is checked; the signed ``iss`` is compared with that city after it. A list
naming one kid in two entries is MALFORMED (the national tool refuses it first,
``KID_IN_USE``).

Example::

    claims = FederationClaims.from_payload(payload)     # raises Malformed on any bad field
    yiwu = claims.issuers_by_code["CN-YW"]
    key = yiwu.keys_by_kid["k1"]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit

from schemas._jose import b64url_decode, b64url_encode
from schemas.codes import Malformed
from schemas.text import has_hidden_characters
from schemas.trust_list import IssuerKey, TrustListClaims, parse_interchange_keys

__all__ = [
    "FEDERATION_TYP",
    "MAX_ISSUERS",
    "MAX_KEYS_PER_ISSUER",
    "SEQUENCE_MAX",
    "FederationClaims",
    "IssuerEntry",
    "IssuerState",
    "SequenceBlock",
]

FEDERATION_TYP = "fmc-federation+jwt"
MAX_ISSUERS = 256
MAX_KEYS_PER_ISSUER = 64
MAX_BLOCKS_PER_ISSUER = 8
SEQUENCE_MAX = 999  # the foreigner code's sequence has three digits; 000 is never used
_MAX_URL = 512
_CODE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,8}){1,3}$")  # CN-YW, CN-ZJ-YIWU
_ENTRY_MEMBERS = ("code", "name_en", "name_zh", "state", "root", "keys", "status_url",
                  "api_url", "seq", "tl_ver")


class IssuerState(StrEnum):
    ACTIVE = "active"  # its cards are accepted
    SUSPENDED = "suspended"  # refused for now (ISSUER_SUSPENDED); may be reinstated
    REMOVED = "removed"  # refused for good (ISSUER_REMOVED); its sequence blocks stay taken


@dataclass(frozen=True, slots=True, order=True)
class SequenceBlock:
    """Foreigner-code sequence numbers ``first..last`` (inclusive) one issuer may allocate."""

    first: int
    last: int

    def __contains__(self, sequence: object) -> bool:
        return isinstance(sequence, int) and self.first <= sequence <= self.last

    def overlaps(self, other: SequenceBlock) -> bool:
        return self.first <= other.last and other.first <= self.last

    def to_payload(self) -> list[int]:
        return [self.first, self.last]

    @staticmethod
    def from_payload(unverified: Any) -> SequenceBlock:
        if not isinstance(unverified, list) or len(unverified) != 2 or \
                not all(type(bound) is int for bound in unverified):
            raise Malformed("a sequence block is [first, last]")
        first, last = unverified
        if not 1 <= first <= last <= SEQUENCE_MAX:
            raise Malformed(f"a sequence block lies within 1..{SEQUENCE_MAX}")
        return SequenceBlock(first, last)


@dataclass(frozen=True, slots=True)
class IssuerEntry:
    """One city issuer as the national root vouches for it."""

    code: str
    name_en: str
    name_zh: str
    state: IssuerState
    root_key: bytes  # the city's own trust-list root, registered nationally
    keys: tuple[IssuerKey, ...]
    status_url: str
    api_url: str
    sequence_blocks: tuple[SequenceBlock, ...]
    trust_list_version: int  # the city trust list the keys were flattened from
    interchange_keys: tuple[IssuerKey, ...] = ()  # ``ik``: sign interauth requests only

    @property
    def interchange_keys_by_kid(self) -> dict[str, IssuerKey]:
        return {key.kid: key for key in self.interchange_keys}

    @property
    def keys_by_kid(self) -> dict[str, IssuerKey]:
        return {key.kid: key for key in self.keys}

    def owns_sequence(self, sequence: int) -> bool:
        return any(sequence in block for block in self.sequence_blocks)

    def as_trust_list(self, federation: FederationClaims) -> TrustListClaims:
        """This city's keys as a trust list, so the existing status-list and receipt checks
        run unchanged per city; it lives exactly as long as the federation list."""
        return TrustListClaims(self.code, federation.version, federation.issued_at,
                               federation.expires_at, self.keys)

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "code": self.code,
            "name_en": self.name_en,
            "name_zh": self.name_zh,
            "state": self.state.value,
            "root": {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(self.root_key)},
            "keys": [key.to_jwk() for key in self.keys],
            "status_url": self.status_url,
            "api_url": self.api_url,
            "seq": [block.to_payload() for block in self.sequence_blocks],
            "tl_ver": self.trust_list_version,
        }
        if self.interchange_keys:  # absent, not empty: older lists sign byte for byte alike
            payload["ik"] = [key.to_jwk() for key in self.interchange_keys]
        return payload

    @staticmethod
    def from_payload(unverified: Any) -> IssuerEntry:
        if not isinstance(unverified, dict):
            raise Malformed("an issuer entry is an object")
        missing = [member for member in _ENTRY_MEMBERS if member not in unverified]
        if missing:
            raise Malformed(f"issuer entry lacks {missing}")
        code = unverified["code"]
        if not isinstance(code, str) or not _CODE.match(code):
            raise Malformed("issuer code must look like CN-YW")
        name_en = _name(unverified["name_en"], limit=64)
        name_zh = _name(unverified["name_zh"], limit=32)
        try:
            state = IssuerState(unverified["state"])
        except ValueError as exc:
            raise Malformed("unknown issuer state") from exc
        keys = unverified["keys"]
        if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_KEYS_PER_ISSUER:
            raise Malformed(f"an issuer has 1 to {MAX_KEYS_PER_ISSUER} keys")
        parsed_keys = tuple(IssuerKey.from_jwk(jwk) for jwk in keys)
        if len({key.kid for key in parsed_keys}) != len(parsed_keys):
            raise Malformed("duplicate kid within an issuer")
        blocks = unverified["seq"]
        if not isinstance(blocks, list) or not 1 <= len(blocks) <= MAX_BLOCKS_PER_ISSUER:
            raise Malformed(f"an issuer has 1 to {MAX_BLOCKS_PER_ISSUER} sequence blocks")
        trust_list_version = unverified["tl_ver"]
        if type(trust_list_version) is not int or trust_list_version < 0:
            raise Malformed("tl_ver must be a non-negative integer")
        interchange_keys = parse_interchange_keys(
            unverified.get("ik", []), credential_kids={key.kid for key in parsed_keys})
        return IssuerEntry(
            code, name_en, name_zh, state, _root_key(unverified["root"]), parsed_keys,
            _url(unverified["status_url"]), _url(unverified["api_url"]),
            tuple(sorted(SequenceBlock.from_payload(block) for block in blocks)),
            trust_list_version, interchange_keys,
        )


@dataclass(frozen=True, slots=True)
class FederationClaims:
    """The signed federation list: which cities a verifier pinned to the country trusts."""

    issuer: str
    version: int
    issued_at: int
    expires_at: int
    issuers: tuple[IssuerEntry, ...]

    @property
    def issuers_by_code(self) -> dict[str, IssuerEntry]:
        return {entry.code: entry for entry in self.issuers}

    def to_payload(self) -> dict[str, Any]:
        return {
            "iss": self.issuer,
            "ver": self.version,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "issuers": [entry.to_payload() for entry in self.issuers],
        }

    @staticmethod
    def from_payload(payload: dict[str, Any]) -> FederationClaims:
        issuer, version = payload.get("iss"), payload.get("ver")
        iat, exp, issuers = payload.get("iat"), payload.get("exp"), payload.get("issuers")
        if not isinstance(issuer, str) or not 0 < len(issuer) <= 64 or \
                has_hidden_characters(issuer):
            raise Malformed("federation list needs iss")
        if type(version) is not int or type(iat) is not int or type(exp) is not int or \
                min(version, iat, exp) < 0:
            raise Malformed("ver, iat and exp must be non-negative integers")
        if exp <= iat:
            raise Malformed("a federation list must expire after it is issued")
        if not isinstance(issuers, list) or not 1 <= len(issuers) <= MAX_ISSUERS:
            raise Malformed(f"a federation list names 1 to {MAX_ISSUERS} issuers")
        entries = tuple(IssuerEntry.from_payload(entry) for entry in issuers)
        _check_disjoint(entries)
        return FederationClaims(issuer, version, iat, exp, entries)


def _check_disjoint(entries: tuple[IssuerEntry, ...]) -> None:
    """Codes, city roots and kids are unique; no sequence number belongs to two issuers."""
    if len({entry.code for entry in entries}) != len(entries):
        raise Malformed("duplicate issuer code")
    if len({entry.root_key for entry in entries}) != len(entries):
        raise Malformed("two issuers share a root key")
    kids = [key.kid for entry in entries for key in entry.keys]
    if len(set(kids)) != len(kids):
        raise Malformed("a kid is used by two issuers (kids are unique nationally)")
    link_kids = [key.kid for entry in entries for key in entry.interchange_keys]
    if len(set(link_kids)) != len(link_kids):
        raise Malformed("an interchange kid is used by two issuers")
    blocks = sorted(block for entry in entries for block in entry.sequence_blocks)
    for before, after in pairwise(blocks):
        if before.overlaps(after):
            raise Malformed("sequence blocks overlap")


def _name(unverified: Any, *, limit: int) -> str:
    if not isinstance(unverified, str) or not 0 < len(unverified) <= limit or \
            unverified != unverified.strip() or has_hidden_characters(unverified):
        raise Malformed(f"issuer names are 1 to {limit} visible characters")
    return unverified


def _url(unverified: Any) -> str:
    if not isinstance(unverified, str) or not 0 < len(unverified) <= _MAX_URL or \
            not unverified.isascii() or not unverified.isprintable() or " " in unverified:
        raise Malformed("issuer URLs are short printable ASCII")
    try:
        parts = urlsplit(unverified)
        hostname = parts.hostname
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError as exc:
        raise Malformed("unparseable issuer URL") from exc
    if parts.scheme not in ("https", "http") or not hostname or "@" in parts.netloc:
        raise Malformed("issuer URLs are http(s)://host/... without credentials")
    if parts.query or parts.fragment:
        raise Malformed("issuer URLs carry no query or fragment")
    return unverified


def _root_key(unverified: Any) -> bytes:
    if not isinstance(unverified, dict) or unverified.get("kty") != "OKP" or \
            unverified.get("crv") != "Ed25519" or not isinstance(unverified.get("x"), str):
        raise Malformed("an issuer root is an OKP Ed25519 JWK")
    root_key = b64url_decode(unverified["x"])
    if len(root_key) != 32:
        raise Malformed("Ed25519 public keys are 32 bytes")
    return root_key
