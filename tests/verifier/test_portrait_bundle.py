"""The sealed portrait bundle at the counter (P15), over real HTTP against a fake authority:
incremental and resumable sync, every refusal, the privacy promise, offline portraits in
`verifier check` and on the counter page, the online fetch only when configured."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from federation_kit import federation, hangzhou, yiwu
from test_counter import PORTRAIT, qr_png
from test_sync_authority import FakeAuthority, running
from typer.testing import CliRunner

from keys import Ed25519Signer, sign_credential, sign_presentation
from keys.jws import sign_compact, sign_portrait_manifest
from schemas import Purpose, StatusRef, b64url_encode
from schemas._jose import b64url_decode, dump_json
from schemas.codes import Malformed
from schemas.credential import portrait_digest
from schemas.federation import IssuerState
from schemas.portrait_bundle import (
    BLOB_ADDED,
    BLOB_REMOVED,
    ENTRY_ADDED,
    ENTRY_REMOVED,
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
from schemas.presentation import decode_presentation
from support import DAY, DEVICE, FOREIGN_KEY, ISSUER, ISSUER_KEY, NOW, ROOT_FINGERPRINT, credential
from verifier.cache import VerifierCache
from verifier.checkpoint import Checkpoint
from verifier.cli import app as verifier_app
from verifier.portrait_bundle import (
    CityPortraitBundles,
    PortraitBundleError,
    PortraitBundleStore,
    sync_city_portrait_bundles,
    sync_portrait_bundle,
)
from verifier.portraits import PortraitFetcher
from verifier.sync import sync_cache
from verifier.web import create_app


@dataclass
class Holder:
    """One enrolled person: an id credential carrying pd, and the face-check image."""

    number: int
    image: bytes
    jws: str
    blob_id: bytes = field(default_factory=lambda: os.urandom(16))
    key: bytes = field(default_factory=lambda: os.urandom(32))

    @property
    def digest(self) -> bytes:
        return portrait_digest(self.image)

    @property
    def signature(self) -> bytes:
        return decode_presentation(self.code()).signature

    def code(self, proof_time: int = NOW) -> str:
        return sign_presentation(self.jws, DEVICE, proof_time=proof_time, purpose="id")


def holder(number: int, image: bytes | None = None) -> Holder:
    image = image or f"portrait of holder {number}".encode() * 20
    jws = sign_credential(credential(
        Purpose.ID, card_number=f"33000123456{number:05d}", status=StatusRef("1", number),
        foreigner_code=f"9335661990010{number:05d}", portrait_digest=portrait_digest(image)),
        ISSUER_KEY)
    return Holder(number, image, jws)


@dataclass
class Publisher:
    """What the authority publishes: segments and a manifest signed by ISSUER_KEY."""

    segments: list[bytes] = field(default_factory=list)
    version: int = 0
    expires_at: int = NOW + 3 * DAY
    signer: Ed25519Signer = ISSUER_KEY
    first: int = 0  # the first segment's number (after a compaction)

    def add(self, *holders: Holder) -> None:
        records: list[Record] = []
        for h in holders:
            records.append(Record(BLOB_ADDED, h.blob_id, seal_blob(
                h.digest + h.image, portrait_key=h.key, blob_id=h.blob_id)))
            slot = derive_slot(h.signature, issuer=ISSUER)
            records.append(Record(ENTRY_ADDED, slot.index, wrap_entry(
                slot, portrait_key=h.key, blob_id=h.blob_id, issuer=ISSUER)))
        self._segment(records)

    def remove(self, *holders: Holder) -> None:
        self._segment([r for h in holders for r in (
            Record(ENTRY_REMOVED, derive_slot(h.signature, issuer=ISSUER).index),
            Record(BLOB_REMOVED, h.blob_id))])

    def _segment(self, records: list[Record]) -> None:
        self.segments.append(encode_segment(self.first + len(self.segments), records))
        self.version += 1

    def refs(self) -> tuple[SegmentRef, ...]:
        return tuple(SegmentRef(self.first + n, sha(body), len(body))
                     for n, body in enumerate(self.segments))

    def manifest(self, **overrides: object) -> str:
        claims = ManifestClaims(ISSUER, self.version, NOW - 60, self.expires_at, self.refs())
        fields = {"issuer": claims.issuer, "version": claims.version,
                  "issued_at": claims.issued_at, "expires_at": claims.expires_at,
                  "segments": claims.segments}
        fields.update(overrides)
        return sign_portrait_manifest(ManifestClaims(**fields), self.signer)  # type: ignore[arg-type]


def sha(body: bytes) -> str:
    return b64url_encode(hashlib.sha256(body).digest())


@dataclass
class BundleAuthority(FakeAuthority):
    publisher: Publisher = field(default_factory=Publisher)
    manifest_override: str | None = None
    cut_once: set[str] = field(default_factory=set)  # segment hashes broken off midway once
    tampered: dict[str, bytes] = field(default_factory=dict)  # sha -> body served instead
    ranges: list[str] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = super().app()

        @app.get("/v1/portrait-bundle/manifest")
        def manifest(request: Request) -> Response:
            jwt = self.manifest_override or self.publisher.manifest()
            return self._log(request, Response(jwt, media_type="application/jwt"))

        @app.get("/v1/portrait-bundle/segments/{digest}")
        def segment(request: Request, digest: str) -> Response:
            bodies = {sha(body): body for body in self.publisher.segments}
            body = self.tampered.get(digest, bodies.get(digest))
            if body is None:
                return self._log(request, Response(status_code=404))
            asked = request.headers.get("range")
            if asked:
                self.ranges.append(asked)
                start = int(asked.removeprefix("bytes=").removesuffix("-"))
                return self._log(request, Response(body[start:], status_code=206, headers={
                    "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}))
            if digest in self.cut_once:
                self.cut_once.discard(digest)

                def half() -> Iterator[bytes]:
                    yield body[:len(body) // 2]
                    raise ConnectionError("the line broke")

                return StreamingResponse(half(), headers={"Content-Length": str(len(body))})
            return self._log(request, Response(body, media_type="application/octet-stream"))

        return app


@pytest.fixture
def authority() -> Iterator[BundleAuthority]:
    with running(BundleAuthority()) as served:
        yield served


@pytest.fixture
def cache(tmp_path: Path, authority: BundleAuthority) -> VerifierCache:
    cache = VerifierCache(tmp_path / "cache")
    sync_cache(cache, server=authority.url, root_fingerprint=ROOT_FINGERPRINT, now=NOW)
    return cache


def store_of(cache: VerifierCache) -> PortraitBundleStore:
    return PortraitBundleStore(cache.directory / "portrait-bundle")


def sync(cache: VerifierCache, authority: BundleAuthority, *, now: int = NOW,
         progress: list[tuple[int, int]] | None = None) -> object:
    store = store_of(cache)
    try:
        return sync_portrait_bundle(
            store, server=authority.url, trust_list=cache.load().trust_list, now=now,
            progress=None if progress is None else lambda d, t: progress.append((d, t)))
    finally:
        store.close()


def opened(cache: VerifierCache, h: Holder, now: int = NOW) -> bytes | None:
    store = store_of(cache)
    try:
        return store.open(signature=h.signature, issuer=ISSUER, digest=h.digest, now=now)
    finally:
        store.close()


def segment_requests(authority: BundleAuthority) -> list[str]:
    return [path for path, _, _ in authority.requests if "/segments/" in path]


# -- sync ------------------------------------------------------------------------------------

def test_first_sync_then_only_what_changed(cache: VerifierCache,
                                           authority: BundleAuthority) -> None:
    people = [holder(n) for n in range(1, 6)]
    authority.publisher.add(*people)
    progress: list[tuple[int, int]] = []
    report = sync(cache, authority, progress=progress)
    assert (report.version, report.segments_fetched, report.entries, report.blobs) == (  # type: ignore[attr-defined]
        1, 1, 5, 5)
    assert progress[-1][0] == progress[-1][1] == len(authority.publisher.segments[0])
    assert all(opened(cache, h) == h.image for h in people)

    newcomer = holder(6)
    authority.publisher.add(newcomer)
    authority.publisher.remove(people[0])
    authority.requests.clear()
    report = sync(cache, authority)
    assert report.segments_fetched == 2  # type: ignore[attr-defined]
    assert len(segment_requests(authority)) == 2  # the first segment is not fetched again
    assert opened(cache, newcomer) == newcomer.image
    assert opened(cache, people[0]) is None  # removed people leave the bundle
    assert opened(cache, people[1]) == people[1].image

    authority.requests.clear()
    assert sync(cache, authority).segments_fetched == 0  # type: ignore[attr-defined]
    assert segment_requests(authority) == []


def test_a_broken_download_resumes_where_it_stopped(cache: VerifierCache,
                                                    authority: BundleAuthority) -> None:
    people = [holder(n) for n in range(1, 4)]
    authority.publisher.add(*people)
    body = authority.publisher.segments[0]
    authority.cut_once.add(sha(body))
    with pytest.raises(PortraitBundleError) as refused:
        sync(cache, authority)
    assert refused.value.code == "PORTRAIT_BUNDLE_UNAVAILABLE"
    assert opened(cache, people[0]) is None  # nothing applied
    part = cache.directory / "portrait-bundle" / "parts" / f"{sha(body)}.part"
    assert 0 < part.stat().st_size < len(body)
    kept = part.stat().st_size
    report = sync(cache, authority)
    assert authority.ranges == [f"bytes={kept}-"]
    assert report.bytes_received == len(body) - kept  # type: ignore[attr-defined]
    assert opened(cache, people[2]) == people[2].image
    assert not part.exists()


def _refusal(cache: VerifierCache, authority: BundleAuthority, now: int = NOW) -> str:
    before = _bundle_files(cache)
    with pytest.raises(PortraitBundleError) as refused:
        sync(cache, authority, now=now)
    assert _bundle_files(cache) == before  # a refused sync changes nothing
    return refused.value.code


def _bundle_files(cache: VerifierCache) -> dict[str, bytes]:
    store = store_of(cache)
    try:
        if not store.exists() or store.version() is None:
            return {}
        return {"version": str(store.version()).encode(),
                "applied": json.dumps(store.applied()).encode(),
                "counts": json.dumps(store.counts()).encode()}
    finally:
        store.close()


def _unsigned(publisher: Publisher) -> str:
    header = {"alg": "none", "typ": "fmc-portraits+jwt", "kid": "k1"}
    claims = ManifestClaims(ISSUER, publisher.version, NOW, NOW + DAY, publisher.refs())
    return (b64url_encode(dump_json(header)) + "."
            + b64url_encode(dump_json(claims.to_payload())) + ".")


def _status_list_typed(publisher: Publisher) -> str:
    """A genuine issuer signature over a manifest, but with another object's typ."""
    claims = ManifestClaims(ISSUER, publisher.version, NOW, NOW + DAY, publisher.refs())
    return sign_compact({"alg": "Ed25519", "kid": "k1", "typ": "statuslist+jwt"},
                        dump_json(claims.to_payload()), ISSUER_KEY)


