"""Credentials: the small signed objects in the phone (docs/DESIGN.md section 4).

A credential is a compact JWS (EdDSA, ``zip: DEF``) whose payload is one of three
purposes. Claim names are short to keep the QR small; they are registered here and in
``schemas/json/credential.schema.json``.

Example::

    claims = Credential(purpose=Purpose.PAY, issuer="CN-ZJ-YIWU", issued_at=0,
                        expires_at=86400, card_number="3300000000000017",
                        status=StatusRef("1", 7), holder_key=b"\\x01" * 32,
                        offline_limit_fen=20000)
    payload = claims.to_payload()          # dict with short claim names
    assert Credential.from_payload(payload) == claims
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from schemas._jose import b64url_decode, b64url_encode
from schemas.codes import Malformed
from schemas.text import has_hidden_characters

__all__ = [
    "CARD_NUMBER_PATTERN",
    "CLAIMS",
    "CREDENTIAL_TYP",
    "FOREIGNER_CODE_PATTERN",
    "MAX_CREDENTIAL_LIFETIME_SECONDS",
    "MAX_INFLATED_PAYLOAD",
    "MAX_LIFETIME_SECONDS",
    "ONE_USE_PAY_LIFETIME_SECONDS",
    "PAY_HANDLE_BYTES",
    "PORTRAIT_DIGEST_BYTES",
    "PORTRAIT_DIGEST_PATTERN",
    "Credential",
    "Entitlement",
    "Purpose",
    "StatusRef",
    "portrait_digest",
]

CREDENTIAL_TYP = "fmc"
# "9", province, nationality, birth date, sequence, check character (docs/DESIGN.md section 3).
FOREIGNER_CODE_PATTERN = r"^9[0-9]{16}[0-9X]$"
CARD_NUMBER_PATTERN = r"^[0-9A-Z]{8,24}$"
MAX_INFLATED_PAYLOAD = 4096  # a credential is a few hundred bytes; anything larger is refused


class Purpose(StrEnum):
    PAY = "pay"
    ID = "id"
    SVC = "svc"


_DAY = 86_400
# The longest a credential of each purpose may live (``exp - iat``), so that a leaked
# issuer key, even a retired one, cannot sign a card that outlives its key by more than
# this. The authority issues 30 days (at most the card's validity) and clamps to these
# caps; a pay credential authorises offline spending, so it gets the shortest one.
MAX_LIFETIME_SECONDS: Mapping[Purpose, int] = MappingProxyType({
    Purpose.PAY: 31 * _DAY,
    Purpose.ID: 92 * _DAY,
    Purpose.SVC: 92 * _DAY,
})
# How long after a key stops signing its last credential may still be accepted.
MAX_CREDENTIAL_LIFETIME_SECONDS = max(MAX_LIFETIME_SECONDS.values())
# A one-use pay credential (P13.3: ``ph`` instead of ``cn``) is valid on one UTC day: its
# ``iat`` is the start of its day of use (a midnight, the same for everyone; possibly in
# the future, pre-issued: NOT_YET_VALID until then), its ``exp`` the next midnight.
ONE_USE_PAY_LIFETIME_SECONDS = _DAY
PAY_HANDLE_BYTES = 16  # a random 128-bit pseudonymous handle


class Entitlement(StrEnum):
    HEALTHCARE = "healthcare"
    EDUCATION = "education"
    SOCIAL_INSURANCE = "social_insurance"
    PUBLIC_TRANSPORT = "public_transport"
    GOVERNMENT_SERVICES = "government_services"
    PAYMENT = "payment"

    @property
    def wire_code(self) -> str:
        return _ENTITLEMENT_CODES[self]

    @staticmethod
    def from_wire(codes: str) -> tuple[Entitlement, ...]:
        try:
            return tuple(_ENTITLEMENT_BY_CODE[c] for c in codes)
        except KeyError as exc:
            raise Malformed("unknown entitlement code") from exc


# One letter per entitlement on the wire (a svc QR must stay within version 16).
# Extend by adding a letter; never reuse one.
_ENTITLEMENT_CODES = {
    Entitlement.HEALTHCARE: "H",
    Entitlement.EDUCATION: "E",
    Entitlement.SOCIAL_INSURANCE: "S",
    Entitlement.PUBLIC_TRANSPORT: "T",
    Entitlement.GOVERNMENT_SERVICES: "G",
    Entitlement.PAYMENT: "P",
}
_ENTITLEMENT_BY_CODE = {code: ent for ent, code in _ENTITLEMENT_CODES.items()}
PORTRAIT_DIGEST_BYTES = 16  # SHA-256 truncated to 128 bits: second preimages stay out of reach
# base64url without padding of PORTRAIT_DIGEST_BYTES: how a digest is named (``pd``, paths)
PORTRAIT_DIGEST_PATTERN = r"^[A-Za-z0-9_-]{22}$"


# The claim registry: short wire name -> meaning.
CLAIMS: dict[str, str] = {
    "iss": "issuer name (must match the trust list's issuer)",
    "iat": "issued at, seconds since the epoch",
    "exp": "expires at, seconds since the epoch",
    "pur": "purpose: pay | id | svc",
    "cn": "card number (absent from a one-use pay credential)",
    "ph": "one-use pay: random 128-bit pseudonymous handle, base64url (replaces cn)",
    "st": "status reference: [status list id, index]",
    "hk": "holder key: the phone's Ed25519 public key, base64url (confirmation key)",
    "ol": "pay: offline limit in fen",
    "fc": "id/svc: stable foreigner code",
    "sn": "id/svc: surname (primary identifier)",
    "gn": "id/svc: given names (secondary identifier)",
    "bd": "id/svc: birth date YYYY-MM-DD",
    "nat": "id/svc: nationality, ISO 3166-1 alpha-3",
    "sex": "id/svc: M | F | X",
    "pd": "id/svc: SHA-256 of the portrait, first 16 bytes, base64url (absent: no portrait)",
    "ent": "svc: entitlements, one letter each (H E S T G P, see Entitlement.wire_code)",
}

_REQUIRED = {"iss", "iat", "exp", "pur", "cn", "st", "hk"}
_PERSONAL = {"fc", "sn", "gn", "bd", "nat", "sex"}
_MANDATORY = {
    Purpose.PAY: frozenset(_REQUIRED),
    Purpose.ID: frozenset(_REQUIRED | _PERSONAL),
    Purpose.SVC: frozenset(_REQUIRED | _PERSONAL | {"ent"}),
}
_ALLOWED = {
    Purpose.PAY: frozenset(_REQUIRED | {"ol"}),
    Purpose.ID: frozenset(_REQUIRED | _PERSONAL | {"pd"}),
    Purpose.SVC: frozenset(_REQUIRED | _PERSONAL | {"pd", "ent"}),
}
# A one-use pay credential (P13.3): ``ph`` replaces ``cn``, ``ol`` is required.
_ONE_USE_PAY = frozenset((_REQUIRED - {"cn"}) | {"ph", "ol"})
_PURPOSES = {p.value: p for p in Purpose}
_CARD_RE = re.compile(CARD_NUMBER_PATTERN)
_CODE_RE = re.compile(FOREIGNER_CODE_PATTERN)
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_ALPHA3_RE = re.compile(r"^[A-Z]{3}$")
_LIST_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
_MAX_INT = 2**53


@dataclass(frozen=True, slots=True)
class StatusRef:
    """Where the credential's status lives: status list id and index in it."""

    list_id: str
    index: int


