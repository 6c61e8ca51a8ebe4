"""The sealed portrait bundle's format (P15): slots, entries, blobs, segments, manifest."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest

from schemas import b64url_encode
from schemas.codes import Malformed
from schemas.portrait_bundle import (
    BLOB_ADDED,
    BLOB_REMOVED,
    ENTRY_ADDED,
    ENTRY_BYTES,
    ENTRY_REMOVED,
    SEGMENT_MAGIC,
    ManifestClaims,
    Record,
    SegmentRef,
    derive_slot,
    encode_segment,
    open_blob,
    parse_segment,
    seal_blob,
    unwrap_entry,
    wrap_entry,
)

SIGNATURE = bytes(range(64))
OTHER_SIGNATURE = bytes(range(1, 65))
ISSUER = "CN-YW"
KEY = bytes(range(100, 132))
BLOB_ID = bytes(range(16))


def test_a_slot_is_a_function_of_the_signature_and_the_issuer() -> None:
    slot = derive_slot(SIGNATURE, issuer=ISSUER)
    assert len(slot.index) == 16 and len(slot.key) == 32
    assert derive_slot(SIGNATURE, issuer=ISSUER) == slot
    assert derive_slot(OTHER_SIGNATURE, issuer=ISSUER).index != slot.index
    assert derive_slot(SIGNATURE, issuer="CN-HZ").index != slot.index
    assert slot.key not in (slot.index, SIGNATURE[:32], SIGNATURE[32:])
    with pytest.raises(ValueError):
        derive_slot(SIGNATURE[:63], issuer=ISSUER)


def test_an_entry_opens_only_with_its_own_slot_and_at_its_own_index() -> None:
    slot = derive_slot(SIGNATURE, issuer=ISSUER)
    entry = wrap_entry(slot, portrait_key=KEY, blob_id=BLOB_ID, issuer=ISSUER)
    assert len(entry) == ENTRY_BYTES
    assert unwrap_entry(slot, entry, issuer=ISSUER) == (KEY, BLOB_ID)
    other = derive_slot(OTHER_SIGNATURE, issuer=ISSUER)
    moved = type(slot)(other.index, slot.key)  # the entry copied to another index
    for wrong_slot, issuer in ((other, ISSUER), (moved, ISSUER), (slot, "CN-HZ")):
        with pytest.raises(Malformed):
            unwrap_entry(wrong_slot, entry, issuer=issuer)
    flipped = entry[:20] + bytes([entry[20] ^ 1]) + entry[21:]
    with pytest.raises(Malformed):
        unwrap_entry(slot, flipped, issuer=ISSUER)
    with pytest.raises(Malformed):
        unwrap_entry(slot, entry[:-1], issuer=ISSUER)


def test_a_blob_opens_only_with_its_key_and_id() -> None:
    sealed = seal_blob(b"image", portrait_key=KEY, blob_id=BLOB_ID)
    assert b"image" not in sealed
    assert open_blob(sealed, portrait_key=KEY, blob_id=BLOB_ID) == b"image"
    for key, blob_id, body in ((bytes(32), BLOB_ID, sealed), (KEY, bytes(16), sealed),
                               (KEY, BLOB_ID, sealed[:-1]), (KEY, BLOB_ID, b"short")):
        with pytest.raises(Malformed):
            open_blob(body, portrait_key=key, blob_id=blob_id)


RECORDS = [
    Record(ENTRY_ADDED, bytes(16), bytes(ENTRY_BYTES)),
    Record(BLOB_ADDED, bytes([1]) * 16, b"sealed portrait"),
    Record(ENTRY_REMOVED, bytes([2]) * 16),
    Record(BLOB_REMOVED, bytes([3]) * 16),
]


def test_a_segment_round_trips() -> None:
    body = encode_segment(7, RECORDS)
    assert body.startswith(SEGMENT_MAGIC)
    assert list(parse_segment(body, seq=7)) == RECORDS


_GOOD = encode_segment(7, RECORDS)


@pytest.mark.parametrize("body, seq", [
    (b"", 7),
    (b"NOTASEG!" + struct.pack(">I", 7), 7),
    (_GOOD, 8),  # another number than the manifest gives it
    (_GOOD[:-1], 7),  # truncated removal
    (_GOOD[:12 + 17 + 10], 7),  # truncated entry
    (SEGMENT_MAGIC + struct.pack(">I", 7) + b"\x09" + bytes(16), 7),  # unknown record
    (SEGMENT_MAGIC + struct.pack(">I", 7) + b"\x03" + bytes(16) + struct.pack(">I", 99)
     + b"x", 7),  # blob longer than the segment
    (SEGMENT_MAGIC + struct.pack(">I", 7) + b"\x03" + bytes(16)
     + struct.pack(">I", 1 << 30), 7),  # blob over the cap
])
def test_a_malformed_segment_is_refused(body: bytes, seq: int) -> None:
    with pytest.raises(Malformed):
        list(parse_segment(body, seq=seq))


def _payload(**overrides: Any) -> dict[str, Any]:
    digest = b64url_encode(hashlib.sha256(b"x").digest())
    payload: dict[str, Any] = {
        "iss": ISSUER, "fmt": "fmc-portraits/1", "ver": 3, "iat": 10, "exp": 20,
        "segs": [{"n": 4, "h": digest, "z": 100}, {"n": 5, "h": digest, "z": 12}],
    }
    payload.update(overrides)
    return payload


def test_a_manifest_round_trips() -> None:
    claims = ManifestClaims.from_payload(_payload())
    assert claims.version == 3 and claims.segments[0] == SegmentRef(4, claims.segments[0].sha256,
                                                                     100)
    assert ManifestClaims.from_payload(claims.to_payload()) == claims


_DIGEST = b64url_encode(hashlib.sha256(b"x").digest())


@pytest.mark.parametrize("overrides", [
    {"fmt": "fmc-portraits/2"},
    {"ver": -1},
    {"ver": "3"},
    {"exp": 1.5},
    {"iss": 7},
    {"segs": {}},
    {"segs": [7]},
    {"segs": [{"n": 1, "h": _DIGEST, "z": 100}, {"n": 3, "h": _DIGEST, "z": 100}]},  # gap
    {"segs": [{"n": 1, "h": "short", "z": 100}]},
    {"segs": [{"n": 1, "h": _DIGEST, "z": 3}]},  # smaller than a segment header
    {"segs": [{"n": True, "h": _DIGEST, "z": 100}]},
])
def test_a_malformed_manifest_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(Malformed):
        ManifestClaims.from_payload(_payload(**overrides))


def test_a_manifest_missing_a_claim_is_refused() -> None:
    payload = _payload()
    del payload["exp"]
    with pytest.raises(Malformed):
        ManifestClaims.from_payload(payload)