@pytest.mark.parametrize("attack", ["unsigned", "foreign_key", "other_typ", "other_issuer",
                                    "flipped"])
def test_an_unsigned_or_forged_manifest_is_refused(cache: VerifierCache,
                                                   authority: BundleAuthority,
                                                   attack: str) -> None:
    authority.publisher.add(holder(1))
    good = authority.publisher.manifest()
    authority.manifest_override = {
        "unsigned": lambda: _unsigned(authority.publisher),
        "foreign_key": lambda: Publisher(authority.publisher.segments,
                                         authority.publisher.version,
                                         signer=FOREIGN_KEY).manifest(),
        "other_typ": lambda: _status_list_typed(authority.publisher),
        "other_issuer": lambda: authority.publisher.manifest(issuer="CN-HZ"),
        "flipped": lambda: good[:-5] + ("A" if good[-5] != "A" else "B") + good[-4:],
    }[attack]()
    assert _refusal(cache, authority) == "PORTRAIT_BUNDLE_UNSIGNED"
    assert segment_requests(authority) == []  # nothing fetched on an unverified manifest


def test_an_expired_manifest_is_refused(cache: VerifierCache,
                                        authority: BundleAuthority) -> None:
    authority.publisher.add(holder(1))
    authority.publisher.expires_at = NOW
    assert _refusal(cache, authority) == "PORTRAIT_BUNDLE_EXPIRED"


