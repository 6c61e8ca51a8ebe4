"""``verifier sync``: fetch the trust list and the status lists, verify, store atomically.

A thin layer over :class:`verifier.TrustedSet`: every fetched JWT is checked against the
pinned root (signature, rollback, expiry) before anything is written, and the cache is
replaced only when the whole set verifies.

The signed timestamp (P8.5) is fetched first, the lists after it, so every list fetched
is at least as new as the one it names (the authority signs the lists before the
timestamp that names them); it is verified once the trust list that delegates its key is
in. A timestamp naming a newer trust list than the one served, or the same version with
another digest, is a man in the middle serving an old list: TRUST_LIST_OUTDATED, and the
cache stays as it was. An authority that answers 404 publishes no timestamp: the cache
keeps the one it held (checks refuse TIMESTAMP_STALE once it is too old) or, if it never
held one (an older authority), keeps working as before the timestamp existed.

A network failure or one bad list leaves the previous cache exactly as it was. ETags
make an unchanged list cost no transfer.

Example::

    from verifier.cache import VerifierCache
    from verifier.sync import sync_cache
    report = sync_cache(VerifierCache(path), server="https://authority.example",
                        root_fingerprint="kPrK_qmx...", now=int(time.time()))
    print(report.trust_list_version, report.status_lists)   # {"1": "updated"}
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar, overload
from urllib.parse import quote, urlsplit

import httpx

from schemas.codes import FmcError, ResultCode
from schemas.timestamp import list_digest
from verifier.cache import CacheContents, CachedList, CacheError, CacheSnapshot, VerifierCache
from verifier.timestamp import read_timestamp, require_named_lists
from verifier.trust import TrustedSet

__all__ = [
    "SyncError",
    "SyncReport",
    "fetch_from_mirrors",
    "get_capped",
    "mirror_bodies",
    "store_contents",
    "sync_cache",
    "sync_client",
]

T = TypeVar("T")

# Where ``cardsvc publish`` puts the status list index on a static mirror (the authority
# serves it there too); ``/v1/status-lists`` itself cannot be a file beside its folder.
MIRROR_INDEX_PATH = "/v1/status-lists/index.json"
_MAX_TRUST_LIST = 1024 * 1024
_MAX_STATUS_LIST = 8 * 1024 * 1024
_MAX_INDEX = 256 * 1024
_MAX_TIMESTAMP = 64 * 1024
_MAX_STATUS_LISTS = 256
_LIST_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
_JWT_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$")
_USAGE_CODES = frozenset({"NO_ROOT", "NO_SERVER", "BAD_SERVER", "ROOT_MISMATCH", "BAD_ROOT"})
# An RFC 7638 SHA-256 thumbprint: 43 base64url characters, no padding.
_FINGERPRINT_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


class SyncError(Exception):
    """The sync failed and the cache is unchanged. ``code`` is stable; ``usage`` marks
    configuration errors (exit 2) as opposed to a refused or unreachable authority."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail

    @property
    def usage(self) -> bool:
        return self.code in _USAGE_CODES


@dataclass(frozen=True)
class SyncReport:
    server: str
    root_fingerprint: str
    trust_list_version: int
    trust_list_expires_at: int
    trust_list_updated: bool
    status_lists: Mapping[str, str]  # list id -> "updated" | "unchanged"
    removed_status_lists: tuple[str, ...]
    bytes_received: int  # bodies of the signed lists only (304s cost nothing)
    synced_at: int
    timestamp_version: int | None = None  # None: the authority publishes no timestamp
    source: str = ""  # the base URL the set came from (a mirror, or the server)


def _check_fingerprint(unverified_root: str) -> None:
    if _FINGERPRINT_RE.fullmatch(unverified_root):
        return
    if any(c in unverified_root for c in "=+/"):
        problem = "use base64url without padding (- and _ instead of + and /, no =)"
    elif len(unverified_root) != 43:
        problem = f"this one has {len(unverified_root)}"
    else:
        problem = "this one has characters outside A-Z a-z 0-9 - _"
    raise SyncError("BAD_ROOT", "a root fingerprint (RFC 7638 thumbprint) is 43 base64url "
                    f"characters; {problem}")


