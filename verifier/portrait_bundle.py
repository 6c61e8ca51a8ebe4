"""The counter's copy of the sealed portrait bundle (P15): incremental sync and opening.

``sync_portrait_bundle`` fetches the signed manifest (typ ``fmc-portraits+jwt``), checks
its issuer signature against the cached trust list, refuses an expired one, a lower
version (rollback), another manifest of the same version or one rewriting a segment the
counter already applied (fork); then downloads only the segments it lacks (resuming a
partial download with ``Range: bytes=N-``), checks each one's SHA-256 and size, and
applies them all in one SQLite transaction: a failure leaves the copy as it was.

``PortraitBundleStore.open`` opens one portrait from a credential's issuer signature: the
slot it derives is the only way to the entry, the entry the only way to the blob. The
blob starts with the ``pd`` of the authority's original, which must equal the
credential's ``pd``.

Example::

    store = PortraitBundleStore(cache.directory / "portrait-bundle")
    report = sync_portrait_bundle(store, server=url, trust_list=cache.load().trust_list,
                                  now=int(time.time()), progress=lambda done, total: ...)
    image = store.open(signature=result.issuer_signature, issuer=credential.issuer,
                       digest=credential.portrait_digest, now=now)

Pinned to the national root (``verifier sync --root <national fingerprint>``), a counter
holds one copy per city instead (``CityPortraitBundles``, ``portrait-bundle/cities/CODE``):
``sync_city_portrait_bundles`` fetches each active city's manifest from the ``api_url``
its federation entry names, checked with **that city's** keys from the verified federation
list alone (a manifest signed by another city is refused), and drops the copies of
cities no longer active. A code from any city then opens from its own city's copy::

    bundles = CityPortraitBundles(cache.directory / "portrait-bundle")
    reports = sync_city_portrait_bundles(bundles, federation=cache.load().federation,
                                         now=int(time.time()))
    image = bundles.open(signature=..., issuer="CN-HZ", digest=..., now=now)
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import httpx

from schemas._jose import b64url_encode
from schemas.codes import FmcError
from schemas.credential import PORTRAIT_DIGEST_BYTES
from schemas.federation import FederationClaims, IssuerState
from schemas.portrait_bundle import (
    BLOB_ADDED,
    BLOB_REMOVED,
    ENTRY_ADDED,
    ENTRY_REMOVED,
    PORTRAIT_BUNDLE_TYP,
    ManifestClaims,
    SegmentRef,
    derive_slot,
    open_blob,
    parse_segment,
    unwrap_entry,
)
from schemas.trust_list import KeyState, TrustListClaims
from verifier._sqlite import open_wal
from verifier.sync import SyncError, get_capped
from verifier.trust import verify_issuer_signed

__all__ = [
    "CityPortraitBundles",
    "CityPortraitSync",
    "PortraitBundleError",
    "PortraitBundleStore",
    "PortraitSyncReport",
    "sync_city_portrait_bundles",
    "sync_portrait_bundle",
]

_MAX_MANIFEST = 4 * 1024 * 1024
_MAX_SEGMENT = 1024 * 1024 * 1024
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS applied (seq INTEGER PRIMARY KEY, sha256 TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS entries (idx BLOB PRIMARY KEY, entry BLOB NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS blobs (blob_id BLOB PRIMARY KEY, sealed BLOB NOT NULL)",
)
_SIGNERS = (KeyState.ACTIVE, KeyState.NEXT)
# A city code as a directory name: nothing that could climb out of ``cities/``.
_CITY_DIR_RE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,31}$")


class PortraitBundleError(Exception):
    """The portrait sync failed and the counter's copy is unchanged; ``code`` is stable:
    PORTRAIT_BUNDLE_UNSIGNED, _ROLLBACK, _FORKED, _EXPIRED, _SEGMENT_MISMATCH,
    _UNAVAILABLE, _NOT_PUBLISHED, _WRITE_FAILED."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class PortraitSyncReport:
    version: int
    previous_version: int | None
    segments_fetched: int
    bytes_received: int
    entries: int
    blobs: int
    rebuilt: bool = False


