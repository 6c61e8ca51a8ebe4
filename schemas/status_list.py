"""IETF Token Status List (draft-ietf-oauth-status-list): the bit array and its JWT claims.

Statuses are packed ``bits`` per entry, least-significant bits first, then zlib
(RFC 1950) compressed and base64url encoded into ``lst``.

Example::

    statuses = StatusList.empty(size=16, bits=2)
    statuses.set(3, STATUS_REVOKED)
    lst = statuses.encode_lst()
    assert StatusList.decode_lst(lst, bits=2).get(3) == STATUS_REVOKED
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas._jose import b64url_decode, b64url_encode
from schemas.codes import Malformed

__all__ = [
    "DAY_LIST_GRACE_SECONDS",
    "MAX_STATUS_LIST_BYTES",
    "STATUS_LIST_TYP",
    "STATUS_REVOKED",
    "STATUS_SUSPENDED",
    "STATUS_VALID",
    "StatusList",
    "StatusListClaims",
    "day_list_day",
    "day_list_id",
    "day_list_retired",
]

STATUS_LIST_TYP = "statuslist+jwt"
STATUS_VALID = 0
STATUS_REVOKED = 1
STATUS_SUSPENDED = 2
MAX_STATUS_LIST_BYTES = 4 * 1024 * 1024  # 16 Mi entries at 2 bits; refuse bigger bombs

# Day lists (P13.3): the status entries of one-use pay credentials valid on UTC day D are
# drawn from D's own lists, ``p20261129``, then ``p20261129-2``, ... (at most 16
# characters). Every credential of D names one of them, like its ``iat``. Once D's
# credentials have all expired (the next midnight) and this grace has passed too (a
# verifier's 5 s leeway, a till's clock running a little late), no check needs the list:
# it leaves the index and is no longer served, and a verifier's sync drops it.
DAY_LIST_GRACE_SECONDS = 3_600
_DAY = 86_400
_DAY_LIST_RE = re.compile(r"^p([0-9]{8})(?:-([2-9]|[1-9][0-9]{1,5}))?$")


def day_list_id(day: int, number: int = 1) -> str:
    """The id of day ``day``'s (a UTC midnight, epoch seconds) ``number``-th list."""
    stamp = datetime.fromtimestamp(day, UTC).strftime("%Y%m%d")
    return f"p{stamp}" if number == 1 else f"p{stamp}-{number}"


def day_list_day(list_id: str) -> int | None:
    """The UTC midnight starting the day a day list serves; None for any other list id."""
    match = _DAY_LIST_RE.fullmatch(list_id)
    if match is None:
        return None
    try:
        day = datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(day.timestamp())


def day_list_retired(list_id: str, now: int) -> bool:
    """True once a day list's day has ended and the grace passed (other lists: never)."""
    day = day_list_day(list_id)
    return day is not None and now >= day + _DAY + DAY_LIST_GRACE_SECONDS


class StatusList:
    """A mutable packed array of small statuses (1, 2, 4 or 8 bits each)."""

    __slots__ = ("_mask", "bits", "raw")

    def __init__(self, raw: bytearray, bits: int) -> None:
        if bits not in (1, 2, 4, 8):
            raise Malformed("bits must be 1, 2, 4 or 8")
        self.raw = raw
        self.bits = bits
        self._mask = (1 << bits) - 1

    @classmethod
    def empty(cls, size: int, bits: int = 2) -> StatusList:
        return cls(bytearray((size * bits + 7) // 8), bits)

    @property
    def size(self) -> int:
        return len(self.raw) * 8 // self.bits

    def get(self, index: int) -> int:
        bit = index * self.bits
        if index < 0 or bit >= len(self.raw) * 8:
            raise IndexError(index)
        return (self.raw[bit >> 3] >> (bit & 7)) & self._mask

    def set(self, index: int, status: int) -> None:
        if not 0 <= status <= self._mask:
            raise ValueError("status does not fit in bits")
        bit = index * self.bits
        if index < 0 or bit >= len(self.raw) * 8:
            raise IndexError(index)
        shift = bit & 7
        byte = self.raw[bit >> 3]
        self.raw[bit >> 3] = (byte & ~(self._mask << shift) & 0xFF) | (status << shift)

    def encode_lst(self) -> str:
        return b64url_encode(zlib.compress(bytes(self.raw), 9))

    @classmethod
    def decode_lst(cls, lst: str, bits: int, cap: int = MAX_STATUS_LIST_BYTES) -> StatusList:
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(b64url_decode(lst), cap + 1)
        except zlib.error as exc:
            raise Malformed("lst is not zlib data") from exc
        if len(raw) > cap or inflater.unconsumed_tail:
            raise Malformed("status list exceeds the size cap")
        if not inflater.eof:
            raise Malformed("truncated status list")
        return cls(bytearray(raw), bits)


@dataclass(frozen=True, slots=True)
class StatusListClaims:
    """Claims of a status list JWT. ``lid`` is this project's list id (the URI's last part)."""

    list_id: str
    uri: str
    issued_at: int
    expires_at: int
    ttl: int
    statuses: StatusList

    def to_payload(self) -> dict[str, Any]:
        return {
            "sub": self.uri,
            "lid": self.list_id,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "ttl": self.ttl,
            "status_list": {"bits": self.statuses.bits, "lst": self.statuses.encode_lst()},
        }

    @staticmethod
    def from_payload(payload: dict[str, Any]) -> StatusListClaims:
        try:
            list_id, uri = payload["lid"], payload["sub"]
            iat, exp, ttl = payload["iat"], payload["exp"], payload["ttl"]
            body = payload["status_list"]
            bits, lst = body["bits"], body["lst"]
        except (KeyError, TypeError) as exc:
            raise Malformed("status list claims missing") from exc
        if not (isinstance(list_id, str) and isinstance(uri, str) and isinstance(lst, str)):
            raise Malformed("status list claims have the wrong type")
        for value in (iat, exp, ttl, bits):
            if type(value) is not int or value < 0:
                raise Malformed("status list times must be integers")
        if bits != 2:
            raise Malformed("this project's status lists use 2 bits")
        return StatusListClaims(list_id, uri, iat, exp, ttl, StatusList.decode_lst(lst, bits))
