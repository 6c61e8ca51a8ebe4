"""Presentations: what the QR code shows (docs/DESIGN.md section 5).

Text form: ``FMC1:`` followed by decimal digits. The digits are one big-endian integer
whose bytes are the container below, so a QR encoder puts the prefix in alphanumeric
mode and the rest in numeric mode (3 digits per 10 bits: 8.03 bits per byte, better
than base45's 8.25 and decodable in C by ``int()``).

Container (its first byte is a form marker, never zero, so no leading zero is lost)::

    form | header | varint len(payload) | DEFLATE payload |
    64-byte issuer signature | 4-byte proof time (big-endian seconds) | 64-byte holder proof

    form 0x01: header = varint len + the header JSON bytes as signed
    form 0x02: header = varint len + kid; the header is the standard one,
               ``{"alg":"EdDSA","kid":<kid>,"zip":"DEF"}`` (compact, sorted), rebuilt
               byte for byte. This saves ~36 bytes (about one QR version); every
               header check still runs on the rebuilt bytes.
    form 0x03: as 0x02 with RFC 9864's fully specified algorithm,
               ``{"alg":"Ed25519","kid":<kid>,"zip":"DEF"}``: the move from "EdDSA"
               costs no byte in the QR. (P14, format version 2.)
    0x04-0x0f: reserved for future forms: UNSUPPORTED_VERSION, so a verifier that
               predates a new form never guesses (docs/FORMATS.md, "Rolling out a format
               change"); any other first byte (a truncated or garbled scan) is MALFORMED.

Bound form (P8.3): ``FMC2:`` and the same container followed by the 32-byte digest of
the sale challenge (``schemas.challenge``) that the holder proof also signs. A new prefix,
not a new form byte: a verifier that predates it answers UNSUPPORTED_VERSION (its
prefix check), never a wrong result, and the pay QR stays within version 13.

The credential is an ordinary compact JWS: ``b64url(header).b64url(payload).b64url(sig)``
is rebuilt from the container. The holder proof is the device key's Ed25519 signature
over :func:`holder_proof_message` (with the challenge digest in the bound form).

Example::

    text = encode_presentation(credential_jws, proof_time, holder_proof)
    parts = decode_presentation(text)
    assert parts.credential_jws == credential_jws
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from schemas._jose import b64url_decode, b64url_encode, b64url_encode_bytes
from schemas.codes import Malformed, UnsupportedVersion

__all__ = [
    "BOUND_PREFIX",
    "MAX_PRESENTATION_CHARS",
    "PREFIX",
    "Presentation",
    "decode_presentation",
    "encode_presentation",
    "holder_proof_message",
]

PREFIX = "FMC1:"
BOUND_PREFIX = "FMC2:"
MAX_PRESENTATION_CHARS = 2600  # about 1,070 bytes: above a version-16 QR, below int() limits
_FORM_EXPLICIT = 0x01
_FORM_STANDARD = 0x02  # the standard header with "EdDSA"
_FORM_STANDARD_ED25519 = 0x03  # the standard header with "Ed25519" (RFC 9864)
_STANDARD_PREFIX = b'{"alg":"EdDSA","kid":"'
_STANDARD_PREFIX_ED25519 = b'{"alg":"Ed25519","kid":"'
_FUTURE_FORMS = range(0x04, 0x10)
_STANDARD_PREFIXES = {_FORM_STANDARD: _STANDARD_PREFIX,
                      _FORM_STANDARD_ED25519: _STANDARD_PREFIX_ED25519}
_STANDARD_SUFFIX = b'","zip":"DEF"}'
_KID_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_KID_CHARS = frozenset(_KID_BYTES)
_SIG = 64
_TIME = 4
_TAIL = _SIG + _TIME + _SIG
_PROOF_DOMAIN = b"FMC1 holder proof\x00"
_BOUND_PROOF_DOMAIN = b"FMC2 holder proof\x00"
_CHALLENGE_DIGEST = 32
# Prefix -> bytes after the holder proof. Tests drop FMC2 to play a verifier that predates it.
_PREFIXES = {PREFIX: 0, BOUND_PREFIX: _CHALLENGE_DIGEST}


class Presentation(NamedTuple):
    """The parts of a presentation, none of them verified yet."""

    header: bytes
    payload: bytes
    signature: bytes
    proof_time: int
    holder_proof: bytes
    challenge_digest: bytes | None = None  # set in the bound (FMC2) form only

    @property
    def signing_input(self) -> bytes:
        return b64url_encode_bytes(self.header) + b"." + b64url_encode_bytes(self.payload)

    @property
    def credential_jws(self) -> str:
        return self.signing_input.decode("ascii") + "." + b64url_encode(self.signature)


def holder_proof_message(credential_jws: str, proof_time: int, purpose: str,
                         challenge_digest: bytes | None = None) -> bytes:
    """Bytes the device key signs: domain, time, purpose and the credential's digest,
    then, bound to a sale, the challenge's digest (under a domain of its own, so an
    unbound proof can never pass for a bound one or the reverse)."""
    message = (
        (_PROOF_DOMAIN if challenge_digest is None else _BOUND_PROOF_DOMAIN)
        + proof_time.to_bytes(8, "big")
        + purpose.encode("ascii")
        + b"\x00"
        + hashlib.sha256(credential_jws.encode("ascii")).digest()
    )
    if challenge_digest is None:
        return message
    if len(challenge_digest) != _CHALLENGE_DIGEST:
        raise ValueError("a challenge digest is 32 bytes")
    return message + challenge_digest


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in (0, 7):  # at most two bytes: lengths below 16,384
        if pos >= len(buf):
            raise Malformed("truncated container")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if shift and byte == 0:
                raise Malformed("non-minimal length")
            return value, pos
    raise Malformed("length too large")


def _standard_kid(header: bytes) -> tuple[int, bytes] | None:
    """The form and kid of a standard header, or None when it must travel whole."""
    if not header.endswith(_STANDARD_SUFFIX):
        return None
    for form, prefix in _STANDARD_PREFIXES.items():
        if header.startswith(prefix):
            kid = header[len(prefix) : -len(_STANDARD_SUFFIX)]
            if kid and set(kid) <= _KID_CHARS:
                return form, kid
    return None


def encode_presentation(credential_jws: str, proof_time: int, holder_proof: bytes,
                        challenge_digest: bytes | None = None) -> str:
    """Pack a compact JWS credential and its holder proof into ``FMC1:`` text (``FMC2:``
    with the digest of the challenge the proof is bound to)."""
    header_b64, payload_b64, signature_b64 = credential_jws.split(".")
    header, payload = b64url_decode(header_b64), b64url_decode(payload_b64)
    signature = b64url_decode(signature_b64)
    if len(signature) != _SIG or len(holder_proof) != _SIG:
        raise ValueError("Ed25519 signatures are 64 bytes")
    if not 0 <= proof_time < 2 ** (8 * _TIME):
        raise ValueError("proof time out of range")
    if challenge_digest is not None and len(challenge_digest) != _CHALLENGE_DIGEST:
        raise ValueError("a challenge digest is 32 bytes")
    standard = _standard_kid(header)
    if standard is not None:
        form, kid = standard
        head = bytes([form]) + _varint(len(kid)) + kid
    else:
        head = bytes([_FORM_EXPLICIT]) + _varint(len(header)) + header
    container = (
        head
        + _varint(len(payload))
        + payload
        + signature
        + proof_time.to_bytes(_TIME, "big")
        + holder_proof
    )
    if challenge_digest is None:
        return PREFIX + str(int.from_bytes(container, "big"))
    return BOUND_PREFIX + str(int.from_bytes(container + challenge_digest, "big"))


def decode_presentation(unverified_text: str | bytes) -> Presentation:
    """Parse presentation text. Raises Malformed / UnsupportedVersion; verifies nothing."""
    if isinstance(unverified_text, bytes):
        if len(unverified_text) > MAX_PRESENTATION_CHARS + 8:
            raise Malformed("presentation too large")
        try:
            unverified_text = unverified_text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise Malformed("presentation is not ASCII") from exc
    if not isinstance(unverified_text, str):
        raise Malformed("presentation must be text")
    if len(unverified_text) > MAX_PRESENTATION_CHARS:
        raise Malformed("presentation too large")
    text = unverified_text.strip()
    extra = _PREFIXES.get(text[:5])
    if extra is None:
        version = text.partition(":")[0]
        if len(version) > 3 and version[:3] == "FMC" and version[3:].isdigit():
            raise UnsupportedVersion(f"presentation version {version!r}")
        raise Malformed("not an FMC presentation")
    if not text.isascii():
        raise Malformed("presentation must be ASCII")
    # bytes.isdigit accepts only 0-9 (int() alone would take '_', spaces, other scripts),
    # and is ten times faster than str.isdigit.
    digits = text[5:].encode("ascii")
    if not digits.isdigit() or digits[0] == 48:
        raise Malformed("presentation body must be canonical decimal digits")
    number = int(digits)
    container = number.to_bytes((number.bit_length() + 7) >> 3, "big")
    form = container[0]
    standard_prefix = _STANDARD_PREFIXES.get(form)
    if standard_prefix is None and form != _FORM_EXPLICIT:
        if form in _FUTURE_FORMS:
            raise UnsupportedVersion(f"container form {form:#04x} is newer than this verifier")
        raise Malformed("bad container form")
    header_len = container[1]
    pos = 2
    if header_len & 0x80:
        header_len, pos = _read_varint(container, 1)
    header = container[pos : pos + header_len]
    pos += header_len
    if len(header) != header_len:
        raise Malformed("truncated container")
    if standard_prefix is not None:
        if not header or header.translate(None, _KID_BYTES):
            raise Malformed("bad kid in standard header")
        header = standard_prefix + header + _STANDARD_SUFFIX
    payload_len, pos = _read_varint(container, pos)
    payload = container[pos : pos + payload_len]
    pos += payload_len
    if len(payload) != payload_len or len(container) - pos != _TAIL + extra:
        raise Malformed("container has the wrong length")
    end = pos + _TAIL
    return Presentation(
        header,
        payload,
        container[pos : pos + _SIG],
        int.from_bytes(container[pos + _SIG : pos + _SIG + _TIME], "big"),
        container[pos + _SIG + _TIME : end],
        container[end:] if extra else None,
    )