class Credential(NamedTuple):
    """Decoded claims of one credential (only ever built from verified bytes or by the issuer).

    Immutable; a NamedTuple rather than a frozen dataclass because the verifier builds one
    per check and a tuple is built several times faster.
    """

    purpose: Purpose
    issuer: str
    issued_at: int
    expires_at: int
    card_number: str
    status: StatusRef
    holder_key: bytes
    offline_limit_fen: int | None = None
    foreigner_code: str | None = None
    surname: str | None = None
    given_names: str | None = None
    birth_date: str | None = None
    nationality: str | None = None
    sex: str | None = None
    portrait_digest: bytes | None = None
    entitlements: tuple[Entitlement, ...] = ()
    # One-use pay credential (P13.3): the pseudonymous handle; ``card_number`` is then ""
    # until the authority resolves the handle (a verifier never learns the card).
    pay_handle: bytes | None = None

    @property
    def is_one_use(self) -> bool:
        """A one-use pay credential: it names a handle, never the card."""
        return self.pay_handle is not None

    @property
    def granted_entitlements(self) -> tuple[Entitlement, ...]:
        """What this credential lets the holder use: a pay credential grants payment only."""
        if self.purpose is Purpose.PAY:
            return (Entitlement.PAYMENT,)
        return self.entitlements

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "pur": self.purpose.value,
            "cn": self.card_number,
            "st": [self.status.list_id, self.status.index],
            "hk": b64url_encode(self.holder_key),
        }
        if self.pay_handle is not None:
            del payload["cn"]
            payload["ph"] = b64url_encode(self.pay_handle)
            payload["ol"] = self.offline_limit_fen
        elif self.purpose is Purpose.PAY:
            if self.offline_limit_fen is not None:
                payload["ol"] = self.offline_limit_fen
        else:
            payload.update(
                fc=self.foreigner_code,
                sn=self.surname,
                gn=self.given_names,
                bd=self.birth_date,
                nat=self.nationality,
                sex=self.sex,
            )
            if self.portrait_digest is not None:
                payload["pd"] = b64url_encode(self.portrait_digest)
            if self.purpose is Purpose.SVC:
                payload["ent"] = "".join(e.wire_code for e in self.entitlements)
        Credential.from_payload(payload)  # the issuer never signs what a verifier would refuse
        return payload

    @staticmethod
    def from_payload(payload: dict[str, Any]) -> Credential:
        """Validate claims (after the signature passed) and build the typed credential.

        Required claims are required; unregistered claims are refused (fail closed).
        """
        unverified_purpose = payload.get("pur")
        purpose = _PURPOSES.get(unverified_purpose) if type(unverified_purpose) is str else None
        if purpose is None:
            raise Malformed("unknown purpose")
        names = payload.keys()
        if purpose is Purpose.PAY and "ph" in names:
            return _one_use_pay(payload)
        if names != _ALLOWED[purpose] and not (
            names >= _MANDATORY[purpose] and names <= _ALLOWED[purpose]
        ):
            missing = _MANDATORY[purpose] - names
            extra = names - _ALLOWED[purpose]
            raise Malformed(f"missing claims {sorted(missing)}, unregistered {sorted(extra)}")
        status = _status_ref(payload["st"])
        issuer = _issuer(payload["iss"])
        issued_at, expires_at = _time(payload["iat"], "iat"), _time(payload["exp"], "exp")
        card_number = _match(payload["cn"], _CARD_RE, "cn")
        holder_key = _b64_bytes(payload["hk"], 32, "hk")
        if purpose is Purpose.PAY:
            return Credential(purpose, issuer, issued_at, expires_at, card_number,
                              status, holder_key, _optional_amount(payload.get("ol")))
        digest = payload.get("pd")
        ent = payload.get("ent")
        return Credential(
            purpose,
            issuer,
            issued_at,
            expires_at,
            card_number,
            status,
            holder_key,
            None,
            _match(payload["fc"], _CODE_RE, "fc"),
            _text(payload["sn"], "sn", 128),
            _text(payload["gn"], "gn", 128, allow_empty=True),
            _match(payload["bd"], _DATE_RE, "bd"),
            _match(payload["nat"], _ALPHA3_RE, "nat"),
            _choice(payload["sex"], ("M", "F", "X"), "sex"),
            None if digest is None else _b64_bytes(digest, PORTRAIT_DIGEST_BYTES, "pd"),
            () if ent is None else _entitlements(ent),
        )


