"""The verifier's cache directory: the signed lists, written atomically, read back verified.

Layout of ``--cache DIR``::

    pinned-root            the root fingerprint, written by the first sync, never changed
    manifest.json          what is current: list files, the signed timestamp (P8.5; absent
                           for an authority that publishes none), ETags, sync time
                           (written last)
    manifest.prev.json     the previous good manifest (used if the current one is damaged)
    floor.json             the rollback floor: highest verified trust-list version,
                           status-list ``iat`` per list and timestamp ``ver`` (only ever
                           raised)
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
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from keys._atomic import write_atomically
from schemas._jose import b64url_decode, b64url_encode
from schemas.codes import FmcError
from schemas.credential import PORTRAIT_DIGEST_BYTES, portrait_digest
from schemas.status_list import StatusListClaims
from schemas.timestamp import TimestampClaims, list_digest
from schemas.trust_list import TrustListClaims
from verifier.settings import VerifierSettings
from verifier.timestamp import read_timestamp
from verifier.trust import VerifierState, verify_status_list, verify_trust_list

__all__ = [
    "CacheContents",
    "CacheError",
    "CacheSnapshot",
    "CachedList",
    "VerifierCache",
    "default_cache_dir",
    "portrait_digest_from_text",
]

MANIFEST = "manifest.json"
PREVIOUS_MANIFEST = "manifest.prev.json"
PINNED_ROOT = "pinned-root"
ROLLBACK_FLOOR = "floor.json"
REPLAY_DB = "replay.sqlite"
_FORMAT = 1
_MAX_LIST_FILE = 16 * 1024 * 1024
_MAX_MANIFEST = 1024 * 1024
_MAX_PORTRAIT = 2 * 1024 * 1024
_LIST_FILE_RE = re.compile(r"^[0-9a-f]{64}\.jwt$")
_FINGERPRINT_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_LIST_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")


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
    """What a sync stores (the JWTs are verified again whenever they are loaded)."""

    root_fingerprint: str
    server: str | None
    synced_at: int  # when the authority last confirmed every list (200 or 304)
    trust_list: CachedList
    status_lists: Mapping[str, CachedList] = field(default_factory=dict)
    timestamp: CachedList | None = None  # the signed timestamp (P8.5), when published


@dataclass(frozen=True)
class CacheSnapshot:
    """A loaded, verified cache."""

    contents: CacheContents
    trust_list: TrustListClaims
    status_lists: Mapping[str, StatusListClaims]
    state: VerifierState
    from_previous: bool = False  # the current manifest was damaged; the previous one is used

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

    def pin_root(self, root_fingerprint: str) -> None:
        """Remember the root on first use; a different root later is ROOT_MISMATCH."""
        pinned = self.pinned_root()
        if pinned is None:
            if not _FINGERPRINT_RE.fullmatch(root_fingerprint):
                raise CacheError("ROOT_MISMATCH", "not a root fingerprint (43 base64url chars)")
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.directory / PINNED_ROOT, (root_fingerprint + "\n").encode())
        elif pinned != root_fingerprint:
            raise CacheError(
                "ROOT_MISMATCH",
                f"this cache is pinned to root {pinned}, not {root_fingerprint}",
            )

    # -- reading ----------------------------------------------------------------------

    def load(self) -> CacheSnapshot:
        """The current verified cache, or the previous good one if the current is damaged."""
        root = self.pinned_root()
        if root is None or not (self.manifest_path.exists()
                                or (self.directory / PREVIOUS_MANIFEST).exists()):
            raise CacheError("NO_CACHE", f"no synced lists in {self.directory}")
        try:
            snapshot = self._load_manifest(MANIFEST, root)
        except CacheError as current_error:
            try:
                snapshot = self._load_manifest(PREVIOUS_MANIFEST, root)
            except CacheError:
                raise current_error from None
            # The damaged manifest's lists may still be on disk: they count as verified.
            _refuse_below(snapshot, self._floor_of_files(root, snapshot.trust_list),
                          "a newer list verified earlier")
            snapshot = CacheSnapshot(snapshot.contents, snapshot.trust_list,
                                     snapshot.status_lists, snapshot.state, from_previous=True)
        _refuse_below(snapshot, self._recorded_floor(root), "the recorded rollback floor")
        return snapshot

    def manifest_stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever a sync replaces the manifest (to reload a long-lived cache)."""
        try:
            stat = self.manifest_path.stat()
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _load_manifest(self, name: str, root: str) -> CacheSnapshot:
        contents = self._read_contents(name)
        if contents.root_fingerprint != root:
            raise CacheError("CACHE_CORRUPT", f"{name} names another root than {PINNED_ROOT}")
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

    def _recorded_floor(self, root: str) -> _Floor:
        """floor.json as stored; empty when absent or unreadable (the files still count)."""
        try:
            record = _dict(json.loads(_read_capped(self.directory / ROLLBACK_FLOOR,
                                                   _MAX_MANIFEST)))
            if record.get("format") != _FORMAT or record.get("root") != root:
                return _Floor()
            return _Floor(_int(record["trust_list_version"]), {
                _list_id(list_id): (_int(_dict(entry)["iat"]), _str(_dict(entry)["sha256"]))
                for list_id, entry in _dict(record["status_lists"]).items()
            }, _int(record.get("timestamp_version", 0)),
                frozenset(_str(key) for key in record.get("timestamp_keys", [])))
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            return _Floor()

    def _floor_of_files(self, root: str, trust_list: TrustListClaims) -> _Floor:
        """The newest lists among the files that verify (status lists against the newest
        trust list found and the one in use)."""
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

    def _raise_floor(self, contents: CacheContents) -> None:
        """Raise floor.json to the lists being stored (verified first; never lowered)."""
        root = contents.root_fingerprint
        try:
            trust_list = verify_trust_list(contents.trust_list.jwt, root_fingerprint=root)
            status_lists = [(verify_status_list(cached.jwt, trust_list=trust_list), cached.jwt)
                            for cached in contents.status_lists.values()]
            timestamp = (None if contents.timestamp is None
                         else read_timestamp(contents.timestamp.jwt, trust_list=trust_list))
        except FmcError:
            return  # unverified lists raise nothing (load refuses them anyway)
        floor = self._recorded_floor(root).raised(trust_list=trust_list, timestamp=timestamp)
        for claims, status_jwt in status_lists:
            floor = floor.raised(status_list=claims, status_jwt=status_jwt)
        record = {"format": _FORMAT, "root": root,
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
            if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
                raise ValueError("unknown manifest format")
            trust = manifest["trust_list"]
            contents = CacheContents(
                root_fingerprint=_str(manifest["root"]),
                server=_optional_str(manifest.get("server")),
                synced_at=_int(manifest["synced_at"]),
                trust_list=self._read_list(trust),
                status_lists=MappingProxyType({
                    _list_id(list_id): self._read_list(entry)
                    for list_id, entry in _dict(manifest["status_lists"]).items()
                }),
                timestamp=(None if manifest.get("timestamp") is None
                           else self._read_list(manifest["timestamp"])),
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
        self.pin_root(contents.root_fingerprint)
        lists_dir = self.directory / "lists"
        lists_dir.mkdir(parents=True, exist_ok=True)
        manifest: dict[str, Any] = {
            "format": _FORMAT,
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
        current = self.manifest_path
        if current.exists():
            with contextlib.suppress(CacheError):
                self._load_manifest(MANIFEST, contents.root_fingerprint)  # only a good one
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
        if not (path.exists() and path.stat().st_size == len(raw)):
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
               timestamp: TimestampClaims | None = None) -> _Floor:
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
            lowest, _ = issued.get(status_list.list_id, (0, None))
            if status_list.issued_at >= lowest:
                digest = None if status_jwt is None else _digest(status_jwt)
                issued[status_list.list_id] = (status_list.issued_at, digest)
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


def _list_id(value: str) -> str:
    if not _LIST_ID_RE.fullmatch(value):
        raise ValueError(f"bad status list id {value!r}")
    return value