class PortraitBundleStore:
    """One directory: ``bundle.sqlite`` (entries, blobs, applied segments, the manifest)
    and ``parts/`` (segments being downloaded). Safe to share between threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_wal(self.directory / "bundle.sqlite", busy_timeout_ms=5000,
                                synchronous="NORMAL", schema=_SCHEMA)
        return self._db

    def exists(self) -> bool:
        return (self.directory / "bundle.sqlite").exists()

    def meta(self, name: str) -> str | None:
        with self._lock:
            row = self._conn().execute("SELECT value FROM meta WHERE name = ?",
                                       (name,)).fetchone()
        return None if row is None else str(row[0])

    def version(self) -> int | None:
        value = self.meta("version")
        return None if value is None else int(value)

    def applied(self) -> dict[int, str]:
        with self._lock:
            return {int(seq): str(sha) for seq, sha in
                    self._conn().execute("SELECT seq, sha256 FROM applied")}

    def counts(self) -> tuple[int, int]:
        with self._lock:
            db = self._conn()
            entries = db.execute("SELECT count(*) FROM entries").fetchone()[0]
            blobs = db.execute("SELECT count(*) FROM blobs").fetchone()[0]
        return int(entries), int(blobs)

    def open(self, *, signature: bytes, issuer: str, digest: bytes, now: int,
             grace: int = 0) -> bytes | None:
        """The face-check image of the credential signed with ``signature``, or None when
        the bundle has no slot for it, it does not open, its ``pd`` differs, or the
        manifest held is past its ``exp`` plus ``grace``."""
        if len(digest) != PORTRAIT_DIGEST_BYTES or not self.exists():
            return None
        expires_at = self.meta("expires_at")
        if expires_at is None or int(expires_at) + grace <= now or self.meta("issuer") != issuer:
            return None
        slot = derive_slot(signature, issuer=issuer)
        with self._lock:
            db = self._conn()
            row = db.execute("SELECT entry FROM entries WHERE idx = ?", (slot.index,)).fetchone()
            if row is None:
                return None
            try:
                key, blob_id = unwrap_entry(slot, bytes(row[0]), issuer=issuer)
            except FmcError:
                return None
            blob = db.execute("SELECT sealed FROM blobs WHERE blob_id = ?",
                              (blob_id,)).fetchone()
        if blob is None:
            return None
        try:
            plain = open_blob(bytes(blob[0]), portrait_key=key, blob_id=blob_id)
        except FmcError:
            return None
        if plain[:PORTRAIT_DIGEST_BYTES] != digest:
            return None
        return plain[PORTRAIT_DIGEST_BYTES:]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _check_manifest(unverified_jwt: str, trust_list: TrustListClaims, now: int) -> ManifestClaims:
    try:
        _, payload = verify_issuer_signed(unverified_jwt, trust_list=trust_list,
                                          typ=PORTRAIT_BUNDLE_TYP, signer_states=_SIGNERS,
                                          what="portrait bundle manifest")
        claims = ManifestClaims.from_payload(payload)
    except FmcError as error:
        raise PortraitBundleError("PORTRAIT_BUNDLE_UNSIGNED",
                                  f"the portrait manifest is refused: {error.code.value}: "
                                  f"{error.detail}") from None
    if claims.issuer != trust_list.issuer:
        raise PortraitBundleError("PORTRAIT_BUNDLE_UNSIGNED",
                                  "the portrait manifest names another issuer")
    if claims.expires_at <= now:
        raise PortraitBundleError("PORTRAIT_BUNDLE_EXPIRED",
                                  "the portrait manifest has expired (a frozen authority?)")
    return claims


def _plan(store: PortraitBundleStore, claims: ManifestClaims, manifest_sha: str
          ) -> tuple[list[SegmentRef], bool] | None:
    """Segments to fetch and whether the copy is rebuilt; None when already current."""
    held = store.version()
    if held is not None:
        if claims.version < held:
            raise PortraitBundleError("PORTRAIT_BUNDLE_ROLLBACK",
                                      f"manifest v{claims.version} is older than the held "
                                      f"v{held}")
        if claims.version == held:
            if store.meta("manifest_sha256") != manifest_sha:
                raise PortraitBundleError("PORTRAIT_BUNDLE_FORKED",
                                          f"another manifest with the held version v{held}")
            return None
    applied = store.applied()
    listed = {ref.seq: ref.sha256 for ref in claims.segments}
    for seq, sha in applied.items():
        if seq in listed and listed[seq] != sha:
            raise PortraitBundleError("PORTRAIT_BUNDLE_FORKED",
                                      f"segment {seq} differs from the one applied")
    last_listed = claims.segments[-1].seq if claims.segments else -1
    if applied and max(applied) > last_listed:
        raise PortraitBundleError("PORTRAIT_BUNDLE_FORKED",
                                  "the manifest drops segments the counter applied")
    rebuilt = bool(applied) and any(seq not in listed for seq in applied)
    todo = [ref for ref in claims.segments if rebuilt or ref.seq not in applied]
    return todo, rebuilt


def _download(http: httpx.Client, base: str, ref: SegmentRef, parts: Path,
              tick: Callable[[int], None]) -> tuple[bytes, int]:
    """The segment's body, resuming a ``.part`` file; (body, bytes received)."""
    if ref.size > _MAX_SEGMENT:
        raise PortraitBundleError("PORTRAIT_BUNDLE_SEGMENT_MISMATCH", "segment too large")
    parts.mkdir(parents=True, exist_ok=True)
    part = parts / f"{ref.sha256}.part"
    have = part.stat().st_size if part.exists() else 0
    if have > ref.size:
        part.unlink()
        have = 0
    tick(have)
    received = 0
    if have < ref.size:
        headers = {"Range": f"bytes={have}-"} if have else {}
        url = f"{base}/v1/portrait-bundle/segments/{ref.sha256}"
        try:
            with http.stream("GET", url, headers=headers) as response:
                if response.status_code == 200 and have:
                    part.unlink()  # the server ignored the range: start again
                    have = 0
                elif response.status_code not in (200, 206):
                    raise PortraitBundleError("PORTRAIT_BUNDLE_UNAVAILABLE",
                                              f"segment {ref.seq}: HTTP {response.status_code}")
                with part.open("ab") as out:
                    for chunk in response.iter_bytes():
                        if have + received + len(chunk) > ref.size:
                            raise PortraitBundleError("PORTRAIT_BUNDLE_SEGMENT_MISMATCH",
                                                      f"segment {ref.seq} is longer than named")
                        out.write(chunk)
                        received += len(chunk)
                        tick(len(chunk))
        except httpx.HTTPError as error:
            raise PortraitBundleError("PORTRAIT_BUNDLE_UNAVAILABLE",
                                      f"segment {ref.seq}: {type(error).__name__}; the part "
                                      "downloaded so far is kept and resumed") from None
    body = part.read_bytes()
    if len(body) != ref.size or b64url_encode(hashlib.sha256(body).digest()) != ref.sha256:
        part.unlink()
        raise PortraitBundleError("PORTRAIT_BUNDLE_SEGMENT_MISMATCH",
                                  f"segment {ref.seq} does not match its hash in the manifest")
    return body, received


