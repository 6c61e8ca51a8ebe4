"""The verifier's cache directory: the signed lists, written atomically, read back verified.

Layout of ``--cache DIR``::

    pinned-root            the root fingerprint, written by the first sync, never changed
    pinned-kind            ``national`` when pinned to the national root (P10); absent for
                           a city root (every cache made before P10 stays as it was)
    manifest.json          what is current: list files, the signed timestamp (P8.5; absent
                           for an authority that publishes none), ETags, sync time
                           (written last)
    manifest.prev.json     the previous good manifest (used if the current one is damaged)
    floor.json             the rollback floor: highest verified trust-list version,
                           status-list ``iat`` per list and timestamp ``ver`` (only ever
                           raised; a retired day list's entry is dropped with the list)
    lists/<sha256>.jwt     the raw signed JWTs, named by their content
    portraits/<pd>         portraits named by their digest (the credential's ``pd`` claim)
    replay.sqlite          seen holder proofs (verifier.replay_store)

A sync writes new list files first (temp file, fsync, rename), then the manifest, so
a reader sees the old set or the new set, never a mix. Loading re-verifies every JWT
against the pinned root: nothing in the directory is trusted because it is there.

No load goes below the rollback floor: the highest trust-list version and status-list
``iat`` ever stored (``floor.json``, raised by each sync) and, when the current manifest
is damaged, every list file in ``lists/`` that still verifies. A damaged manifest can
fall back to the previous one only if that names lists as new as the newest verified;
otherwise the load is refused with CACHE_ROLLBACK (a sync repairs it).

Cache format 2 (``pinned-kind`` ``national``, verifier.federation_sync): the manifest's
``trust_list`` entry holds the federation list, and its status lists are keyed
``CITY/list_id`` (``CN-HZ/1``), since list ids repeat across cities. Each is verified on
load with its own city's keys from the federation list. The floor records the federation
list's version and each ``CITY/list_id``'s ``iat``. Changing the kind of a cache is
ROOT_MISMATCH, like changing its root.

Example::

    cache = VerifierCache(Path("~/.cache/fmc-verifier").expanduser())
    snapshot = cache.load()              # raises CacheError (code NO_CACHE, CACHE_CORRUPT)
    verify_presentation(text, state=snapshot.state, ...)
    print(snapshot.age_seconds(now))
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from keys._atomic import write_atomically
from schemas._jose import b64url_decode, b64url_encode
from schemas.codes import FmcError
from schemas.credential import PORTRAIT_DIGEST_BYTES, portrait_digest
from schemas.federation import FederationClaims
from schemas.status_list import StatusListClaims, day_list_retired
from schemas.timestamp import TimestampClaims, list_digest
from schemas.trust_list import TrustListClaims
from verifier.federation import read_federation_list
from verifier.settings import VerifierSettings
from verifier.timestamp import read_timestamp
from verifier.trust import (
    VerifierState,
    national_trust_list,
    verify_status_list,
    verify_trust_list,
)

__all__ = [
    "KIND_CITY",
    "KIND_NATIONAL",
    "CacheContents",
    "CacheError",
    "CacheSnapshot",
    "CachedList",
    "VerifierCache",
    "city_list_key",
    "default_cache_dir",
    "portrait_digest_from_text",
    "split_city_list_key",
]

MANIFEST = "manifest.json"
PREVIOUS_MANIFEST = "manifest.prev.json"
PINNED_ROOT = "pinned-root"
PINNED_KIND = "pinned-kind"
KIND_CITY = "city"  # pinned to one city's root: its fmc-trust+jwt
KIND_NATIONAL = "national"  # pinned to the national root: the fmc-federation+jwt
ROLLBACK_FLOOR = "floor.json"
REPLAY_DB = "replay.sqlite"
_FORMAT = 1
_FORMAT_NATIONAL = 2
_FORMATS = {KIND_CITY: _FORMAT, KIND_NATIONAL: _FORMAT_NATIONAL}
_MAX_LIST_FILE = 16 * 1024 * 1024
_MAX_MANIFEST = 1024 * 1024
_MAX_PORTRAIT = 2 * 1024 * 1024
_LIST_FILE_RE = re.compile(r"^[0-9a-f]{64}\.jwt$")
_FINGERPRINT_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_LIST_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
_CITY_LIST_RE = re.compile(r"^([A-Z]{2}(?:-[A-Z0-9]{1,8}){1,3})/([0-9A-Za-z_-]{1,32})$")


def city_list_key(city_code: str, list_id: str) -> str:
    """How a national cache names city ``city_code``'s status list ``list_id``."""
    return f"{city_code}/{list_id}"


