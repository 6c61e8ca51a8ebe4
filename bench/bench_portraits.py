"""P15: the sealed portrait bundle for a city (Yiwu's 24,591 cards, synthetic portraits).

Rows:
- bundle size (MB) for 24,591 people (an id and an svc slot each) beside the face-check
  images alone, unencrypted;
- first sync over real HTTP (verifier.portrait_bundle against uvicorn on 127.0.0.1, the
  manifest verified, the segment hashed and applied to SQLite) beside a plain HTTP
  download of the same bytes in the same run;
- a daily incremental sync (1% new people, 1% refreshed credentials) beside the plain
  download of its bytes;
- open + decode of one portrait at a check (slot from the signature, entry, blob, Pillow
  decode) beside Pillow decoding the same image unencrypted (target: under 2 ms).

Portraits are drawn (head, shoulders, noise), re-encoded by the authority's own
``face_check_rendition``; ``--quick`` uses 1,000 people.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.responses import Response
from PIL import Image, ImageDraw, features

from bench._table import BenchRow
from cardsvc.services.portrait_bundle import face_check_rendition
from keys import sign_portrait_manifest
from schemas import b64url_encode
from schemas.credential import portrait_digest
from schemas.portrait_bundle import (
    BLOB_ADDED,
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
from schemas.trust_list import TrustListClaims
from verifier.portrait_bundle import PortraitBundleStore, sync_portrait_bundle

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS)]
from kit.net import serving  # noqa: E402, I001
from support import DAY, ISSUER, ISSUER_KEY, NOW, World  # noqa: E402

CITY = 24_591
_DISTINCT = 1_500
_FORMAT = "AVIF" if features.check("avif") else "WebP" if features.check("webp") else "JPEG"


def _portrait(rng: random.Random) -> bytes:
    """A 480x640 JPEG like the authority stores: background, shoulders, head, noise."""
    image = Image.new("RGB", (480, 640), tuple(rng.randrange(150, 250) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40 + rng.randrange(40), 380, 440 - rng.randrange(40), 800),
                 fill=tuple(rng.randrange(20, 120) for _ in range(3)))
    draw.ellipse((140 + rng.randrange(30), 120 + rng.randrange(30), 340 - rng.randrange(30),
                  400 - rng.randrange(30)), fill=tuple(rng.randrange(90, 220) for _ in range(3)))
    # Texture coarse enough to survive the downscale, as skin, hair and cloth do.
    noise = Image.effect_noise((160, 214), 32 + rng.randrange(16)).convert("RGB").resize(
        (480, 640), Image.Resampling.BICUBIC)
    image = Image.blend(image, noise, 0.25)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


class _Person:
    __slots__ = ("blob_id", "digest", "image", "key", "signatures")

    def __init__(self, image: bytes, original: bytes) -> None:
        self.image = image
        self.digest = portrait_digest(original)
        self.blob_id = os.urandom(16)
        self.key = os.urandom(32)
        self.signatures = [os.urandom(64), os.urandom(64)]  # stand-ins for id and svc


def _added(people: list[_Person]) -> list[Record]:
    records = [Record(BLOB_ADDED, p.blob_id, seal_blob(p.digest + p.image, portrait_key=p.key,
                                                       blob_id=p.blob_id)) for p in people]
    for person in people:
        records.extend(_entries(person))
    return records


def _entries(person: _Person) -> list[Record]:
    out = []
    for signature in person.signatures:
        slot = derive_slot(signature, issuer=ISSUER)
        out.append(Record(ENTRY_ADDED, slot.index, wrap_entry(
            slot, portrait_key=person.key, blob_id=person.blob_id, issuer=ISSUER)))
    return out


class _Authority:
    def __init__(self) -> None:
        self.segments: list[bytes] = []
        self.plain = b""

    def manifest(self) -> str:
        refs = tuple(SegmentRef(n, b64url_encode(hashlib.sha256(b).digest()), len(b))
                     for n, b in enumerate(self.segments))
        return sign_portrait_manifest(ManifestClaims(ISSUER, len(self.segments), NOW,
                                                     NOW + 3 * DAY, refs), ISSUER_KEY)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/portrait-bundle/manifest")
        def manifest() -> Response:
            return Response(self.manifest(), media_type="application/jwt")

        @app.get("/v1/portrait-bundle/segments/{digest}")
        def segment(digest: str) -> Response:
            for body in self.segments:
                if b64url_encode(hashlib.sha256(body).digest()) == digest:
                    return Response(body, media_type="application/octet-stream")
            return Response(status_code=404)

        @app.get("/plain")
        def plain() -> Response:  # the floor: the same bytes, nothing checked or stored
            return Response(self.plain, media_type="application/octet-stream")

        return app


def _plain_download(url: str) -> float:
    start = time.perf_counter()
    with httpx.Client(timeout=300) as http, http.stream("GET", f"{url}/plain") as response:
        for _ in response.iter_bytes():
            pass
    return time.perf_counter() - start


def _sync(store: PortraitBundleStore, url: str, trust_list: TrustListClaims) -> float:
    start = time.perf_counter()
    sync_portrait_bundle(store, server=url, trust_list=trust_list, now=NOW, timeout=300)
    return time.perf_counter() - start


def _decode(image: bytes) -> None:
    with Image.open(io.BytesIO(image)) as decoded:
        decoded.load()


def run(quick: bool = False) -> list[BenchRow]:
    count = 1_000 if quick else CITY
    rng = random.Random("bench-portraits")
    # Distinct synthetic portraits (re-encoding 24,591 would take the whole machine for
    # a quarter of an hour); every person still has an own blob, key and ciphertext.
    distinct = [(face_check_rendition(o)[0], o) for o in
                (_portrait(rng) for _ in range(min(count, _DISTINCT)))]
    people = [_Person(*distinct[n % len(distinct)]) for n in range(count)]
    images_bytes = sum(len(p.image) for p in people)
    trust_list = World().state().trust_list
    authority = _Authority()
    authority.segments.append(encode_segment(0, _added(people)))
    bundle_bytes = len(authority.segments[0])
    daily = max(1, count // 100)
    newcomers = [_Person(*distinct[rng.randrange(len(distinct))]) for _ in range(daily)]
    refreshed = people[:daily]
    records = _added(newcomers)
    for person in refreshed:
        records += [Record(ENTRY_REMOVED, derive_slot(s, issuer=ISSUER).index)
                    for s in person.signatures]
        person.signatures = [os.urandom(64), os.urandom(64)]
        records += _entries(person)
    daily_segment = encode_segment(1, records)

    with tempfile.TemporaryDirectory(prefix="bench-portraits-") as temp, \
            serving(authority.app(), lifespan="off") as url:
        store = PortraitBundleStore(Path(temp) / "portrait-bundle")
        authority.plain = authority.segments[0]
        plain_first = _plain_download(url)
        first = _sync(store, url, trust_list)
        authority.segments.append(daily_segment)
        authority.plain = daily_segment
        plain_daily = _plain_download(url)
        incremental = _sync(store, url, trust_list)
        assert store.counts() == (2 * (count + daily), count + daily)

        # One check: the signature opens the slot; Pillow decodes what it opened.
        sample = rng.sample(people[daily:], min(300, count - daily))
        for person in sample[:5]:
            assert store.open(signature=person.signatures[0], issuer=ISSUER,
                              digest=person.digest, now=NOW) == person.image
        opened: list[float] = []
        plain: list[float] = []
        for _ in range(5):  # interleaved rounds
            start = time.perf_counter()
            for person in sample:
                image = store.open(signature=person.signatures[0], issuer=ISSUER,
                                   digest=person.digest, now=NOW)
                assert image is not None
                _decode(image)
            opened.append((time.perf_counter() - start) / len(sample) * 1e3)
            start = time.perf_counter()
            for person in sample:
                _decode(person.image)
            plain.append((time.perf_counter() - start) / len(sample) * 1e3)
        store.close()
    label = f"{count:,} people"
    return [
        BenchRow(f"portrait bundle size, {label} ({2 * count:,} slots)",
                 bundle_bytes / 1e6, "MB", "the face-check images alone, unencrypted",
                 images_bytes / 1e6),
        BenchRow(f"portrait bundle first sync over HTTP, {label}", first, "s",
                 "plain HTTP download of the same bytes", plain_first),
        BenchRow(f"portrait bundle daily sync (1% new, 1% refreshed), {label}", incremental,
                 "s", f"plain HTTP download of the same {len(daily_segment) / 1e6:.2f} MB",
                 plain_daily),
        BenchRow(f"portrait at a check: open + decode ({_FORMAT} 240x320)",
                 statistics.median(opened), "ms", "Pillow decode of the same image alone",
                 statistics.median(plain)),
    ]
