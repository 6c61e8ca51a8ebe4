"""The sealed portrait bundle the authority publishes beside the status lists (P15).

When a bundle is signed for a phone, every credential carrying ``pd`` gets a slot
(``record_credentials``): its index and key come from its issuer signature
(schemas/portrait_bundle.py), its entry wraps the key of the person's sealed portrait.
The person's portrait is sealed once, as a face-check rendition (240x320, AVIF or WebP
when Pillow has them, JPEG otherwise) prefixed by the original's ``pd`` that counters compare.

``publish`` turns whatever changed since the last segment (new slots, slots of replaced
or revoked credentials, blobs nobody uses any more) into one new immutable segment and
signs a manifest of version + 1; with nothing new it only re-signs a manifest past half
its life.

Example::

    record_credentials(session, card=card, credentials=bundle.credentials,
                       issuer=settings.issuer, now=now)
    signed = publish(session, keyring=keyring, issuer=settings.issuer, now=now,
                     lifetime_seconds=86_400)
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from datetime import datetime

from PIL import Image, features
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

import keys as keylib
from cardsvc.models import (
    Card,
    Person,
    Portrait,
    PortraitBlob,
    PortraitBundleState,
    PortraitSegment,
    PortraitSlot,
)
from cardsvc.services._locking import for_update
from cardsvc.services.errors import NotFound
from cardsvc.services.sealing import sealer_of
from cardsvc.services.trust import Keyring, SignedObject, active_signer, signing_alg
from schemas import b64url_decode, b64url_encode
from schemas.portrait_bundle import (
    BLOB_ADDED,
    BLOB_ID_BYTES,
    BLOB_REMOVED,
    ENTRY_ADDED,
    ENTRY_REMOVED,
    ManifestClaims,
    Record,
    SegmentRef,
    derive_slot,
    encode_segment,
    seal_blob,
    wrap_entry,
)

__all__ = ["cached_manifest", "face_check_rendition", "publish", "record_credentials",
           "segment_body"]

FACE_CHECK_BOX = (240, 320)
_PURPOSES_WITH_PD = ("id", "svc")


def face_check_rendition(jpeg: bytes) -> tuple[bytes, str]:
    """(image bytes, media type): the portrait at face-check size; AVIF when Pillow has it
    (about 5 KB, decoded in under a millisecond), else WebP, else JPEG."""
    with Image.open(io.BytesIO(jpeg)) as image:
        rgb = image.convert("RGB")
    rgb.thumbnail(FACE_CHECK_BOX, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if features.check("avif"):
        rgb.save(out, format="AVIF", quality=50, speed=8)
        return out.getvalue(), "image/avif"
    if features.check("webp"):
        rgb.save(out, format="WEBP", quality=70, method=4)
        return out.getvalue(), "image/webp"
    rgb.save(out, format="JPEG", quality=75, optimize=True)
    return out.getvalue(), "image/jpeg"


def _blob_for(session: Session, person: Person, now: datetime) -> PortraitBlob | None:
    digest = person.portrait_digest
    if digest is None:
        return None
    blob = session.scalar(select(PortraitBlob).where(
        PortraitBlob.digest == digest, PortraitBlob.removed_seq.is_(None)))
    if blob is not None:
        return blob
    portrait = session.get(Portrait, digest)
    if portrait is None:
        return None
    image, _ = face_check_rendition(portrait.jpeg)
    blob_id, portrait_key = os.urandom(BLOB_ID_BYTES), os.urandom(32)
    # The portrait key opens the face-check rendition: sealed at rest like the portrait
    # itself (P13), so a copy of the database alone opens no face.
    sealed_key = sealer_of(session).seal(portrait_key, table="portrait_blobs",
                                         column="portrait_key", row=blob_id.hex())
    blob = PortraitBlob(blob_id=blob_id, digest=digest, portrait_key=sealed_key,
                        sealed=seal_blob(b64url_decode(digest) + image,
                                         portrait_key=portrait_key, blob_id=blob_id),
                        created_at=now)
    session.add(blob)
    return blob


def _portrait_key(session: Session, blob: PortraitBlob) -> bytes:
    return sealer_of(session).open(blob.portrait_key, table="portrait_blobs",
                                   column="portrait_key", row=blob.blob_id.hex())


_RETIRE_SLOTS = (update(PortraitSlot)
                 .where(PortraitSlot.card_id == bindparam("of_card"),
                        PortraitSlot.live.is_(True))
                 .values(live=False))


def record_credentials(
    session: Session, *, card: Card, credentials: Mapping[str, str], issuer: str,
    now: datetime, first: bool = False,
) -> int:
    """Give each just-signed credential carrying ``pd`` a slot; the card's older slots are
    retired (its phone holds only the new credentials). ``first``: the card never held
    credentials before (never provisioned), so it has no slots to retire. Returns the
    slots added."""
    if not first:
        session.connection().execute(_RETIRE_SLOTS, {"of_card": card.id})
    blob = _blob_for(session, card.person, now)
    if blob is None:
        return 0
    added = 0
    for purpose in _PURPOSES_WITH_PD:
        jwt = credentials.get(purpose)
        if jwt is None:
            continue
        slot = derive_slot(b64url_decode(jwt.rsplit(".", 1)[1]), issuer=issuer)
        entry = wrap_entry(slot, portrait_key=_portrait_key(session, blob),
                           blob_id=blob.blob_id, issuer=issuer)
        existing = session.get(PortraitSlot, slot.index)
        if existing is None:
            session.add(PortraitSlot(index=slot.index, card_id=card.id, blob_id=blob.blob_id,
                                     entry=entry, live=True, created_at=now))
        else:
            # Ed25519 is deterministic: the same credential signed again in the same second
            # (a refresh right after another) has the same signature, hence the same slot.
            if existing.removed_seq is not None or existing.blob_id != blob.blob_id:
                existing.added_seq = existing.removed_seq = None  # published again
                existing.blob_id, existing.entry = blob.blob_id, entry
            existing.live = True
        added += 1
    session.flush()
    return added


def _state(session: Session) -> PortraitBundleState:
    state = session.scalar(for_update(select(PortraitBundleState)))
    if state is None:
        state = PortraitBundleState(id=1, version=0, signed_jwt=None, issued_at=0, expires_at=0)
        session.add(state)
        session.flush()
    return state


def cached_manifest(
    session: Session, *, now: datetime, lifetime_seconds: int, batch_seconds: int = 0,
) -> SignedObject | None:
    """The last manifest while it is in the first half of its life and either nothing is
    pending or it is younger than ``batch_seconds`` (changes are gathered into one segment
    per batch, however often counters poll)."""
    state = session.get(PortraitBundleState, 1)
    epoch = int(now.timestamp())
    if state is None or state.signed_jwt is None:
        return None
    if epoch - state.issued_at >= lifetime_seconds // 2:
        return None
    if epoch - state.issued_at >= batch_seconds and _pending(session):
        return None
    return SignedObject.of(state.signed_jwt, state.issued_at)


def _pending(session: Session) -> bool:
    return session.scalar(select(PortraitSlot.index).where(
        (PortraitSlot.live.is_(True) & PortraitSlot.added_seq.is_(None))
        | (PortraitSlot.live.is_(False) & PortraitSlot.added_seq.is_not(None)
           & PortraitSlot.removed_seq.is_(None))).limit(1)) is not None or session.scalar(
        select(Card.id).join(PortraitSlot, PortraitSlot.card_id == Card.id).where(
            Card.state == "revoked", PortraitSlot.live.is_(True)).limit(1)) is not None


def publish(
    session: Session, *, keyring: Keyring, issuer: str, now: datetime, lifetime_seconds: int,
) -> SignedObject:
    """Write a segment for what changed (if anything) and sign the manifest naming all."""
    state = _state(session)  # locked: one publisher at a time
    epoch = int(now.timestamp())
    # Revoked cards leave the bundle.
    revoked = select(Card.id).where(Card.state == "revoked").scalar_subquery()
    session.execute(update(PortraitSlot).where(
        PortraitSlot.live.is_(True), PortraitSlot.card_id.in_(revoked)).values(live=False))
    last = session.scalar(select(PortraitSegment.seq).order_by(PortraitSegment.seq.desc())
                          .limit(1))
    seq = 0 if last is None else last + 1
    records: list[Record] = []
    removed_slots = session.scalars(select(PortraitSlot).where(
        PortraitSlot.live.is_(False), PortraitSlot.added_seq.is_not(None),
        PortraitSlot.removed_seq.is_(None)).order_by(PortraitSlot.index)).all()
    for slot in removed_slots:
        records.append(Record(ENTRY_REMOVED, slot.index))
        slot.removed_seq = seq
    never_published = session.scalars(select(PortraitSlot).where(
        PortraitSlot.live.is_(False), PortraitSlot.added_seq.is_(None))).all()
    for slot in never_published:  # replaced before any counter saw it
        slot.added_seq = slot.removed_seq = -1
    new_slots = session.scalars(select(PortraitSlot).where(
        PortraitSlot.live.is_(True), PortraitSlot.added_seq.is_(None))
        .order_by(PortraitSlot.index)).all()
    new_blob_ids = {slot.blob_id for slot in new_slots}
    for blob in session.scalars(select(PortraitBlob).where(
            PortraitBlob.added_seq.is_(None)).order_by(PortraitBlob.blob_id)):
        if blob.blob_id in new_blob_ids:
            records.append(Record(BLOB_ADDED, blob.blob_id, blob.sealed))
            blob.added_seq = seq
    for slot in new_slots:
        records.append(Record(ENTRY_ADDED, slot.index, slot.entry))
        slot.added_seq = seq
    session.flush()
    used = select(PortraitSlot.blob_id).where(PortraitSlot.live.is_(True))
    for blob in session.scalars(select(PortraitBlob).where(
            PortraitBlob.added_seq.is_not(None), PortraitBlob.added_seq >= 0,
            PortraitBlob.removed_seq.is_(None), PortraitBlob.blob_id.not_in(used))):
        records.append(Record(BLOB_REMOVED, blob.blob_id))
        blob.removed_seq = seq
    if records:
        body = encode_segment(seq, records)
        session.add(PortraitSegment(seq=seq, sha256=b64url_encode(hashlib.sha256(body).digest()),
                                    body=body, created_at=now))
        session.flush()
    elif (state.signed_jwt is not None
          and epoch - state.issued_at < lifetime_seconds // 2):
        return SignedObject.of(state.signed_jwt, state.issued_at)
    refs = tuple(SegmentRef(n, h, z) for n, h, z in session.execute(
        select(PortraitSegment.seq, PortraitSegment.sha256, func.length(PortraitSegment.body))
        .order_by(PortraitSegment.seq)))
    claims = ManifestClaims(issuer, state.version + 1, epoch, epoch + lifetime_seconds, refs)
    signer = active_signer(session, keyring=keyring)
    state.signed_jwt = keylib.sign_portrait_manifest(claims, signer,
                                                     alg=signing_alg(session, now=now))
    state.version, state.issued_at, state.expires_at = claims.version, epoch, claims.expires_at
    session.flush()
    return SignedObject.of(state.signed_jwt, state.issued_at)


def segment_body(session: Session, *, sha256: str) -> bytes:
    body = session.scalar(select(PortraitSegment.body).where(PortraitSegment.sha256 == sha256))
    if body is None:
        raise NotFound("PORTRAIT_SEGMENT_NOT_FOUND", "no portrait bundle segment with this hash")
    return body
