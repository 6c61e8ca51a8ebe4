"""Sale challenges: what a till shows so that a pay code is bound to one sale (P8.3).

Text form: ``FMCC1:`` followed by decimal digits, as for presentations (the prefix in QR
alphanumeric mode, the digits in numeric mode). The digits are one big-endian integer
whose bytes are::

    form 0x01 | varint merchant_id | varint terminal_id | varint amount_fen |
    16-byte nonce | 4-byte issued_at (big-endian seconds, the till's clock)

Varints are minimal LEB128 (at most 8 bytes). The encoding is canonical: one challenge
has exactly one text, so the digest of the text is the digest of the sale. The phone's
holder proof signs :attr:`Challenge.digest` (see ``schemas.presentation``); nothing in
a challenge is signed by the till, so a verifier trusts a challenge only because it is
the one it issued itself (or, at the authority, because it names the uploading
terminal, its merchant and the uploaded amount).

Example::

    challenge = new_challenge(merchant_id=7, terminal_id=3, amount_fen=1250, now=now)
    assert decode_challenge(challenge.text) == challenge
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from schemas.codes import Malformed, UnsupportedVersion
from schemas.receipt import MAX_AMOUNT_FEN

__all__ = [
    "CHALLENGE_CLOCK_SKEW_SECONDS",
    "CHALLENGE_LIFETIME_SECONDS",
    "CHALLENGE_PREFIX",
    "MAX_CHALLENGE_CHARS",
    "Challenge",
    "decode_challenge",
    "new_challenge",
]

CHALLENGE_PREFIX = "FMCC1:"
# A challenge is shown, scanned and answered at the till within a minute or two; after
# this it is dead everywhere (terminal and authority), so a kept code cannot be used later.
CHALLENGE_LIFETIME_SECONDS = 300
# A till's clock may run this far ahead of another verifier's (the authority's, online):
# a challenge "from the future" by less is not refused (its expiry stays strict).
CHALLENGE_CLOCK_SKEW_SECONDS = 300
MAX_CHALLENGE_CHARS = 120
_FORM = 0x01
_NONCE = 16
_TIME = 4
_MAX_ID = 2**31 - 1  # the authority's ids are 32-bit
_DIGEST_DOMAIN = b"FMC challenge\x00"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One sale as the till states it: who is paid, how much, a nonce and the till's time."""

    merchant_id: int
    terminal_id: int
    amount_fen: int
    nonce: bytes
    issued_at: int

    def __post_init__(self) -> None:
        for name in ("merchant_id", "terminal_id"):
            value = getattr(self, name)
            if type(value) is not int or not 0 < value <= _MAX_ID:
                raise ValueError(f"{name} must be a positive integer")
        if type(self.amount_fen) is not int or not 0 < self.amount_fen <= MAX_AMOUNT_FEN:
            raise ValueError(f"amount_fen must be from 1 to {MAX_AMOUNT_FEN}")
        if len(self.nonce) != _NONCE:
            raise ValueError(f"the nonce is {_NONCE} bytes")
        if type(self.issued_at) is not int or not 0 <= self.issued_at < 2 ** (8 * _TIME):
            raise ValueError("issued_at out of range")

    @property
    def text(self) -> str:
        """The canonical ``FMCC1:`` text (what the till's QR shows)."""
        container = (bytes([_FORM]) + _varint(self.merchant_id) + _varint(self.terminal_id)
                     + _varint(self.amount_fen) + self.nonce
                     + self.issued_at.to_bytes(_TIME, "big"))
        return CHALLENGE_PREFIX + str(int.from_bytes(container, "big"))

    @property
    def digest(self) -> bytes:
        """SHA-256 of the text, domain-separated: what a bound holder proof signs."""
        return hashlib.sha256(_DIGEST_DOMAIN + self.text.encode("ascii")).digest()

    @property
    def expires_at(self) -> int:
        return self.issued_at + CHALLENGE_LIFETIME_SECONDS


def new_challenge(*, merchant_id: int, terminal_id: int, amount_fen: int, now: int) -> Challenge:
    """A fresh challenge with a random 128-bit nonce."""
    return Challenge(merchant_id, terminal_id, amount_fen, secrets.token_bytes(_NONCE), now)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 56, 7):  # at most 8 bytes
        if pos >= len(buf):
            raise Malformed("truncated challenge")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if shift and byte == 0:
                raise Malformed("non-minimal number in challenge")
            return value, pos
    raise Malformed("number too large in challenge")


def decode_challenge(unverified_text: str) -> Challenge:
    """Parse challenge text. Raises Malformed / UnsupportedVersion."""
    if not isinstance(unverified_text, str):
        raise Malformed("a challenge must be text")
    if len(unverified_text) > MAX_CHALLENGE_CHARS:
        raise Malformed("challenge too large")
    text = unverified_text.strip()
    if not text.startswith(CHALLENGE_PREFIX):
        version = text.partition(":")[0]
        if len(version) > 4 and version[:4] == "FMCC" and version[4:].isdigit():
            raise UnsupportedVersion(f"challenge version {version!r}")
        raise Malformed("not an FMC challenge")
    digits = text[len(CHALLENGE_PREFIX):].encode("ascii", "replace")
    if not digits.isdigit() or digits[0] == 48:
        raise Malformed("challenge body must be canonical decimal digits")
    number = int(digits)
    container = number.to_bytes((number.bit_length() + 7) >> 3, "big")
    if container[0] != _FORM:
        raise Malformed("bad challenge form")
    merchant_id, pos = _read_varint(container, 1)
    terminal_id, pos = _read_varint(container, pos)
    amount_fen, pos = _read_varint(container, pos)
    if len(container) - pos != _NONCE + _TIME:
        raise Malformed("challenge has the wrong length")
    try:
        return Challenge(merchant_id, terminal_id, amount_fen, container[pos:pos + _NONCE],
                         int.from_bytes(container[pos + _NONCE:], "big"))
    except ValueError as error:
        raise Malformed(str(error)) from None