def test_a_rollback_is_refused(cache: VerifierCache, authority: BundleAuthority) -> None:
    authority.publisher.add(holder(1))
    old = authority.publisher.manifest()
    authority.publisher.add(holder(2))
    sync(cache, authority)
    authority.manifest_override = old
    assert _refusal(cache, authority) == "PORTRAIT_BUNDLE_ROLLBACK"


@pytest.mark.parametrize("fork", ["same_version", "rewritten_segment", "dropped_segment"])
def test_a_fork_is_refused(cache: VerifierCache, authority: BundleAuthority, fork: str) -> None:
    first, second = holder(1), holder(2)
    authority.publisher.add(first)
    authority.publisher.add(second)
    sync(cache, authority)
    other = Publisher()
    if fork == "same_version":
        other.add(first)
        other.add(holder(3))  # v2 again, with other content
    elif fork == "rewritten_segment":
        other.add(holder(3))  # segment 0 is not the one applied
        other.add(second)
        other.add(holder(4))
    else:
        other.add(first)  # v5 naming only segment 0: segment 1 vanished
        other.version = 5
    authority.manifest_override = other.manifest()
    authority.publisher = other  # its segments are what is served
    assert _refusal(cache, authority) == "PORTRAIT_BUNDLE_FORKED"


def test_a_compacted_bundle_is_rebuilt(cache: VerifierCache,
                                       authority: BundleAuthority) -> None:
    first, second, third = holder(1), holder(2), holder(3)
    authority.publisher.add(first, second)
    authority.publisher.remove(first)
    sync(cache, authority)
    compacted = Publisher(first=2, version=4)
    compacted.add(second, third)  # segment 2 holds the whole bundle; 0 and 1 are gone
    authority.publisher = compacted
    report = sync(cache, authority)
    assert report.rebuilt and report.entries == 2  # type: ignore[attr-defined]
    assert opened(cache, third) == third.image and opened(cache, first) is None