def sync_portrait_bundle(
    store: PortraitBundleStore,
    *,
    server: str,
    trust_list: TrustListClaims,
    now: int,
    client: httpx.Client | None = None,
    timeout: float = 30.0,
    progress: Callable[[int, int], None] | None = None,
) -> PortraitSyncReport:
    """Bring the counter's copy up to date; raise PortraitBundleError and keep it on any
    failure. ``progress(done_bytes, total_bytes)`` is called as segments arrive."""
    base = server.rstrip("/")
    own = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=False,
                                  headers={"User-Agent": "fmc-verifier"})
    try:
        # Read to a cap, never whole: the server's answer is not trusted until verified.
        try:
            status, body, _ = get_capped(http, f"{base}/v1/portrait-bundle/manifest", {},
                                         _MAX_MANIFEST, missing_ok=True)
        except SyncError as error:
            raise PortraitBundleError("PORTRAIT_BUNDLE_UNAVAILABLE",
                                      f"manifest: {error.detail}") from None
        if status == 404:
            raise PortraitBundleError("PORTRAIT_BUNDLE_NOT_PUBLISHED",
                                      "the authority publishes no portrait bundle")
        try:
            jwt = body.decode("ascii").strip()
        except UnicodeDecodeError:
            raise PortraitBundleError("PORTRAIT_BUNDLE_UNSIGNED",
                                      "the manifest is not a compact JWS") from None
        claims = _check_manifest(jwt, trust_list, now)
        manifest_sha = b64url_encode(hashlib.sha256(jwt.encode()).digest())
        previous = store.version()
        plan = _plan(store, claims, manifest_sha)
        if plan is None:
            entries, blobs = store.counts()
            return PortraitSyncReport(claims.version, previous, 0, 0, entries, blobs)
        todo, rebuilt = plan
        total = sum(ref.size for ref in todo)
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        if progress is not None:
            progress(0, total)
        bodies: list[tuple[SegmentRef, bytes]] = []
        received = 0
        for ref in todo:
            body, got = _download(http, base, ref, store.directory / "parts", tick)
            bodies.append((ref, body))
            received += got
        _apply(store, claims, jwt, manifest_sha, bodies, rebuilt=rebuilt)
        for ref, _ in bodies:
            with contextlib.suppress(OSError):
                (store.directory / "parts" / f"{ref.sha256}.part").unlink()
        entries, blobs = store.counts()
        return PortraitSyncReport(claims.version, previous, len(todo), received, entries, blobs,
                                  rebuilt)
    finally:
        if own:
            http.close()


