"""The signed timestamp (TUF's timestamp role): a short-lived object, signed by an online
key the root delegates to in the trust list (``ts_keys``), naming the current trust list
and status lists. A verifier that holds it learns within hours, not weeks, that a newer
trust list exists (P8.5).

Header: ``{"alg": "EdDSA", "typ": "fmc-timestamp+jwt", "kid": <a ts_keys kid>}``.
Payload: ``{"iss", "ver", "iat", "exp", "tl": {"ver", "sha256"},
"sl": {<list id>: {"iat", "sha256"}}}``; ``sha256`` is the base64url SHA-256 of the JWT
exactly as served (:func:`list_digest`); ``ver`` only ever goes up.

Example::

    claims = TimestampClaims.from_payload(payload)
    if claims.trust_list.version > held_trust_list.version: ...   # TRUST_LIST_OUTDATED
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from schemas._jose import b64url_encode
from schemas.codes import Malformed

__all__ = ["TIMESTAMP_TYP", "ListRef", "TimestampClaims", "list_digest"]

TIMESTAMP_TYP = "fmc-timestamp+jwt"
_DIGEST_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_LIST_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
_MAX_STATUS_LISTS = 256


def list_digest(jwt: str) -> str:
    """The base64url SHA-256 of a signed list as served (what ``tl``/``sl`` name)."""
    return b64url_encode(hashlib.sha256(jwt.encode("ascii")).digest())


@dataclass(frozen=True, slots=True)
class ListRef:
    """One list a timestamp names: its version (trust list) or ``iat`` (status list)."""

    serial: int
    sha256: str


@dataclass(frozen=True, slots=True)
class TimestampClaims:
    issuer: str
    version: int
    issued_at: int
    expires_at: int
    trust_list: ListRef  # serial = the trust list's ``ver``
    status_lists: Mapping[str, ListRef] = field(default_factory=dict)  # serial = ``iat``

    def to_payload(self) -> dict[str, Any]:
        return {
            "iss": self.issuer,
            "ver": self.version,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "tl": {"ver": self.trust_list.serial, "sha256": self.trust_list.sha256},
            "sl": {list_id: {"iat": ref.serial, "sha256": ref.sha256}
                   for list_id, ref in sorted(self.status_lists.items())},
        }

    @staticmethod
    def from_payload(payload: dict[str, Any]) -> TimestampClaims:
        issuer = payload.get("iss")
        version, iat, exp = payload.get("ver"), payload.get("iat"), payload.get("exp")
        if not isinstance(issuer, str) or not issuer:
            raise Malformed("timestamp needs iss")
        for value in (version, iat, exp):
            if type(value) is not int or value < 0:
                raise Malformed("ver, iat and exp must be integers")
        assert isinstance(version, int) and isinstance(iat, int) and isinstance(exp, int)
        if version < 1 or exp <= iat:
            raise Malformed("timestamp ver starts at 1 and exp follows iat")
        trust_list = _list_ref(payload.get("tl"), "ver")
        unverified_sl = payload.get("sl")
        if not isinstance(unverified_sl, dict) or len(unverified_sl) > _MAX_STATUS_LISTS:
            raise Malformed("timestamp sl must be an object of at most 256 lists")
        status_lists: dict[str, ListRef] = {}
        for list_id, entry in unverified_sl.items():
            if not _LIST_ID_RE.fullmatch(list_id):
                raise Malformed("bad status list id in timestamp")
            status_lists[list_id] = _list_ref(entry, "iat")
        return TimestampClaims(issuer, version, iat, exp, trust_list,
                               MappingProxyType(status_lists))


def _list_ref(unverified: Any, serial_name: str) -> ListRef:
    if not isinstance(unverified, dict) or set(unverified) != {serial_name, "sha256"}:
        raise Malformed(f"a list reference is {{{serial_name!r}, 'sha256'}}")
    serial, digest = unverified[serial_name], unverified["sha256"]
    if type(serial) is not int or serial < 0:
        raise Malformed(f"list reference {serial_name} must be an integer")
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise Malformed("list reference sha256 must be 43 base64url characters")
    return ListRef(serial, digest)