def test_a_segment_not_matching_its_hash_is_refused(cache: VerifierCache,
                                                    authority: BundleAuthority) -> None:
    authority.publisher.add(holder(1))
    body = authority.publisher.segments[0]
    authority.tampered[sha(body)] = body[:-1] + bytes([body[-1] ^ 1])
    assert _refusal(cache, authority) == "PORTRAIT_BUNDLE_SEGMENT_MISMATCH"
    part = cache.directory / "portrait-bundle" / "parts" / f"{sha(body)}.part"
    assert not part.exists()  # a bad part is not resumed


def test_a_held_bundle_past_its_exp_opens_nothing(cache: VerifierCache,
                                                  authority: BundleAuthority) -> None:
    h = holder(1)
    authority.publisher.add(h)
    sync(cache, authority)
    assert opened(cache, h, now=authority.publisher.expires_at - 1) == h.image
    assert opened(cache, h, now=authority.publisher.expires_at) is None  # frozen


# -- privacy (issue P15 item 3) --------------------------------------------------------------

def test_without_a_presented_code_no_portrait_opens(cache: VerifierCache,
                                                    authority: BundleAuthority) -> None:
    """Everything public: the trust list, the status list, the manifest, every segment,
    and every claim a credential carries (but not its signature)."""
    people = [holder(n) for n in range(1, 9)]
    authority.publisher.add(*people)
    sync(cache, authority)
    public_jwts = [authority.world.trust_list_jwt(), authority.world.status_list_jwt(),
                   authority.publisher.manifest()]
    segments = list(authority.publisher.segments)
    records = [r for n, body in enumerate(segments) for r in parse_segment(body, seq=n)]
    entries = {r.key: r.value for r in records if r.kind == ENTRY_ADDED}
    blobs = {r.key: r.value for r in records if r.kind == BLOB_ADDED}
    claims = [h.jws.split(".")[1] for h in people]
    guesses: list[bytes] = []
    for jwt in public_jwts:
        guesses.append(b64url_decode(jwt.split(".")[2]))  # every public signature
    for h in people:
        for value in (h.digest, h.jws.split(".")[0].encode(), h.jws.split(".")[1].encode(),
                      f"33000123456{h.number:05d}".encode(),
                      f"9335661990010{h.number:05d}".encode()):
            guesses.append(hashlib.sha512(value).digest())
    everything = b"".join(segments) + "".join(public_jwts).encode()
    for h in people:  # nothing names anyone
        for needle in (h.digest, h.image[:32], b64url_encode(h.digest).encode(),
                       f"33000123456{h.number:05d}".encode(),
                       f"9335661990010{h.number:05d}".encode()):
            assert needle not in everything
    assert claims  # (the claims are public, the signature is not)
    opened_any = 0
    for guess in guesses:
        slot = derive_slot(guess, issuer=ISSUER)
        assert slot.index not in entries
        for index, entry in entries.items():  # even trying the key at every index
            with contextlib.suppress(Malformed):
                unwrap_entry(type(slot)(index, slot.key), entry, issuer=ISSUER)
                opened_any += 1
    assert opened_any == 0
    for blob_id, sealed in blobs.items():  # and no blob opens under a guessed key
        for guess in guesses:
            with pytest.raises(Malformed):
                open_blob(sealed, portrait_key=guess[:32], blob_id=blob_id)