def sync_cache(
    cache: VerifierCache,
    *,
    server: str | None,
    root_fingerprint: str | None,
    now: int,
    client: httpx.Client | None = None,
    timeout: float = 10.0,
    mirrors: Sequence[str] = (),
) -> SyncReport:
    """Bring ``cache`` up to date from ``server``; raise :class:`SyncError` and keep the
    old cache on any failure. ``server`` and ``root_fingerprint`` default to the ones the
    cache remembers from its first sync.

    ``mirrors``: static copies (``cardsvc publish --out``) tried in order after
    ``server`` if given (without mirrors, the remembered server). The whole set must
    verify from one source; a mirror that is unreachable, stale (a rollback, an expired
    list) or serves garbage is passed over for the next, and when none passes the last
    error is raised and the cache kept."""
    with cache.sync_lock():
        try:
            pinned = cache.pinned_root()
        except CacheError as error:
            raise SyncError(error.code, error.detail) from None
        if root_fingerprint is not None:
            _check_fingerprint(root_fingerprint)  # before any network traffic
        root = root_fingerprint or pinned
        if root is None:
            raise SyncError("NO_ROOT", "the first sync needs --root FINGERPRINT")
        if pinned is not None and root != pinned:
            raise SyncError("ROOT_MISMATCH",
                            f"this cache is pinned to root {pinned}, not {root}")
        if pinned is not None and _pinned_nationally(cache):
            raise SyncError("ROOT_MISMATCH", "this cache is pinned to the national root:"
                            " it is synced by verifier.federation_sync")
        previous = _previous(cache)
        bases = [(_server_base(server), False)] if server else []
        bases += [(_server_base(mirror), True) for mirror in mirrors]
        if not bases:
            bases.append((_server_base(previous.contents.server if previous else None), False))
        with sync_client(client, timeout) as http:
            report, contents = _fetch_first(http, bases, root, previous, now)
        store_contents(cache, contents)
        return report


def _pinned_nationally(cache: VerifierCache) -> bool:
    from verifier.cache import KIND_NATIONAL

    try:
        return cache.pinned_kind() == KIND_NATIONAL
    except CacheError as error:
        raise SyncError(error.code, error.detail) from None


def _previous(cache: VerifierCache) -> CacheSnapshot | None:
    try:
        return cache.load()
    except CacheError:
        # Nothing usable yet (first sync, or damaged beyond the fallback): fetch afresh.
        return None


def _server_base(server: str | None) -> str:
    if not server:
        raise SyncError("NO_SERVER", "the first sync needs --server URL")
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise SyncError("BAD_SERVER", f"not an http(s) server URL: {server!r}")
    return server.rstrip("/")


def _fetch_first(
    http: httpx.Client, bases: list[tuple[str, bool]], root: str,
    previous: CacheSnapshot | None, now: int,
) -> tuple[SyncReport, CacheContents]:
    """The first source whose whole set verifies; the last refusal if none does."""
    failure: SyncError | None = None
    for base, mirror in bases:
        try:
            return _fetch_all(http, base, root, previous, now, mirror=mirror)
        except SyncError as error:
            if error.usage:
                raise
            failure = error
    assert failure is not None
    raise failure