def _apply(store: PortraitBundleStore, claims: ManifestClaims, jwt: str, sha: str,
           bodies: list[tuple[SegmentRef, bytes]], *, rebuilt: bool) -> None:
    try:
        with store._lock:
            db = store._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                if rebuilt:
                    for table in ("applied", "entries", "blobs"):
                        db.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
                for ref, body in bodies:
                    _apply_segment(db, ref, body)
                for name, value in (("version", str(claims.version)),
                                    ("manifest_sha256", sha), ("manifest", jwt),
                                    ("issuer", claims.issuer),
                                    ("expires_at", str(claims.expires_at))):
                    db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                               (name, value))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
    except FmcError as error:
        raise PortraitBundleError("PORTRAIT_BUNDLE_SEGMENT_MISMATCH",
                                  f"a segment is malformed: {error.detail}") from None
    except (sqlite3.Error, OSError) as error:
        raise PortraitBundleError("PORTRAIT_BUNDLE_WRITE_FAILED",
                                  f"cannot write the portrait bundle: {error}") from None


def _apply_segment(db: sqlite3.Connection, ref: SegmentRef, body: bytes) -> None:
    for record in parse_segment(body, seq=ref.seq):
        if record.kind == ENTRY_ADDED:
            db.execute("INSERT OR REPLACE INTO entries (idx, entry) VALUES (?, ?)",
                       (record.key, record.value))
        elif record.kind == ENTRY_REMOVED:
            db.execute("DELETE FROM entries WHERE idx = ?", (record.key,))
        elif record.kind == BLOB_ADDED:
            db.execute("INSERT OR REPLACE INTO blobs (blob_id, sealed) VALUES (?, ?)",
                       (record.key, record.value))
        elif record.kind == BLOB_REMOVED:
            db.execute("DELETE FROM blobs WHERE blob_id = ?", (record.key,))
    db.execute("INSERT OR REPLACE INTO applied (seq, sha256) VALUES (?, ?)",
               (ref.seq, ref.sha256))