def test_one_presented_code_opens_exactly_that_persons_portrait(
        cache: VerifierCache, authority: BundleAuthority) -> None:
    people = [holder(n) for n in range(1, 9)]
    authority.publisher.add(*people)
    sync(cache, authority)
    shown = people[3]
    signature = decode_presentation(shown.code()).signature  # all the counter saw
    slot = derive_slot(signature, issuer=ISSUER)
    records = [r for n, body in enumerate(authority.publisher.segments)
               for r in parse_segment(body, seq=n)]
    opened_entries = []
    for record in (r for r in records if r.kind == ENTRY_ADDED):
        with contextlib.suppress(Malformed):
            opened_entries.append(unwrap_entry(type(slot)(record.key, slot.key), record.value,
                                               issuer=ISSUER))
    assert len(opened_entries) == 1
    key, _ = opened_entries[0]
    images = []
    for record in (r for r in records if r.kind == BLOB_ADDED):
        with contextlib.suppress(Malformed):
            images.append(open_blob(record.value, portrait_key=key, blob_id=record.key))
    assert images == [shown.digest + shown.image]
    assert opened(cache, shown) == shown.image
    assert all(opened(cache, h) is None for h in people if h is not shown
               for h in [Holder(h.number, h.image, shown.jws)])  # another's pd: refused


# -- at the check ----------------------------------------------------------------------------

def test_verifier_check_shows_the_offline_portrait_with_a_file(
        cache: VerifierCache, authority: BundleAuthority) -> None:
    shown = holder(1, PORTRAIT)
    authority.publisher.add(shown, holder(2))
    runner = CliRunner()
    synced = runner.invoke(verifier_app, ["--cache", str(cache.directory), "sync-portraits",
                                          "--at", str(NOW), "--json"])
    assert synced.exit_code == 0, synced.output
    assert json.loads(synced.output)["portraits"] == 2
    result = runner.invoke(verifier_app, ["--cache", str(cache.directory), "check", "--as",
                                          "counter", "--text", shown.code(), "--json",
                                          "--at", str(NOW)])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["portrait"] == "offline"
    assert Path(answer["portrait_file"]).read_bytes() == PORTRAIT
    assert not any("/v1/portraits/" in path for path, _, _ in authority.requests)


def test_without_the_bundle_the_online_fetch_is_only_a_configured_fallback(
        cache: VerifierCache, authority: BundleAuthority) -> None:
    shown = holder(1, PORTRAIT)
    authority.portraits[b64url_encode(shown.digest)] = PORTRAIT
    plain = Checkpoint(cache)
    outcome = plain.check_text(shown.code(), service="counter", now=NOW)
    assert outcome.ok and outcome.to_json()["portrait"] == "not_cached"
    assert not any("/v1/portraits/" in path for path, _, _ in authority.requests)
    plain.close()
    fetcher = PortraitFetcher(authority.url, authority.portrait_token)
    online = Checkpoint(cache, portrait_fetcher=fetcher)
    outcome = online.check_text(shown.code(proof_time=NOW - 1), service="counter", now=NOW)
    assert outcome.portrait == PORTRAIT and outcome.portrait_source == "online"
    online.close()


def test_the_bundle_comes_before_the_online_fetch(cache: VerifierCache,
                                                  authority: BundleAuthority) -> None:
    shown = holder(1, PORTRAIT)
    authority.publisher.add(shown)
    sync(cache, authority)
    fetcher = PortraitFetcher(authority.url, authority.portrait_token)
    checkpoint = Checkpoint(cache, portrait_fetcher=fetcher)
    outcome = checkpoint.check_text(shown.code(), service="counter", now=NOW)
    checkpoint.close()
    assert outcome.portrait == PORTRAIT and outcome.to_json()["portrait"] == "offline"
    assert not any("/v1/portraits/" in path for path, _, _ in authority.requests)