def _fetch_all(
    http: httpx.Client, base: str, root: str, previous: CacheSnapshot | None, now: int, *,
    mirror: bool = False,
) -> tuple[SyncReport, CacheContents]:
    trusted = TrustedSet(root_fingerprint=root)
    received = 0
    old_trust: CachedList | None = None
    old_status: Mapping[str, CachedList] = {}
    if previous is not None:
        # Seed with what is cached so that a lower version is refused as a rollback.
        trusted.trust_list = previous.trust_list
        trusted.status_lists = dict(previous.status_lists)
        old_trust = previous.contents.trust_list
        old_status = previous.contents.status_lists
        trusted.timestamp = previous.state.timestamp

    timestamp = previous.contents.timestamp if previous is not None else None
    timestamp_fetch = _get_jwt(http, f"{base}/v1/timestamp", timestamp, _MAX_TIMESTAMP,
                               missing_ok=True)
    trust_fetch = _get_jwt(http, f"{base}/v1/trust-list", old_trust, _MAX_TRUST_LIST)
    received += trust_fetch.bytes_received
    try:
        trust_claims = trusted.update_trust_list(trust_fetch.cached.jwt, now=now)
    except FmcError as error:
        raise _refused("trust list", error) from None
    if timestamp_fetch is not None:
        received += timestamp_fetch.bytes_received
        timestamp = timestamp_fetch.cached
        try:
            trusted.update_timestamp(timestamp.jwt, now=now)
        except FmcError as error:
            raise _refused("timestamp", error) from None
    elif timestamp is not None:
        # Withheld (404): keep the held one, but only while the new trust list still
        # delegates its key; otherwise the cache could not load it (fail closed here).
        try:
            read_timestamp(timestamp.jwt, trust_list=trust_claims)
        except FmcError:
            raise SyncError(ResultCode.TIMESTAMP_STALE.value, "no timestamp was served and "
                            "the trust list no longer delegates the held one's key") from None
    trust_updated = old_trust is None or trust_fetch.cached.jwt != old_trust.jwt

    list_ids = _status_list_ids(http, base, MIRROR_INDEX_PATH if mirror else "/v1/status-lists")
    status_results: dict[str, str] = {}
    new_status: dict[str, CachedList] = {}
    for list_id in list_ids:
        url = f"{base}/v1/status-lists/{quote(list_id, safe='')}"
        cached = old_status.get(list_id)
        fetch = _get_jwt(http, url, cached, _MAX_STATUS_LIST)
        received += fetch.bytes_received
        if fetch.unchanged and trust_updated:
            # The cached list may have been signed by a key the new trust list retired:
            # re-verify it, and fetch it in full if it no longer passes.
            try:
                trusted.update_status_list(fetch.cached.jwt, now=now)
            except FmcError:
                fetch = _get_jwt(http, url, None, _MAX_STATUS_LIST)
                received += fetch.bytes_received
        try:
            claims = trusted.update_status_list(fetch.cached.jwt, now=now)
        except FmcError as error:
            raise _refused(f"status list {list_id}", error) from None
        if claims.list_id != list_id:
            raise SyncError("BAD_RESPONSE",
                            f"status list {list_id} carries the id {claims.list_id}")
        new_status[list_id] = fetch.cached
        status_results[list_id] = "unchanged" if fetch.unchanged else "updated"

    if trusted.timestamp is not None:
        try:
            require_named_lists(
                trusted.timestamp, trust_list=trust_claims,
                trust_list_sha256=list_digest(trust_fetch.cached.jwt),
                status_lists={list_id: (trusted.status_lists[list_id], list_digest(cached.jwt))
                              for list_id, cached in new_status.items()})
        except FmcError as error:
            raise _refused("the lists served", error) from None

    contents = CacheContents(
        root_fingerprint=root,
        # a mirror does not replace the authority the cache remembers
        server=previous.contents.server if mirror and previous is not None else base,
        synced_at=now,
        trust_list=trust_fetch.cached,
        status_lists=MappingProxyType(new_status),
        timestamp=timestamp,
    )
    report = SyncReport(
        server=contents.server or base,
        root_fingerprint=root,
        trust_list_version=trust_claims.version,
        trust_list_expires_at=trust_claims.expires_at,
        trust_list_updated=trust_updated,
        status_lists=MappingProxyType(status_results),
        removed_status_lists=tuple(sorted(set(old_status) - set(new_status))),
        bytes_received=received,
        synced_at=now,
        timestamp_version=None if trusted.timestamp is None else trusted.timestamp.version,
        source=base,
    )
    return report, contents


def _refused(what: str, error: FmcError) -> SyncError:
    return SyncError(error.code.value, f"{what} refused: {error.detail}")


@dataclass(frozen=True)
class _Fetch:
    cached: CachedList
    unchanged: bool
    bytes_received: int


@overload
def _get_jwt(http: httpx.Client, url: str, cached: CachedList | None, cap: int) -> _Fetch: ...
@overload
def _get_jwt(http: httpx.Client, url: str, cached: CachedList | None, cap: int, *,
             missing_ok: bool) -> _Fetch | None: ...
def _get_jwt(http: httpx.Client, url: str, cached: CachedList | None, cap: int, *,
             missing_ok: bool = False) -> _Fetch | None:
    """The JWT at ``url``; with ``missing_ok`` a 404 is None (nothing published there)."""
    headers = {"Accept": "application/jwt, application/statuslist+jwt"}
    if cached is not None and cached.etag:
        headers["If-None-Match"] = cached.etag
    status, body, etag = get_capped(http, url, headers, cap, missing_ok=missing_ok)
    if status == 404:
        return None
    if status == 304:
        if cached is None or not cached.etag:
            raise SyncError("BAD_RESPONSE", f"{url} answered 304 to an unconditional request")
        return _Fetch(cached, True, 0)
    try:
        jwt = body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise SyncError("BAD_RESPONSE", f"{url} did not answer with a JWT") from None
    if not _JWT_RE.fullmatch(jwt):
        raise SyncError("BAD_RESPONSE", f"{url} did not answer with a compact JWT")
    return _Fetch(CachedList(jwt, etag), False, len(body))