def split_city_list_key(key: str) -> tuple[str, str]:
    """``CN-HZ/1`` -> ``("CN-HZ", "1")``; ValueError for anything else."""
    match = _CITY_LIST_RE.fullmatch(key)
    if match is None:
        raise ValueError(f"bad city status list key {key!r}")
    return match.group(1), match.group(2)


class CacheError(Exception):
    """The cache cannot be used; ``code`` is NO_CACHE, CACHE_CORRUPT, CACHE_ROLLBACK or
    ROOT_MISMATCH."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class CachedList:
    """One signed list as fetched: the raw JWT and the server's ETag for it."""

    jwt: str
    etag: str | None = None


@dataclass(frozen=True)
class CacheContents:
    """What a sync stores (the JWTs are verified again whenever they are loaded).

    ``kind`` national: ``trust_list`` is the federation list and ``status_lists`` are
    keyed ``CITY/list_id`` (:func:`city_list_key`)."""

    root_fingerprint: str
    server: str | None
    synced_at: int  # when the authority last confirmed every list (200 or 304)
    trust_list: CachedList
    status_lists: Mapping[str, CachedList] = field(default_factory=dict)
    timestamp: CachedList | None = None  # the signed timestamp (P8.5), when published
    kind: str = KIND_CITY
    mirrors: tuple[str, ...] = ()  # national: where else the lists were fetched from


@dataclass(frozen=True)
class CacheSnapshot:
    """A loaded, verified cache."""

    contents: CacheContents
    trust_list: TrustListClaims
    status_lists: Mapping[str, StatusListClaims]
    state: VerifierState
    from_previous: bool = False  # the current manifest was damaged; the previous one is used
    federation: FederationClaims | None = None  # pinned nationally: the verified list

    @property
    def signed_at(self) -> int:
        """The ``iat`` of the newest signed list held: the only freshness there is proof of
        (``synced_at`` is when an unauthenticated HTTP answer, maybe a 304, last came)."""
        timestamp = self.state.timestamp
        # A timestamp that names the held trust list vouches that it was current at its iat.
        vouched = (timestamp.issued_at if timestamp is not None
                   and timestamp.trust_list.serial == self.trust_list.version else 0)
        return max([self.trust_list.issued_at, vouched,
                    *(claims.issued_at for claims in self.status_lists.values())])

    def age_seconds(self, now: int) -> int:
        """Seconds since the newest signed list held was signed (never negative)."""
        return max(0, now - self.signed_at)


def default_cache_dir() -> Path:
    return VerifierSettings().cache_base() / "fmc-verifier"