def test_the_counter_page_sends_the_offline_portrait_inline(
        cache: VerifierCache, authority: BundleAuthority) -> None:
    from fastapi.testclient import TestClient

    shown = holder(1, PORTRAIT)
    authority.publisher.add(shown)
    sync(cache, authority)
    client = TestClient(create_app(Checkpoint(cache), clock=lambda: NOW))
    answer = client.post("/api/check", data={"service": "counter"},
                         files={"image": ("qr.png", qr_png(shown.code()), "image/png")}).json()
    assert answer["portrait"] == "offline"
    assert answer["portrait_url"].startswith("data:image/jpeg;base64,")
    # nothing to fetch by digest afterwards: the page keeps no portrait
    assert client.get(f"/api/portraits/{b64url_encode(shown.digest)}").status_code == 404



@pytest.mark.parametrize(("case", "answer", "code"), [
    ("an endless manifest is read to its cap, never whole",
     lambda: httpx.Response(200, stream=httpx.ByteStream(b"a" * (5 * 1024 * 1024))),
     "PORTRAIT_BUNDLE_UNAVAILABLE"),
    ("bytes that are not text", lambda: httpx.Response(200, content=b"\xff\xfe\x00binary"),
     "PORTRAIT_BUNDLE_UNSIGNED"),
    ("a JSON document instead of a JWS", lambda: httpx.Response(200, json={"v": 99}),
     "PORTRAIT_BUNDLE_UNSIGNED"),
    ("an unasked 304", lambda: httpx.Response(304), "PORTRAIT_BUNDLE_UNAVAILABLE"),
    ("a redirect elsewhere", lambda: httpx.Response(302, headers={"Location": "http://x/"}),
     "PORTRAIT_BUNDLE_UNAVAILABLE"),
    ("a server error", lambda: httpx.Response(500), "PORTRAIT_BUNDLE_UNAVAILABLE"),
])
def test_hostile_manifest_answers_are_refused_and_change_nothing(
    tmp_path: Path, case: str, answer: Any, code: str
) -> None:
    from schemas.trust_list import TrustListClaims
    from support import World

    store = PortraitBundleStore(tmp_path / "bundle")
    client = httpx.Client(transport=httpx.MockTransport(lambda request: answer()))
    trust = TrustListClaims(ISSUER, 1, NOW - 60, NOW + DAY, World().keys)
    with pytest.raises(PortraitBundleError) as refused:
        sync_portrait_bundle(store, server="http://authority.example", trust_list=trust,
                             now=NOW, client=client)
    assert refused.value.code == code, case
    assert store.version() is None
    store.close()


# -- pinned nationally: one copy per city ----------------------------------------------------


def test_pinned_nationally_each_city_copy_is_checked_with_that_citys_keys(
        tmp_path: Path, authority: BundleAuthority) -> None:
    """Both entries name the same server, which publishes Yiwu's bundle: taken for Yiwu,
    refused for Hangzhou (signed by a key Hangzhou's entry does not list), and a Yiwu code
    opens only from Yiwu's copy. A city no longer active has its copy deleted."""
    h = holder(1)
    authority.publisher.add(h)
    bundles = CityPortraitBundles(tmp_path / "portrait-bundle")
    listed = federation(yiwu(api_url=authority.url), hangzhou(api_url=authority.url))
    try:
        cities = sync_city_portrait_bundles(bundles, federation=listed, now=NOW)
        assert (cities["CN-YW"].outcome, cities["CN-HZ"].outcome) == ("updated", "kept")
        assert cities["CN-HZ"].error == "PORTRAIT_BUNDLE_UNSIGNED"
        assert bundles.cities() == ["CN-YW"]  # nothing written for a refused manifest
        assert bundles.open(signature=h.signature, issuer=ISSUER, digest=h.digest,
                            now=NOW) == h.image
        assert bundles.open(signature=h.signature, issuer="CN-HZ", digest=h.digest,
                            now=NOW) is None
        assert bundles.open(signature=h.signature, issuer="../CN-YW", digest=h.digest,
                            now=NOW) is None
        again = sync_city_portrait_bundles(bundles, federation=listed, now=NOW)
        assert again["CN-YW"].outcome == "unchanged"

        cut_off = federation(yiwu(api_url=authority.url, state=IssuerState.SUSPENDED),
                             hangzhou(api_url=authority.url), version=2)
        cities = sync_city_portrait_bundles(bundles, federation=cut_off, now=NOW)
        assert cities["CN-YW"].outcome == "dropped"
        assert not (tmp_path / "portrait-bundle" / "cities" / "CN-YW").exists()
        assert bundles.open(signature=h.signature, issuer=ISSUER, digest=h.digest,
                            now=NOW) is None
    finally:
        bundles.close()