# -- under a national pin: one copy per city ------------------------------------------


@dataclass(frozen=True)
class CityPortraitSync:
    """One city's portrait sync: ``updated`` / ``unchanged``, ``kept`` (it failed: the
    copy held, if any, is kept; ``error`` is the code), ``dropped`` (the city is no longer
    active: its copy is deleted)."""

    code: str
    outcome: str
    report: PortraitSyncReport | None = None
    error: str | None = None
    detail: str | None = None


class CityPortraitBundles:
    """The per-city copies of a nationally pinned counter, under ``directory/cities``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / "cities"
        self._stores: dict[str, PortraitBundleStore] = {}
        self._lock = threading.Lock()

    def store(self, code: str) -> PortraitBundleStore | None:
        """The copy of city ``code`` (None for a code that is no directory name)."""
        if not _CITY_DIR_RE.fullmatch(code):
            return None
        with self._lock:
            store = self._stores.get(code)
            if store is None:
                store = self._stores[code] = PortraitBundleStore(self.directory / code)
            return store

    def cities(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(path.name for path in self.directory.iterdir()
                      if path.is_dir() and _CITY_DIR_RE.fullmatch(path.name))

    def open(self, *, signature: bytes, issuer: str, digest: bytes, now: int,
             grace: int = 0) -> bytes | None:
        """As :meth:`PortraitBundleStore.open`, from the copy of the credential's city."""
        if not _CITY_DIR_RE.fullmatch(issuer) or not (self.directory / issuer).is_dir():
            return None
        store = self.store(issuer)
        if store is None:
            return None
        return store.open(signature=signature, issuer=issuer, digest=digest, now=now,
                          grace=grace)

    def drop(self, code: str) -> None:
        store = self.store(code)
        if store is None:
            return
        store.close()
        with self._lock:
            self._stores.pop(code, None)
        shutil.rmtree(self.directory / code, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            stores = list(self._stores.values())
            self._stores.clear()
        for store in stores:
            store.close()


def sync_city_portrait_bundles(
    bundles: CityPortraitBundles,
    *,
    federation: FederationClaims,
    now: int,
    client: httpx.Client | None = None,
    timeout: float = 30.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> Mapping[str, CityPortraitSync]:
    """Every active city's copy brought up to date from its own ``api_url``, verified with
    its keys from ``federation`` (already verified against the pinned root); one city
    failing keeps its copy and does not stop the others. Copies of cities not active in
    the list are dropped. ``progress(city, done_bytes, total_bytes)``."""
    own = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=False,
                                  headers={"User-Agent": "fmc-verifier"})
    results: dict[str, CityPortraitSync] = {}
    try:
        active = {entry.code: entry for entry in federation.issuers
                  if entry.state is IssuerState.ACTIVE}
        for code in bundles.cities():
            if code not in active:
                bundles.drop(code)
                results[code] = CityPortraitSync(code, "dropped")
        for code, entry in sorted(active.items()):
            store = bundles.store(code)
            if store is None:
                results[code] = CityPortraitSync(code, "kept", error="BAD_CITY_CODE",
                                                 detail="not usable as a directory name")
                continue

            def city_progress(done: int, total: int, code: str = code) -> None:
                if progress is not None:
                    progress(code, done, total)

            try:
                report = sync_portrait_bundle(
                    store, server=entry.api_url, trust_list=entry.as_trust_list(federation),
                    now=now, client=http, progress=city_progress)
            except PortraitBundleError as error:
                results[code] = CityPortraitSync(code, "kept", error=error.code,
                                                 detail=error.detail)
                continue
            finally:
                store.close()  # one open SQLite file per city only while it syncs
            changed = report.segments_fetched > 0 or report.previous_version != report.version
            results[code] = CityPortraitSync(code, "updated" if changed else "unchanged",
                                             report)
    finally:
        if own:
            http.close()
    return MappingProxyType(dict(sorted(results.items())))