def _status_list_ids(http: httpx.Client, base: str, path: str) -> list[str]:
    url = f"{base}{path}"
    _, body, _ = get_capped(http, url, {"Accept": "application/json"}, _MAX_INDEX)
    try:
        index = json.loads(body)
        entries = index["status_lists"]
        if not isinstance(entries, list) or len(entries) > _MAX_STATUS_LISTS:
            raise TypeError("status_lists must be a list")
        ids = [entry["id"] for entry in entries]
    except (ValueError, KeyError, TypeError) as error:
        raise SyncError("BAD_RESPONSE", f"{url}: not a status list index ({error})") from None
    for list_id in ids:
        if not isinstance(list_id, str) or not _LIST_ID_RE.fullmatch(list_id):
            raise SyncError("BAD_RESPONSE", f"{url}: bad status list id {list_id!r}")
    if len(set(ids)) != len(ids):
        raise SyncError("BAD_RESPONSE", f"{url}: duplicate status list ids")
    return ids


@contextmanager
def sync_client(client: httpx.Client | None, timeout: float) -> Iterator[httpx.Client]:
    """The caller's client, or one of ours (no redirects: a list's source is never moved
    by the server), closed afterwards."""
    if client is not None:
        yield client
        return
    with httpx.Client(timeout=timeout, follow_redirects=False,
                      headers={"User-Agent": "fmc-verifier"}) as http:
        yield http


def store_contents(cache: VerifierCache, contents: CacheContents) -> None:
    """Write a verified sync to the cache, a failure as a SyncError with its code."""
    try:
        cache.store(contents)
    except CacheError as error:
        raise SyncError(error.code, error.detail) from None
    except OSError as error:
        raise SyncError("CACHE_WRITE_FAILED", f"cannot write the cache: {error}") from None


def get_capped(
    http: httpx.Client, url: str, headers: dict[str, str], cap: int, *, missing_ok: bool = False
) -> tuple[int, bytes, str | None]:
    """(status, body, ETag) of a GET read to at most ``cap`` bytes; a 304 only when an
    ``If-None-Match`` asked for one (an unasked 304 is a server error), SyncError else."""
    try:
        with http.stream("GET", url, headers=headers) as response:
            if response.status_code == 304 and "If-None-Match" in headers:
                return 304, b"", response.headers.get("etag")
            if response.status_code == 404 and missing_ok:
                return 404, b"", None
            if response.status_code != 200:
                raise SyncError("SERVER_ERROR", f"{url} answered HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise SyncError("BAD_RESPONSE", f"{url} sent more than {cap} bytes")
                chunks.append(chunk)
            return 200, b"".join(chunks), response.headers.get("etag")
    except httpx.HTTPError as error:
        raise SyncError("NETWORK_UNAVAILABLE", f"{url}: {type(error).__name__}: {error}") from None


def mirror_bodies(
    http: httpx.Client, bases: Sequence[str], path: str, *, cap: int
) -> Iterator[tuple[str, bytes]]:
    """``(base, body)`` of ``path`` from each of ``bases`` in order, skipping those that
    cannot be reached or do not answer 200 within ``cap`` bytes. The caller verifies each
    body and stops at the first that passes (nothing here is trusted)."""
    for base in bases:
        try:
            _, body, _ = get_capped(http, f"{_server_base(base)}{path}", {}, cap)
        except SyncError:
            continue
        yield base, body


def fetch_from_mirrors(
    http: httpx.Client, bases: Sequence[str], path: str, *, cap: int,
    accept: Callable[[bytes], T],
) -> T:
    """What ``accept`` makes of the first body of ``path`` it does not refuse, trying
    ``bases`` in order. ``accept`` verifies and raises FmcError or SyncError to move on;
    when every mirror fails, SyncError MIRRORS_EXHAUSTED names the last failure."""
    last = "no mirror answered"
    for base, body in mirror_bodies(http, bases, path, cap=cap):
        try:
            return accept(body)
        except (FmcError, SyncError) as error:
            last = f"{base}{path} refused: {error}"
    raise SyncError("MIRRORS_EXHAUSTED", last)