class VerifierCache:
    """One cache directory. Reads never raise anything but :class:`CacheError`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def replay_path(self) -> Path:
        return self.directory / REPLAY_DB

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    # -- the pinned root ------------------------------------------------------------

    def pinned_root(self) -> str | None:
        path = self.directory / PINNED_ROOT
        try:
            text = path.read_text("ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise CacheError("CACHE_CORRUPT", f"cannot read {path}: {error}") from None
        if not _FINGERPRINT_RE.fullmatch(text):
            raise CacheError("CACHE_CORRUPT", f"{path} does not hold a root fingerprint")
        return text

    def pinned_kind(self) -> str | None:
        """``city`` or ``national`` once a root is pinned (no kind file: ``city``)."""
        if self.pinned_root() is None:
            return None
        path = self.directory / PINNED_KIND
        try:
            text = path.read_text("ascii").strip()
        except FileNotFoundError:
            return KIND_CITY
        except (OSError, UnicodeDecodeError) as error:
            raise CacheError("CACHE_CORRUPT", f"cannot read {path}: {error}") from None
        if text not in _FORMATS:
            raise CacheError("CACHE_CORRUPT", f"{path} names no known kind of root")
        return text

    def pin_root(self, root_fingerprint: str, kind: str = KIND_CITY) -> None:
        """Remember the root and its kind on first use; a different root or kind later is
        ROOT_MISMATCH (a city root and the national root never share a cache)."""
        if kind not in _FORMATS:
            raise ValueError(f"unknown kind of root {kind!r}")
        pinned = self.pinned_root()
        if pinned is None:
            if not _FINGERPRINT_RE.fullmatch(root_fingerprint):
                raise CacheError("ROOT_MISMATCH", "not a root fingerprint (43 base64url chars)")
            self.directory.mkdir(parents=True, exist_ok=True)
            if kind == KIND_NATIONAL:  # before the root: a root alone reads as a city's
                _write_atomic(self.directory / PINNED_KIND, (kind + "\n").encode())
            _write_atomic(self.directory / PINNED_ROOT, (root_fingerprint + "\n").encode())
        elif pinned != root_fingerprint:
            raise CacheError(
                "ROOT_MISMATCH",
                f"this cache is pinned to root {pinned}, not {root_fingerprint}",
            )
        elif self.pinned_kind() != kind:
            raise CacheError(
                "ROOT_MISMATCH",
                f"this cache is pinned to a {self.pinned_kind()} root, not a {kind} one;"
                " use a new cache directory",
            )

    # -- reading ----------------------------------------------------------------------

    def load(self) -> CacheSnapshot:
        """The current verified cache, or the previous good one if the current is damaged."""
        root = self.pinned_root()
        if root is None or not (self.manifest_path.exists()
                                or (self.directory / PREVIOUS_MANIFEST).exists()):
            raise CacheError("NO_CACHE", f"no synced lists in {self.directory}")
        kind = self.pinned_kind() or KIND_CITY
        try:
            snapshot = self._load_manifest(MANIFEST, root, kind)
        except CacheError as current_error:
            try:
                snapshot = self._load_manifest(PREVIOUS_MANIFEST, root, kind)
            except CacheError:
                raise current_error from None
            # The damaged manifest's lists may still be on disk: they count as verified.
            _refuse_below(snapshot, self._floor_of_files(root, snapshot.trust_list, kind),
                          "a newer list verified earlier")
            snapshot = replace(snapshot, from_previous=True)
        _refuse_below(snapshot, self._recorded_floor(root, kind), "the recorded rollback floor")
        return snapshot

    def manifest_stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever a sync replaces the manifest (to reload a long-lived cache)."""
        try:
            stat = self.manifest_path.stat()
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _load_manifest(self, name: str, root: str, kind: str) -> CacheSnapshot:
        contents = self._read_contents(name)
        if contents.root_fingerprint != root:
            raise CacheError("CACHE_CORRUPT", f"{name} names another root than {PINNED_ROOT}")
        if contents.kind != kind:
            raise CacheError("CACHE_CORRUPT", f"{name} is not a {kind} cache's manifest")
        if kind == KIND_NATIONAL:
            return _load_national(contents, root)
        try:
            trust_list = verify_trust_list(contents.trust_list.jwt, root_fingerprint=root)
            status_lists: dict[str, StatusListClaims] = {}
            for list_id, cached in contents.status_lists.items():
                claims = verify_status_list(cached.jwt, trust_list=trust_list)
                if claims.list_id != list_id:
                    raise CacheError("CACHE_CORRUPT", f"status list {list_id} holds another id")
                status_lists[list_id] = claims
            timestamp = (None if contents.timestamp is None
                         else read_timestamp(contents.timestamp.jwt, trust_list=trust_list))
        except FmcError as error:
            raise CacheError(
                "CACHE_CORRUPT", f"a cached list no longer verifies ({error.code}): {error.detail}"
            ) from None
        state = VerifierState.of(trust_list, status_lists, timestamp=timestamp,
                                 trust_list_sha256=list_digest(contents.trust_list.jwt))
        return CacheSnapshot(contents, trust_list, MappingProxyType(status_lists), state)

    # -- the rollback floor ----------------------------------------------------------

    def _recorded_floor(self, root: str, kind: str = KIND_CITY) -> _Floor:
        """floor.json as stored; empty when absent or unreadable (the files still count)."""
        try:
            record = _dict(json.loads(_read_capped(self.directory / ROLLBACK_FLOOR,
                                                   _MAX_MANIFEST)))
            if record.get("format") != _FORMATS[kind] or record.get("root") != root:
                return _Floor()
            return _Floor(_int(record["trust_list_version"]), {
                _list_key(list_id, kind): (_int(_dict(entry)["iat"]),
                                           _str(_dict(entry)["sha256"]))
                for list_id, entry in _dict(record["status_lists"]).items()
            }, _int(record.get("timestamp_version", 0)),
                frozenset(_str(key) for key in record.get("timestamp_keys", [])))
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            return _Floor()

    def _floor_of_files(self, root: str, trust_list: TrustListClaims,
                        kind: str = KIND_CITY) -> _Floor:
        """The newest lists among the files that verify (status lists against the newest
        trust list found and the one in use). National: the newest federation list."""
        if kind == KIND_NATIONAL:
            return _Floor(max([trust_list.version, *self._federation_versions(root)]), {})
        trust_lists: list[TrustListClaims] = [trust_list]
        status_jwts: list[str] = []
        for path in sorted((self.directory / "lists").glob("*.jwt")):
            try:
                raw = _read_capped(path, _MAX_LIST_FILE)
                if hashlib.sha256(raw).hexdigest() + ".jwt" != path.name:
                    continue
                unverified_jwt = raw.decode("ascii")
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            try:
                trust_lists.append(verify_trust_list(unverified_jwt, root_fingerprint=root))
            except FmcError:
                status_jwts.append(unverified_jwt)
        floor = _Floor(max(claims.version for claims in trust_lists), {})
        for unverified_jwt in status_jwts:
            for claims in (max(trust_lists, key=lambda c: c.version), trust_list):
                with contextlib.suppress(FmcError):
                    floor = floor.raised(status_list=verify_status_list(
                        unverified_jwt, trust_list=claims), status_jwt=None)
                    break
            for claims in (max(trust_lists, key=lambda c: c.version), trust_list):
                with contextlib.suppress(FmcError):  # a signed timestamp counts as well
                    floor = floor.raised(timestamp=read_timestamp(unverified_jwt,
                                                                  trust_list=claims))
                    break
        return floor

    def _federation_versions(self, root: str) -> list[int]:
        versions: list[int] = []
        for path in sorted((self.directory / "lists").glob("*.jwt")):
            with contextlib.suppress(OSError, ValueError, UnicodeDecodeError, FmcError):
                raw = _read_capped(path, _MAX_LIST_FILE)
                if hashlib.sha256(raw).hexdigest() + ".jwt" == path.name:
                    versions.append(read_federation_list(
                        raw.decode("ascii"), pinned_root_fingerprint=root).version)
        return versions

    def _raise_floor(self, contents: CacheContents) -> None:
        """Raise floor.json to the lists being stored (verified first; never lowered)."""
        root = contents.root_fingerprint
        status_lists: list[tuple[StatusListClaims, str, str | None]]
        try:
            if contents.kind == KIND_NATIONAL:
                snapshot = _load_national(contents, root)
                trust_list, timestamp = snapshot.trust_list, None
                status_lists = [(claims, contents.status_lists[key].jwt, key)
                                for key, claims in snapshot.status_lists.items()]
            else:
                trust_list = verify_trust_list(contents.trust_list.jwt, root_fingerprint=root)
                status_lists = [(verify_status_list(cached.jwt, trust_list=trust_list),
                                 cached.jwt, None) for cached in contents.status_lists.values()]
                timestamp = (None if contents.timestamp is None
                             else read_timestamp(contents.timestamp.jwt, trust_list=trust_list))
        except (FmcError, CacheError):
            return  # unverified lists raise nothing (load refuses them anyway)
        floor = self._recorded_floor(root, contents.kind).raised(trust_list=trust_list,
                                                                 timestamp=timestamp)
        for claims, status_jwt, key in status_lists:
            floor = floor.raised(status_list=claims, status_jwt=status_jwt, key=key)
        # A retired day list (P13.3) no longer served is forgotten: its credentials have
        # all expired, so no check reads it, and the floor would otherwise grow every day.
        floor = replace(floor, status_lists={
            name: entry for name, entry in floor.status_lists.items()
            if name in contents.status_lists
            or not day_list_retired(name.rsplit("/", 1)[-1], contents.synced_at)})
        record = {"format": _FORMATS[contents.kind], "root": root,
                  "trust_list_version": floor.trust_list_version,
                  "status_lists": {list_id: {"iat": issued_at, "sha256": digest}
                                   for list_id, (issued_at, digest)
                                   in sorted(floor.status_lists.items())},
                  "timestamp_version": floor.timestamp_version,
                  "timestamp_keys": sorted(floor.timestamp_keys)}
        _write_atomic(self.directory / ROLLBACK_FLOOR,
                      json.dumps(record, indent=1, sort_keys=True).encode())

    def _read_contents(self, name: str) -> CacheContents:
        path = self.directory / name
        try:
            raw = _read_capped(path, _MAX_MANIFEST)
            manifest = json.loads(raw)
            if not isinstance(manifest, dict) or manifest.get("format") not in (
                    _FORMAT, _FORMAT_NATIONAL):
                raise ValueError("unknown manifest format")
            kind = KIND_NATIONAL if manifest["format"] == _FORMAT_NATIONAL else KIND_CITY
            trust = manifest["trust_list"]
            contents = CacheContents(
                root_fingerprint=_str(manifest["root"]),
                server=_optional_str(manifest.get("server")),
                synced_at=_int(manifest["synced_at"]),
                trust_list=self._read_list(trust),
                status_lists=MappingProxyType({
                    _list_key(list_id, kind): self._read_list(entry)
                    for list_id, entry in _dict(manifest["status_lists"]).items()
                }),
                timestamp=(None if manifest.get("timestamp") is None
                           else self._read_list(manifest["timestamp"])),
                kind=kind,
                mirrors=tuple(_str(url) for url in manifest.get("mirrors", [])),
            )
        except CacheError:
            raise
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise CacheError("CACHE_CORRUPT", f"cannot read {path}: {error}") from None
        return contents

    def _read_list(self, entry: Any) -> CachedList:
        entry = _dict(entry)
        file_name = _str(entry["file"])
        if not _LIST_FILE_RE.fullmatch(file_name):
            raise ValueError(f"bad list file name {file_name!r}")
        raw = _read_capped(self.directory / "lists" / file_name, _MAX_LIST_FILE)
        if hashlib.sha256(raw).hexdigest() + ".jwt" != file_name:
            raise CacheError("CACHE_CORRUPT", f"lists/{file_name} is damaged (digest differs)")
        return CachedList(raw.decode("ascii"), _optional_str(entry.get("etag")))

    # -- writing ----------------------------------------------------------------------

    @contextlib.contextmanager
    def sync_lock(self) -> Iterator[None]:
        """One sync at a time per directory (readers need no lock)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".sync.lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def store(self, contents: CacheContents) -> None:
        """Write the lists, then the manifest; keep the previous manifest as a fallback."""
        self.pin_root(contents.root_fingerprint, contents.kind)
        lists_dir = self.directory / "lists"
        lists_dir.mkdir(parents=True, exist_ok=True)
        manifest: dict[str, Any] = {
            "format": _FORMATS[contents.kind],
            "root": contents.root_fingerprint,
            "server": contents.server,
            "synced_at": contents.synced_at,
            "trust_list": self._write_list(lists_dir, contents.trust_list),
            "status_lists": {
                list_id: self._write_list(lists_dir, cached)
                for list_id, cached in sorted(contents.status_lists.items())
            },
        }
        if contents.timestamp is not None:
            manifest["timestamp"] = self._write_list(lists_dir, contents.timestamp)
        if contents.mirrors:
            manifest["mirrors"] = list(contents.mirrors)
        current = self.manifest_path
        if current.exists():
            with contextlib.suppress(CacheError):
                self._load_manifest(MANIFEST, contents.root_fingerprint,
                                    contents.kind)  # only a good one
                _write_atomic(self.directory / PREVIOUS_MANIFEST, current.read_bytes())
        _write_atomic(current, json.dumps(manifest, indent=1, sort_keys=True).encode())
        # After the manifest: a floor above the manifest in use would refuse a good cache.
        # If this write fails the stored files still bound a fallback; the next sync retries.
        with contextlib.suppress(OSError):
            self._raise_floor(contents)
        self._remove_unreferenced(lists_dir)

    def _write_list(self, lists_dir: Path, cached: CachedList) -> dict[str, Any]:
        raw = cached.jwt.encode("ascii")
        file_name = hashlib.sha256(raw).hexdigest() + ".jwt"
        path = lists_dir / file_name
        if not _holds(path, raw):  # a damaged file of the same size is rewritten too
            _write_atomic(path, raw)
        return {"file": file_name, "etag": cached.etag}

    def _remove_unreferenced(self, lists_dir: Path) -> None:
        keep: set[str] = set()
        for name in (MANIFEST, PREVIOUS_MANIFEST):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                manifest = json.loads((self.directory / name).read_bytes())
                keep.add(manifest["trust_list"]["file"])
                keep.update(entry["file"] for entry in manifest["status_lists"].values())
                if manifest.get("timestamp"):
                    keep.add(manifest["timestamp"]["file"])
        for path in lists_dir.iterdir():
            if path.name not in keep and (_LIST_FILE_RE.fullmatch(path.name)
                                          or _is_temporary(path.name)):
                with contextlib.suppress(OSError):
                    path.unlink()

    # -- portraits --------------------------------------------------------------------

    def portrait(self, digest: bytes) -> bytes | None:
        """The cached portrait whose digest is ``digest``, checked; None when absent."""
        if len(digest) != PORTRAIT_DIGEST_BYTES:
            return None
        path = self.directory / "portraits" / b64url_encode(digest)
        try:
            image = _read_capped(path, _MAX_PORTRAIT)
        except (OSError, ValueError):
            return None
        return image if portrait_digest(image) == digest else None

    def add_portrait(self, image: bytes) -> bytes:
        """Store a portrait under its digest; returns the digest (the ``pd`` claim)."""
        if len(image) > _MAX_PORTRAIT:
            raise ValueError("portrait larger than 2 MiB")
        digest = portrait_digest(image)
        folder = self.directory / "portraits"
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / b64url_encode(digest), image)
        return digest


@dataclass(frozen=True)
class _Floor:
    """The lowest lists a load may serve: the trust-list version, and per status list its
    ``iat`` with the digest of the list stored last at that ``iat`` (None: any digest).

    Two status lists signed in the same second differ only in content, so at an equal
    ``iat`` only the one stored last counts as current.

    The timestamp ``ver`` counts only under the timestamp keys it was reached with: when
    a newer trust list drops one of them (rotated out, maybe stolen), the count starts
    again, or a thief's fast-forwarded ``ver`` would lock the counter out for good (TUF's
    fast-forward attack recovery).
    """

    trust_list_version: int = 0
    status_lists: Mapping[str, tuple[int, str | None]] = field(default_factory=dict)
    timestamp_version: int = 0  # 0: no timestamp verified yet (or an old authority)
    timestamp_keys: frozenset[str] = frozenset()  # "kid:x" of the delegated keys

    def raised(self, *, trust_list: TrustListClaims | None = None,
               status_list: StatusListClaims | None = None,
               status_jwt: str | None = None,
               timestamp: TimestampClaims | None = None,
               key: str | None = None) -> _Floor:
        timestamp_version, timestamp_keys = self.timestamp_version, self.timestamp_keys
        if trust_list is not None and trust_list.version >= self.trust_list_version:
            delegated = _delegated(trust_list)
            if self.timestamp_keys - delegated:
                timestamp_version = 0
            timestamp_keys = delegated
        timestamp_version = max(timestamp_version, 0 if timestamp is None else timestamp.version)
        version = self.trust_list_version
        issued = dict(self.status_lists)
        if trust_list is not None:
            version = max(version, trust_list.version)
        if status_list is not None:
            name = status_list.list_id if key is None else key  # national: CITY/list_id
            lowest, _ = issued.get(name, (0, None))
            if status_list.issued_at >= lowest:
                digest = None if status_jwt is None else _digest(status_jwt)
                issued[name] = (status_list.issued_at, digest)
        return _Floor(version, issued, timestamp_version, timestamp_keys)


def _delegated(trust_list: TrustListClaims) -> frozenset[str]:
    return frozenset(f"{key.kid}:{b64url_encode(key.public_key)}"
                     for key in trust_list.timestamp_keys)


def _refuse_below(snapshot: CacheSnapshot, floor: _Floor, what: str) -> None:
    """CACHE_ROLLBACK when the snapshot serves a list older than the floor."""
    if snapshot.trust_list.version < floor.trust_list_version:
        raise CacheError("CACHE_ROLLBACK", f"trust list v{snapshot.trust_list.version} is "
                         f"older than {what} (v{floor.trust_list_version})")
    for list_id, floor_entry in floor.status_lists.items():
        claims = snapshot.status_lists.get(list_id)  # a missing list is STATUS_UNAVAILABLE
        if claims is None:
            continue
        lowest, digest = floor_entry
        served = _digest(snapshot.contents.status_lists[list_id].jwt)
        if claims.issued_at < lowest or (claims.issued_at == lowest
                                          and digest not in (None, served)):
            raise CacheError("CACHE_ROLLBACK", f"status list {list_id} is older than {what}")
    timestamp = snapshot.state.timestamp
    # A missing or damaged timestamp counts as version 0: it must not lower the floor.
    if (0 if timestamp is None else timestamp.version) < floor.timestamp_version:
        raise CacheError("CACHE_ROLLBACK", f"the signed timestamp is older than {what}")


def _holds(path: Path, raw: bytes) -> bool:
    try:
        return path.stat().st_size == len(raw) and path.read_bytes() == raw
    except OSError:
        return False


def _digest(jwt: str) -> str:
    return hashlib.sha256(jwt.encode("ascii")).hexdigest()


def portrait_digest_from_text(text: str) -> bytes | None:
    """Parse a base64url ``pd`` value from a URL; None when it is not one."""
    try:
        digest = b64url_decode(text)
    except Exception:
        return None
    return digest if len(digest) == PORTRAIT_DIGEST_BYTES else None


def _is_temporary(name: str) -> bool:
    """A leftover of a killed write (``keys._atomic`` names them ``.<name>.<random>.tmp``);
    ``.tmp-`` is the older writer's prefix."""
    return name.startswith(".") and (name.endswith(".tmp") or name.startswith(".tmp-"))