def _one_use_pay(payload: dict[str, Any]) -> Credential:
    """A one-use pay credential: exactly its claims, ``ol`` and ``ph`` present. (The
    authority dates it to the UTC midnight, or its key's start if later, so ``iat`` says
    nothing finer than the day; a verifier does not need to check that.)"""
    if payload.keys() != _ONE_USE_PAY:
        raise Malformed(f"a one-use pay credential has exactly {sorted(_ONE_USE_PAY)}")
    status, issuer = _status_ref(payload["st"]), _issuer(payload["iss"])
    issued_at, expires_at = _time(payload["iat"], "iat"), _time(payload["exp"], "exp")
    limit = _optional_amount(payload["ol"])
    if limit is None:
        raise Malformed("ol must be a non-negative integer amount of fen")
    return Credential(Purpose.PAY, issuer, issued_at, expires_at, "", status,
                      _b64_bytes(payload["hk"], 32, "hk"), limit,
                      pay_handle=_b64_bytes(payload["ph"], PAY_HANDLE_BYTES, "ph"))


# Valid ``ent`` strings already decoded; bounded, and only valid strings enter it.
_ENTITLEMENT_MEMO: dict[str, tuple[Entitlement, ...]] = {}


def _entitlements(value: Any) -> tuple[Entitlement, ...]:
    if type(value) is not str:
        raise Malformed("ent must be distinct entitlement letters")
    known = _ENTITLEMENT_MEMO.get(value)
    if known is not None:
        return known
    if len(value) > 32 or len(set(value)) != len(value):
        raise Malformed("ent must be distinct entitlement letters")
    entitlements = Entitlement.from_wire(value)
    if len(_ENTITLEMENT_MEMO) < 256:
        _ENTITLEMENT_MEMO[value] = entitlements
    return entitlements


