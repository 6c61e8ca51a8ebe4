"""The authority's sealed portrait bundle (P15): slots at signing, segments and a signed
manifest at publication, refreshed and revoked credentials leaving it (SQLite, PostgreSQL)."""

from __future__ import annotations

import hashlib
from typing import Any

from cardsvc_kit import Authority, b64, device_key, portrait_bytes

from schemas import b64url_decode, b64url_encode
from schemas.portrait_bundle import (
    BLOB_ADDED,
    ENTRY_ADDED,
    ENTRY_REMOVED,
    derive_slot,
    open_blob,
    parse_segment,
    unwrap_entry,
)
from schemas.provisioning import refresh_proof_message
from verifier.portrait_bundle import _check_manifest


def _bundle(authority: Authority) -> tuple[Any, list[bytes]]:
    authority.clock.advance(authority.settings.status_ttl_seconds)  # past the batch time
    trust_list = authority.state().trust_list
    jwt = authority.client.get("/v1/portrait-bundle/manifest").text
    claims = _check_manifest(jwt, trust_list, authority.clock.epoch)
    bodies = []
    for ref in claims.segments:
        body = authority.client.get(f"/v1/portrait-bundle/segments/{ref.sha256}").content
        assert b64url_encode(hashlib.sha256(body).digest()) == ref.sha256
        bodies.append(body)
    return claims, bodies


def _open(bodies: list[bytes], jws: str, issuer: str) -> bytes | None:
    """Replays the segments and opens the credential's portrait, as a counter would."""
    entries: dict[bytes, bytes] = {}
    blobs: dict[bytes, bytes] = {}
    for n, body in enumerate(bodies):
        for record in parse_segment(body, seq=n):
            if record.kind == ENTRY_ADDED:
                entries[record.key] = record.value
            elif record.kind == ENTRY_REMOVED:
                entries.pop(record.key)
            elif record.kind == BLOB_ADDED:
                blobs[record.key] = record.value
            else:
                blobs.pop(record.key)
    slot = derive_slot(b64url_decode(jws.rsplit(".", 1)[1]), issuer=issuer)
    if slot.index not in entries:
        return None
    key, blob_id = unwrap_entry(slot, entries[slot.index], issuer=issuer)
    return open_blob(blobs[blob_id], portrait_key=key, blob_id=blob_id)


def test_credentials_with_a_portrait_open_it_until_replaced_or_revoked(
        authority: Authority) -> None:
    issuer = authority.settings.issuer
    device = device_key(40)
    bundle = authority.card_with_phone(device, portrait=b64(portrait_bytes("PNG", (300, 400))))
    without = authority.card_with_phone(device_key(41))  # no portrait: no slot
    claims, bodies = _bundle(authority)
    assert claims.version == 1 and len(bodies) == 1
    pd = b64url_decode(bundle["holder"]["portrait_digest"])
    for purpose in ("id", "svc"):
        image = _open(bodies, bundle["credentials"][purpose], issuer)
        assert image is not None and image[:16] == pd
        assert image[20:24] == b"ftyp" or image[16:20] == b"RIFF" or image[16:19] == b"\xff\xd8\xff"
    assert _open(bodies, without["credentials"]["id"], issuer) is None
    assert _open(bodies, bundle["credentials"]["pay"], issuer) is None  # pay carries no pd
    again, _ = _bundle(authority)
    assert again.version == 1  # nothing changed: the same manifest

    # The phone refreshes: its new credentials get slots, the old ones leave the bundle.
    authority.clock.advance(60)
    now = authority.clock.epoch
    proof = device.sign(refresh_proof_message(bundle["card_number"], device.public_key, now))
    refreshed = authority.client.post("/v1/wallet/refresh", json={
        "card_number": bundle["card_number"], "device_key": b64url_encode(device.public_key),
        "time": now, "proof": b64url_encode(proof)})
    assert refreshed.status_code == 200, refreshed.text
    claims, bodies = _bundle(authority)
    assert claims.version == 2 and len(bodies) == 2
    assert _open(bodies, bundle["credentials"]["id"], issuer) is None
    assert _open(bodies, refreshed.json()["credentials"]["id"], issuer) is not None
    assert len(bodies[1]) < len(bodies[0]) + 200  # the sealed portrait is not sent again

    # Revoked: the card's slots and its (now unused) portrait leave the bundle.
    authority.revoke(bundle["card_number"])
    claims, bodies = _bundle(authority)
    assert claims.version == 3
    assert _open(bodies, refreshed.json()["credentials"]["id"], issuer) is None
    kinds = [r.kind for r in parse_segment(bodies[2], seq=2)]
    assert kinds.count(ENTRY_REMOVED) == 2 and BLOB_ADDED not in kinds