def _write_atomic(path: Path, raw: bytes) -> None:
    write_atomically(path, raw)  # one seam, so tests can crash a sync between files


def _read_capped(path: Path, cap: int) -> bytes:
    with open(path, "rb") as handle:
        raw = handle.read(cap + 1)
    if len(raw) > cap:
        raise ValueError(f"{path.name} is larger than {cap} bytes")
    return raw


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _optional_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError("expected an integer")
    return value


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value


def _load_national(contents: CacheContents, root: str) -> CacheSnapshot:
    """A national cache: the federation list (pinned root, signature, claims; its expiry is
    the check's business), each city's status lists verified with that city's keys."""
    try:
        federation = read_federation_list(contents.trust_list.jwt, pinned_root_fingerprint=root)
        entries = federation.issuers_by_code
        status_lists: dict[str, StatusListClaims] = {}
        by_city: dict[tuple[str, str], StatusListClaims] = {}
        for key, cached in contents.status_lists.items():
            city, list_id = split_city_list_key(key)
            entry = entries.get(city)
            if entry is None:
                raise CacheError("CACHE_CORRUPT", f"status list {key} of a city not listed")
            claims = verify_status_list(cached.jwt, trust_list=entry.as_trust_list(federation))
            if claims.list_id != list_id:
                raise CacheError("CACHE_CORRUPT", f"status list {key} holds another id")
            status_lists[key] = by_city[(city, list_id)] = claims
    except FmcError as error:
        raise CacheError(
            "CACHE_CORRUPT", f"a cached list no longer verifies ({error.code}): {error.detail}"
        ) from None
    except ValueError as error:
        raise CacheError("CACHE_CORRUPT", str(error)) from None
    return CacheSnapshot(contents, national_trust_list(federation),
                         MappingProxyType(status_lists),
                         VerifierState.of_federation(federation, by_city),
                         federation=federation)


def _list_key(value: str, kind: str) -> str:
    if kind == KIND_NATIONAL:
        split_city_list_key(value)
        return value
    return _list_id(value)


def _list_id(value: str) -> str:
    if not _LIST_ID_RE.fullmatch(value):
        raise ValueError(f"bad status list id {value!r}")
    return value
