"""The sealed portrait bundle (P15): portraits a counter can open only for a presented code.

Every credential that carries ``pd`` owns one *slot*, derived from its issuer signature
(64 bytes, known only to whoever saw the code) with HKDF-SHA256::

    okm = HKDF-SHA256(ikm=signature, salt="fmc-portraits/1", info="slot" 0x00 issuer, L=48)
    index = okm[:16]          # where the slot is in the bundle (reveals nothing)
    slot_key = okm[16:48]     # ChaCha20-Poly1305 key of the slot's entry

A portrait is sealed once, under a random 32-byte portrait key, as a *blob* with a random
16-byte id (never ``pd``: a bundle holder with a candidate photo must not be able to look
it up). A slot's *entry* wraps ``portrait key || blob id`` under the slot key, with the
index and the issuer as associated data, so an entry cannot be moved to another index and
the bundle alone does not even say which entries share a blob.

The bundle travels as numbered, content-addressed *segments* (each a delta: entries and
blobs added or removed) named by a signed manifest (typ ``fmc-portraits+jwt``) whose
version only goes up. Segment layout (big-endian)::

    "FMCPSEG1" | seq u32 | records...
    0x01 index(16) entry(76)        entry added   (entry = nonce 12 | ciphertext 48 | tag 16)
    0x02 index(16)                  entry removed
    0x03 blob_id(16) len u32 sealed blob added    (sealed = nonce 12 | ciphertext | tag 16)
    0x04 blob_id(16)                blob removed

Example::

    slot = derive_slot(signature, issuer="https://yiwu.example")
    entry = wrap_entry(slot, portrait_key=k, blob_id=b, issuer="https://yiwu.example")
    key, blob_id = unwrap_entry(slot, entry, issuer="https://yiwu.example")
    image = open_blob(sealed, portrait_key=key, blob_id=blob_id)
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from schemas.codes import Malformed

__all__ = [
    "BLOB_ID_BYTES",
    "ENTRY_BYTES",
    "FORMAT",
    "INDEX_BYTES",
    "MAX_BLOB_BYTES",
    "PORTRAIT_BUNDLE_TYP",
    "SEGMENT_MAGIC",
    "ManifestClaims",
    "Record",
    "SegmentRef",
    "Slot",
    "derive_slot",
    "encode_segment",
    "open_blob",
    "parse_segment",
    "seal_blob",
    "unwrap_entry",
    "wrap_entry",
]

FORMAT = "fmc-portraits/1"
PORTRAIT_BUNDLE_TYP = "fmc-portraits+jwt"
SEGMENT_MAGIC = b"FMCPSEG1"
INDEX_BYTES = 16
BLOB_ID_BYTES = 16
_KEY_BYTES = 32
_NONCE = 12
_TAG = 16
ENTRY_BYTES = _NONCE + _KEY_BYTES + BLOB_ID_BYTES + _TAG  # 76
MAX_BLOB_BYTES = 512 * 1024  # a face-check image is tens of KB
MAX_SEGMENTS = 100_000

ENTRY_ADDED, ENTRY_REMOVED, BLOB_ADDED, BLOB_REMOVED = 1, 2, 3, 4
_FORMAT_BYTES = FORMAT.encode("ascii")


@dataclass(frozen=True, slots=True)
class Slot:
    index: bytes
    key: bytes


def derive_slot(signature: bytes, *, issuer: str) -> Slot:
    """The slot of the credential whose issuer signature is ``signature``."""
    if len(signature) != 64:
        raise ValueError("an Ed25519 signature is 64 bytes")
    okm = HKDF(algorithm=hashes.SHA256(), length=INDEX_BYTES + _KEY_BYTES,
               salt=_FORMAT_BYTES, info=b"slot\x00" + issuer.encode("utf-8")).derive(signature)
    return Slot(okm[:INDEX_BYTES], okm[INDEX_BYTES:])


def _entry_ad(index: bytes, issuer: str) -> bytes:
    return _FORMAT_BYTES + b"\x00entry\x00" + index + issuer.encode("utf-8")


def wrap_entry(slot: Slot, *, portrait_key: bytes, blob_id: bytes, issuer: str) -> bytes:
    if len(portrait_key) != _KEY_BYTES or len(blob_id) != BLOB_ID_BYTES:
        raise ValueError("a portrait key is 32 bytes and a blob id 16")
    nonce = os.urandom(_NONCE)
    return nonce + ChaCha20Poly1305(slot.key).encrypt(
        nonce, portrait_key + blob_id, _entry_ad(slot.index, issuer))


def unwrap_entry(slot: Slot, unverified_entry: bytes, *, issuer: str) -> tuple[bytes, bytes]:
    """(portrait key, blob id); raises Malformed when the entry does not open."""
    if len(unverified_entry) != ENTRY_BYTES:
        raise Malformed("a portrait entry has the wrong size")
    try:
        plain = ChaCha20Poly1305(slot.key).decrypt(
            unverified_entry[:_NONCE], unverified_entry[_NONCE:], _entry_ad(slot.index, issuer))
    except InvalidTag:
        raise Malformed("the portrait entry does not open with this credential") from None
    return plain[:_KEY_BYTES], plain[_KEY_BYTES:]


def _blob_ad(blob_id: bytes) -> bytes:
    return _FORMAT_BYTES + b"\x00blob\x00" + blob_id


def seal_blob(image: bytes, *, portrait_key: bytes, blob_id: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + ChaCha20Poly1305(portrait_key).encrypt(nonce, image, _blob_ad(blob_id))


def open_blob(unverified_sealed: bytes, *, portrait_key: bytes, blob_id: bytes) -> bytes:
    if len(unverified_sealed) < _NONCE + _TAG:
        raise Malformed("a sealed portrait is too short")
    try:
        return ChaCha20Poly1305(portrait_key).decrypt(
            unverified_sealed[:_NONCE], unverified_sealed[_NONCE:], _blob_ad(blob_id))
    except InvalidTag:
        raise Malformed("the sealed portrait does not open") from None


@dataclass(frozen=True, slots=True)
class Record:
    kind: int  # ENTRY_ADDED, ENTRY_REMOVED, BLOB_ADDED, BLOB_REMOVED
    key: bytes  # the index or the blob id
    value: bytes = b""  # the entry or the sealed blob


def encode_segment(seq: int, records: list[Record]) -> bytes:
    out = [SEGMENT_MAGIC, struct.pack(">I", seq)]
    for record in records:
        out.append(bytes([record.kind]) + record.key)
        if record.kind == ENTRY_ADDED:
            out.append(record.value)
        elif record.kind == BLOB_ADDED:
            out.append(struct.pack(">I", len(record.value)) + record.value)
    return b"".join(out)


def parse_segment(unverified_body: bytes, *, seq: int) -> Iterator[Record]:
    """The records of one segment (whose sha-256 the manifest named); Malformed otherwise."""
    body = memoryview(unverified_body)
    if bytes(body[:8]) != SEGMENT_MAGIC or len(body) < 12:
        raise Malformed("not a portrait bundle segment")
    if struct.unpack(">I", body[8:12])[0] != seq:
        raise Malformed("the segment has another sequence number than the manifest says")
    pos = 12
    end = len(body)
    while pos < end:
        kind = body[pos]
        key = bytes(body[pos + 1:pos + 17])
        pos += 17
        if len(key) != 16:
            raise Malformed("a segment record is truncated")
        if kind == ENTRY_ADDED:
            value = bytes(body[pos:pos + ENTRY_BYTES])
            pos += ENTRY_BYTES
            if len(value) != ENTRY_BYTES:
                raise Malformed("a segment entry is truncated")
            yield Record(kind, key, value)
        elif kind == BLOB_ADDED:
            if pos + 4 > end:
                raise Malformed("a segment blob is truncated")
            size = struct.unpack(">I", body[pos:pos + 4])[0]
            pos += 4
            if size > MAX_BLOB_BYTES or pos + size > end:
                raise Malformed("a segment blob is too large or truncated")
            yield Record(kind, key, bytes(body[pos:pos + size]))
            pos += size
        elif kind in (ENTRY_REMOVED, BLOB_REMOVED):
            yield Record(kind, key)
        else:
            raise Malformed("unknown segment record")


@dataclass(frozen=True, slots=True)
class SegmentRef:
    seq: int
    sha256: str  # base64url of the body's SHA-256
    size: int


@dataclass(frozen=True, slots=True)
class ManifestClaims:
    """Claims of the signed manifest. Segments run without gaps from ``segments[0].seq``."""

    issuer: str
    version: int
    issued_at: int
    expires_at: int
    segments: tuple[SegmentRef, ...]

    def to_payload(self) -> dict[str, Any]:
        return {
            "iss": self.issuer, "fmt": FORMAT, "ver": self.version, "iat": self.issued_at,
            "exp": self.expires_at,
            "segs": [{"n": s.seq, "h": s.sha256, "z": s.size} for s in self.segments],
        }

    @staticmethod
    def from_payload(payload: dict[str, Any]) -> ManifestClaims:
        try:
            issuer, fmt, version = payload["iss"], payload["fmt"], payload["ver"]
            iat, exp, segs = payload["iat"], payload["exp"], payload["segs"]
        except (KeyError, TypeError) as exc:
            raise Malformed("portrait manifest claims missing") from exc
        if fmt != FORMAT:
            raise Malformed("unknown portrait bundle format")
        if not isinstance(issuer, str) or not isinstance(segs, list):
            raise Malformed("portrait manifest claims have the wrong type")
        for value in (version, iat, exp):
            if type(value) is not int or value < 0:
                raise Malformed("portrait manifest numbers must be non-negative integers")
        if len(segs) > MAX_SEGMENTS:
            raise Malformed("too many segments")
        refs: list[SegmentRef] = []
        for item in segs:
            if not isinstance(item, dict):
                raise Malformed("a segment reference is not an object")
            seq, digest, size = item.get("n"), item.get("h"), item.get("z")
            if (type(seq) is not int or type(size) is not int or seq < 0 or size < 12
                    or not isinstance(digest, str) or len(digest) != 43):
                raise Malformed("a segment reference is malformed")
            if refs and seq != refs[-1].seq + 1:
                raise Malformed("segments must be numbered without gaps")
            refs.append(SegmentRef(seq, digest, size))
        return ManifestClaims(issuer, version, iat, exp, tuple(refs))