def portrait_digest(portrait: bytes) -> bytes:
    """The ``pd`` claim for a portrait image's bytes."""
    return hashlib.sha256(portrait).digest()[:PORTRAIT_DIGEST_BYTES]


def _text(value: Any, name: str, max_len: int, *, allow_empty: bool = False) -> str:
    if type(value) is not str or len(value) > max_len or (not value and not allow_empty):
        raise Malformed(f"{name} must be a string of at most {max_len} characters")
    if has_hidden_characters(value):  # the authority refuses these at enrolment
        raise Malformed(f"{name} holds control or format characters")
    return value


def _match(value: Any, pattern: re.Pattern[str], name: str) -> str:
    if type(value) is not str or not pattern.fullmatch(value):
        raise Malformed(f"{name} has the wrong form")
    return value


def _choice(value: Any, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise Malformed(f"{name} must be one of {choices}")
    return str(value)


def _status_ref(value: Any) -> StatusRef:
    if type(value) is not list or len(value) != 2:
        raise Malformed("st must be [list id, index]")
    list_id, index = value
    if type(list_id) is not str or not _LIST_ID_RE.fullmatch(list_id):
        raise Malformed("st[0] must be a status list id")
    return StatusRef(list_id, _index(index))


def _issuer(value: Any) -> str:
    if type(value) is not str or not 0 < len(value) <= 64 or has_hidden_characters(value):
        raise Malformed("iss must be a short string")
    return value


def _time(value: Any, name: str) -> int:
    if type(value) is not int or not 0 <= value < _MAX_INT:
        raise Malformed(f"{name} must be an integer time")
    return value


def _index(value: Any) -> int:
    if type(value) is not int or not 0 <= value < 2**32:
        raise Malformed("st.i must be a non-negative integer")
    return value


def _optional_amount(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < _MAX_INT:
        raise Malformed("ol must be a non-negative integer amount of fen")
    return value


def _b64_bytes(value: Any, length: int, name: str) -> bytes:
    if type(value) is not str:
        raise Malformed(f"{name} must be base64url")
    raw = b64url_decode(value)
    if len(raw) != length:
        raise Malformed(f"{name} must be {length} bytes")
    return raw