def test_segments_answer_ranges_and_unknown_ones_are_404(authority: Authority) -> None:
    authority.card_with_phone(device_key(42), portrait=b64(portrait_bytes("JPEG")))
    claims, bodies = _bundle(authority)
    url = f"/v1/portrait-bundle/segments/{claims.segments[0].sha256}"
    part = authority.client.get(url, headers={"Range": "bytes=10-"})
    assert part.status_code == 206 and part.content == bodies[0][10:]
    past = authority.client.get(url, headers={"Range": f"bytes={len(bodies[0])}-"})
    assert past.status_code == 416
    missing = authority.client.get("/v1/portrait-bundle/segments/" + "A" * 43)
    assert missing.status_code == 404
    assert missing.json()["code"] == "PORTRAIT_SEGMENT_NOT_FOUND"
    assert authority.client.get("/v1/portrait-bundle/segments/short").status_code == 422


def test_changes_are_gathered_into_one_segment_per_batch(authority: Authority) -> None:
    authority.card_with_phone(device_key(43), portrait=b64(portrait_bytes("JPEG")))
    first, _ = _bundle(authority)
    second_card = authority.card_with_phone(device_key(44), portrait=b64(portrait_bytes()))
    third_card = authority.card_with_phone(device_key(45), portrait=b64(portrait_bytes()))
    soon = authority.client.get("/v1/portrait-bundle/manifest").text  # within the batch
    claims = _check_manifest(soon, authority.state().trust_list, authority.clock.epoch)
    assert claims.version == first.version
    later, bodies = _bundle(authority)  # the batch time has passed
    assert later.version == first.version + 1 and len(bodies) == len(first.segments) + 1
    issuer = authority.settings.issuer
    assert _open(bodies, second_card["credentials"]["id"], issuer) is not None
    assert _open(bodies, third_card["credentials"]["svc"], issuer) is not None


def _refresh(authority: Authority, card_number: str, device: Any) -> dict[str, Any]:
    now = authority.clock.epoch
    proof = device.sign(refresh_proof_message(card_number, device.public_key, now))
    answer = authority.client.post("/v1/wallet/refresh", json={
        "card_number": card_number, "device_key": b64url_encode(device.public_key),
        "time": now, "proof": b64url_encode(proof)})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_same_credential_signed_twice_keeps_one_slot(authority: Authority) -> None:
    """Ed25519 is deterministic: two refreshes in one second sign the same credential."""
    device = device_key(46)
    bundle = authority.card_with_phone(device, portrait=b64(portrait_bytes()))
    _bundle(authority)
    first = _refresh(authority, bundle["card_number"], device)
    second = _refresh(authority, bundle["card_number"], device)
    assert first["credentials"]["id"] == second["credentials"]["id"]
    _, bodies = _bundle(authority)
    assert _open(bodies, second["credentials"]["id"], authority.settings.issuer) is not None
    third = _refresh(authority, bundle["card_number"], device)  # later: a new slot
    _, bodies = _bundle(authority)
    assert _open(bodies, third["credentials"]["id"], authority.settings.issuer) is not None


def test_the_portrait_keys_are_sealed_at_rest(authority: Authority) -> None:
    """P13 x P15: a copy of the database alone opens no face-check rendition either."""
    from cardsvc.models import PortraitBlob
    from cardsvc.services.sealing import sealer_of

    authority.card_with_phone(device_key(45), portrait=b64(portrait_bytes("PNG", (300, 400))))

    def stored(session: Any) -> list[tuple[bytes, bytes, bytes]]:
        rows = session.query(PortraitBlob).all()
        return [(row.blob_id, row.portrait_key, sealer_of(session).open(
            row.portrait_key, table="portrait_blobs", column="portrait_key",
            row=row.blob_id.hex())) for row in rows]

    rows = authority.database.transact(stored, readonly=True)
    assert rows
    for blob_id, at_rest, key in rows:
        assert len(key) == 32 and key not in at_rest and len(at_rest) > 32, blob_id
