"""Strict compact-JWS plumbing shared by every signed object (no signature code here)."""

from __future__ import annotations

import binascii
import json
import json.scanner
import zlib
from collections.abc import Callable
from typing import Any, cast

from schemas.codes import AlgorithmNotAllowed, Malformed

# RFC 9864 (October 2025) deprecates the polymorphic "EdDSA" for the fully specified
# "Ed25519"; both name the same signature here. Everything is signed "Ed25519" from an
# issuer's cut-over on (``TrustListClaims.alg_cutover``); "EdDSA" is read only for objects
# issued before it. Closed allow-list, as pyjwt does.
ALG_ED25519 = "Ed25519"
ALG_EDDSA = "EdDSA"  # deprecated by RFC 9864; accepted only before an issuer's cut-over
ALLOWED_ALGORITHMS = frozenset({ALG_ED25519, ALG_EDDSA})
MAX_COMPACT_CHARS = 400_000  # a 1,000,000-entry status list is about 20 KB compressed

# base64url -> standard alphabet; '+', '/' and '=' become '!' so strict decoding refuses them.
_URL_TO_STD = bytes.maketrans(b"-_+/=", b"+/!!!")
_TO_URL = bytes.maketrans(b"+/", b"-_")


def b64url_encode(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).translate(_TO_URL).rstrip(b"=").decode("ascii")


def b64url_encode_bytes(raw: bytes) -> bytes:
    return binascii.b2a_base64(raw, newline=False).translate(_TO_URL).rstrip(b"=")


def b64url_decode(unverified_text: str) -> bytes:
    """Decode unpadded base64url strictly: any other character is MALFORMED."""
    try:
        raw = unverified_text.encode("ascii").translate(_URL_TO_STD)
    except (UnicodeEncodeError, AttributeError) as exc:
        raise Malformed("base64url must be ASCII text") from exc
    try:
        return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4), strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise Malformed("bad base64url") from exc


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise Malformed("duplicate JSON member")
    return result


def _reject_constant(name: str) -> None:
    raise Malformed(f"non-standard JSON number {name}")


# One decoder for all calls: json.loads(..., hook=...) would build a new one each time.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
)


# The decoder's own C scanner, called directly: it skips decode()'s whitespace handling.
_SCAN_VALUE: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(cast(Any, _DECODER))


def parse_json_object(unverified_bytes: bytes) -> dict[str, Any]:
    """Parse a UTF-8 JSON object, refusing duplicate members, NaN/Infinity, non-objects."""
    try:
        text = unverified_bytes.decode("utf-8")
        # Compact JSON (all we sign) is scanned directly; anything else, such as
        # surrounding whitespace or trailing data, takes the full decoder's path.
        try:
            value, end = _SCAN_VALUE(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            value = _DECODER.decode(text)
    except Malformed:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Malformed("invalid JSON") from exc
    if not isinstance(value, dict):
        raise Malformed("JSON value is not an object")
    return value


def dump_json(value: Any) -> bytes:
    """Canonical compact JSON for signing (sorted keys, no spaces, UTF-8)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def inflate_capped(compressed: bytes, cap: int) -> bytes:
    """Raw DEFLATE (RFC 1951) decompression that stops at ``cap`` bytes (zip-bomb guard)."""
    inflater = zlib.decompressobj(wbits=-15)
    try:
        out = inflater.decompress(compressed, cap + 1)
    except zlib.error as exc:
        raise Malformed("payload is not raw DEFLATE") from exc
    if len(out) > cap or inflater.unconsumed_tail:
        raise Malformed(f"inflated payload exceeds {cap} bytes")
    if not inflater.eof or inflater.unused_data:
        raise Malformed("truncated or trailing DEFLATE data")
    return out


def deflate(raw: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return compressor.compress(raw) + compressor.flush()


def split_compact(unverified_token: str) -> tuple[bytes, bytes, bytes, bytes]:
    """Split a compact JWS into (signing_input, header, payload, signature) bytes."""
    if len(unverified_token) > MAX_COMPACT_CHARS:
        raise Malformed("token too large")
    parts = unverified_token.split(".")
    if len(parts) != 3:
        raise Malformed("compact JWS must have three parts")
    header = b64url_decode(parts[0])
    payload = b64url_decode(parts[1])
    signature = b64url_decode(parts[2])
    return (parts[0] + "." + parts[1]).encode("ascii"), header, payload, signature


def check_header(
    unverified_header: dict[str, Any],
    *,
    expected_typ: str | None,
    allowed_members: frozenset[str],
    require_kid: bool,
) -> str:
    """Header checks in order: alg allow-list first, then crit, members, typ, kid.

    Returns the ``alg``: which of the two names it is matters only once the signature has
    passed (``TrustListClaims.require_current_algorithm``)."""
    alg = unverified_header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise AlgorithmNotAllowed(f"alg {alg!r} is not allowed")
    if "crit" in unverified_header:
        raise Malformed("crit header parameters are not understood")
    unknown = set(unverified_header) - allowed_members
    if unknown:
        raise Malformed(f"unexpected header members {sorted(unknown)}")
    if expected_typ is not None and unverified_header.get("typ") != expected_typ:
        raise Malformed(f"typ must be {expected_typ!r}")
    if require_kid:
        kid = unverified_header.get("kid")
        if not isinstance(kid, str) or not 1 <= len(kid) <= 64:
            raise Malformed("kid missing")
    return alg
