"""``verifier sync`` pinned to the national root: the federation list, then every city's
status lists, verified and stored in a national cache (format 2, verifier.cache).

Steps, in order:

1. The federation list from ``{server}/v1/federation-list``, then from each mirror in
   order (``{mirror}/v1/federation-list``) until one passes
   ``verify_federation_list(held=cached)``: garbage, another root, a rollback, a fork or
   a freeze is refused and the next source is tried. If none passes, the sync fails with
   the first refusal's code (NETWORK_UNAVAILABLE when nothing answered) and the cache is
   unchanged.
2. For every ``active`` city: its list index at ``{status_url}`` and each list at
   ``{status_url}/{list_id}``, then from each mirror
   (``{mirror}/v1/federation/{city}/status-lists[/{list_id}]``). The lists are signed by
   city keys that the verified federation list names, so the source does not matter;
   each is verified with **that city's** keys alone (another city's list is UNKNOWN_KEY),
   must carry the id asked for, must not be older than the one held and must not have
   expired. A list refused from every source keeps the one held.
3. One city unreachable does not block the others: its lists held are kept, and its cards
   answer STATUS_UNAVAILABLE once they go stale. The report says so per city.
4. The lists of suspended, removed or no longer listed cities are dropped.
5. The cache is written once, atomically (lists first, then the manifest).

Freshness per city comes from its own signed status lists (``exp``, and ``iat + ttl``
plus the policy's status grace, as for one city); the federation list's ``exp`` bounds
every city's keys. City timestamps (``/v1/timestamp``) are not fetched: the federation
entry carries no city timestamp keys, and the national timestamp role is not built.

Example::

    report = sync_federation(VerifierCache(path), server="https://national.example.cn",
                             mirrors=("https://mirror.example.cn",),
                             root_fingerprint=NATIONAL_PIN, now=int(time.time()))
    print(report.federation_version, report.cities["CN-HZ"].outcome)   # "updated"
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import quote, urlsplit

import httpx

from schemas.codes import FmcError
from schemas.federation import FederationClaims, IssuerEntry, IssuerState
from schemas.status_list import StatusListClaims, day_list_retired
from schemas.trust_list import TrustListClaims
from verifier.cache import (
    KIND_NATIONAL,
    CacheContents,
    CachedList,
    CacheError,
    CacheSnapshot,
    VerifierCache,
    city_list_key,
)
from verifier.federation import read_federation_list, verify_federation_list
from verifier.sync import SyncError, get_capped, store_contents, sync_client
from verifier.trust import verify_status_list

__all__ = ["CitySync", "FederationSyncReport", "federation_root_matches", "sync_federation"]

_MAX_FEDERATION_LIST = 1024 * 1024
_MAX_STATUS_LIST = 8 * 1024 * 1024
_MAX_INDEX = 256 * 1024
_MAX_STATUS_LISTS = 256
_PARALLEL_CITIES = 8
_LIST_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
_JWT_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$")
_FINGERPRINT_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class CitySync:
    """What happened to one city's lists.

    ``outcome``: ``updated`` / ``unchanged`` (every list passed), ``kept`` (no source
    answered well for at least one list: the lists held are kept), ``dropped`` (the city
    is suspended, removed or gone: its lists are deleted)."""

    code: str
    state: str
    outcome: str
    # list id -> updated | unchanged | kept | dropped (held, but no longer verifies)
    lists: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None  # every refusal or network error, for the operator


@dataclass(frozen=True)
class FederationSyncReport:
    server: str
    mirrors: tuple[str, ...]
    root_fingerprint: str
    federation_version: int
    federation_expires_at: int
    federation_updated: bool
    federation_source: str  # where the accepted list came from
    cities: Mapping[str, CitySync]
    bytes_received: int
    synced_at: int


def federation_root_matches(http: httpx.Client, server: str, root_fingerprint: str) -> bool:
    """Whether ``server`` publishes a federation list signed by the pinned root: how a
    first sync tells a national pin from a city pin (a city root never signs one)."""
    try:
        status, body, _ = get_capped(http, f"{server}/v1/federation-list", {}, _MAX_FEDERATION_LIST)
        if status != 200:
            return False
        read_federation_list(body.decode("ascii").strip(),
                             pinned_root_fingerprint=root_fingerprint)
    except (SyncError, FmcError, UnicodeDecodeError, ValueError):
        return False
    return True


def sync_federation(
    cache: VerifierCache,
    *,
    server: str | None,
    root_fingerprint: str | None,
    now: int,
    mirrors: Sequence[str] = (),
    client: httpx.Client | None = None,
    timeout: float = 10.0,
) -> FederationSyncReport:
    """Bring a national cache up to date; raise :class:`SyncError` and keep the old cache
    when the federation list cannot be had. ``server``, ``mirrors`` and the root default to
    the ones the cache remembers."""
    with cache.sync_lock():
        try:
            pinned, kind = cache.pinned_root(), cache.pinned_kind()
        except CacheError as error:
            raise SyncError(error.code, error.detail) from None
        if root_fingerprint is not None and not _FINGERPRINT_RE.fullmatch(root_fingerprint):
            raise SyncError("BAD_ROOT", "a root fingerprint (RFC 7638 thumbprint) is 43 "
                            "base64url characters")
        root = root_fingerprint or pinned
        if root is None:
            raise SyncError("NO_ROOT", "the first sync needs --root FINGERPRINT")
        if pinned is not None and (root != pinned or kind != KIND_NATIONAL):
            raise SyncError("ROOT_MISMATCH", f"this cache is pinned to the {kind} root "
                            f"{pinned}, not the national root {root}; use a new cache")
        previous = _previous(cache)
        base = _base(server or (previous.contents.server if previous else None))
        sources = tuple(_base(m) for m in (mirrors or (previous.contents.mirrors
                                                       if previous else ())))
        with sync_client(client, timeout) as http:
            report, contents = _fetch_all(http, base, sources, root, previous, now)
        store_contents(cache, contents)
        return report


def _previous(cache: VerifierCache) -> CacheSnapshot | None:
    try:
        snapshot = cache.load()
    except CacheError:
        return None  # nothing usable yet: fetch afresh (the pinned root still holds)
    return snapshot if snapshot.federation is not None else None


def _base(url: str | None) -> str:
    if not url:
        raise SyncError("NO_SERVER", "the first sync needs --server URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise SyncError("BAD_SERVER", f"not an http(s) server URL: {url!r}")
    return url.rstrip("/")


def _fetch_all(http: httpx.Client, base: str, mirrors: tuple[str, ...], root: str,
               previous: CacheSnapshot | None, now: int
               ) -> tuple[FederationSyncReport, CacheContents]:
    held = previous.federation if previous is not None else None
    federation, federation_jwt, source, received = _federation_list(
        http, (base, *mirrors), root, held,
        previous.contents.trust_list if previous is not None else None, now)
    old_lists: Mapping[str, CachedList] = previous.contents.status_lists if previous else {}
    old_claims: Mapping[str, StatusListClaims] = previous.status_lists if previous else {}

    new_lists: dict[str, CachedList] = {}
    cities: dict[str, CitySync] = {}
    active = [entry for entry in federation.issuers if entry.state is IssuerState.ACTIVE]
    with ThreadPoolExecutor(max_workers=_PARALLEL_CITIES) as pool:
        results = list(pool.map(
            lambda entry: _city_lists(http, entry, federation, mirrors, old_lists,
                                      old_claims, now), active))
    for entry, (city, lists, city_bytes) in zip(active, results, strict=True):
        cities[entry.code] = city
        new_lists.update(lists)
        received += city_bytes
    for entry in federation.issuers:
        if entry.state is not IssuerState.ACTIVE:
            cities[entry.code] = CitySync(entry.code, entry.state.value, "dropped")
    for gone in sorted({key.split("/", 1)[0] for key in old_lists} - set(cities)):
        cities[gone] = CitySync(gone, "unlisted", "dropped")

    contents = CacheContents(root_fingerprint=root, server=base, synced_at=now,
                             trust_list=federation_jwt, kind=KIND_NATIONAL,
                             status_lists=MappingProxyType(new_lists), mirrors=mirrors)
    report = FederationSyncReport(
        server=base, mirrors=mirrors, root_fingerprint=root,
        federation_version=federation.version,
        federation_expires_at=federation.expires_at,
        federation_updated=(previous is None
                            or previous.contents.trust_list.jwt != federation_jwt.jwt),
        federation_source=source, cities=MappingProxyType(cities),
        bytes_received=received, synced_at=now)
    return report, contents


def _federation_list(http: httpx.Client, sources: tuple[str, ...], root: str,
                     held: FederationClaims | None, held_jwt: CachedList | None, now: int
                     ) -> tuple[FederationClaims, CachedList, str, int]:
    """The first source's list that verifies against the pin and the held list."""
    refusal: SyncError | None = None
    network: SyncError | None = None
    received = 0
    for source in sources:
        url = f"{source}/v1/federation-list"
        try:
            fetched, size = _get_jwt(http, url, _MAX_FEDERATION_LIST, held_jwt)
            received += size
            claims = verify_federation_list(fetched.jwt, pinned_root_fingerprint=root,
                                            now=now, held=held)
        except FmcError as error:
            refusal = refusal or SyncError(error.code.value,
                                           f"federation list from {source} refused: "
                                           f"{error.detail}")
            continue
        except SyncError as error:
            if error.code in ("NETWORK_UNAVAILABLE", "SERVER_ERROR"):
                network = network or error
            else:
                refusal = refusal or error
            continue
        return claims, fetched, source, received
    failure = refusal or network
    if failure is None:  # no source at all (cannot happen: the server is always one)
        raise SyncError("NO_SERVER", "no server to fetch the federation list from")
    raise failure


def _city_lists(http: httpx.Client, entry: IssuerEntry, federation: FederationClaims,
                mirrors: tuple[str, ...], old_lists: Mapping[str, CachedList],
                old_claims: Mapping[str, StatusListClaims], now: int
                ) -> tuple[CitySync, dict[str, CachedList], int]:
    """One city's lists from its status_url, else from each mirror; never raises."""
    trust_list = entry.as_trust_list(federation)
    prefix = f"{entry.code}/"
    held = {key[len(prefix):]: cached for key, cached in old_lists.items()
            if key.startswith(prefix)}
    bases = (entry.status_url.rstrip("/"),
             *(f"{m}/v1/federation/{quote(entry.code, safe='')}/status-lists" for m in mirrors))
    received = 0
    errors: list[str] = []
    list_ids: list[str] | None = None
    for base in bases:
        try:
            list_ids = _index(http, base)
            break
        except SyncError as error:
            errors.append(f"{error.code}: {error.detail}")
    lists: dict[str, CachedList] = {}
    outcomes: dict[str, str] = {}
    # Unreachable: the held lists are kept, but not a day list retired since (P13.3).
    for list_id in (list_ids if list_ids is not None else
                    sorted(i for i in held if not day_list_retired(i, now))):
        key = city_list_key(entry.code, list_id)
        cached = held.get(list_id)
        older = old_claims.get(key)
        got: CachedList | None = None
        for base in bases if list_ids is not None else ():
            url = f"{base}/{quote(list_id, safe='')}"
            try:
                fetched, size = _get_jwt(http, url, _MAX_STATUS_LIST, cached)
                received += size
                claims = verify_status_list(fetched.jwt, trust_list=trust_list)
                if claims.list_id != list_id:
                    raise SyncError("BAD_RESPONSE", f"{url} carries status list "
                                    f"{claims.list_id}")
                if older is not None and claims.issued_at < older.issued_at:
                    raise SyncError("STATUS_UNAVAILABLE", f"{url} is older than the one held")
                if claims.expires_at <= now:
                    raise SyncError("STATUS_UNAVAILABLE", f"{url} has expired")
            except FmcError as error:
                errors.append(f"{error.code.value}: {url}: {error.detail}")
                continue
            except SyncError as error:
                errors.append(f"{error.code}: {error.detail}")
                continue
            got = fetched
            break
        if got is not None:
            lists[key] = got
            outcomes[list_id] = ("unchanged" if cached is not None and cached.jwt == got.jwt
                                 else "updated")
        elif cached is not None and _still_verifies(cached, trust_list):
            lists[key] = cached
            outcomes[list_id] = "kept"
        elif cached is not None:  # signed by a key the new list no longer trusts
            outcomes[list_id] = "dropped"
    kept = list_ids is None or bool({"kept", "dropped"} & set(outcomes.values())) or any(
        list_id not in outcomes for list_id in list_ids)
    outcome = ("kept" if kept else
               "updated" if "updated" in outcomes.values() else "unchanged")
    return (CitySync(entry.code, entry.state.value, outcome, MappingProxyType(outcomes),
                     "; ".join(errors) if kept else None), lists, received)


def _still_verifies(cached: CachedList, trust_list: TrustListClaims) -> bool:
    try:
        verify_status_list(cached.jwt, trust_list=trust_list)
    except FmcError:
        return False
    return True


def _index(http: httpx.Client, base: str) -> list[str]:
    _, body, _ = get_capped(http, base, {"Accept": "application/json"}, _MAX_INDEX)
    try:
        entries = json.loads(body)["status_lists"]
        if not isinstance(entries, list) or len(entries) > _MAX_STATUS_LISTS:
            raise TypeError("status_lists must be a list")
        ids = [entry["id"] for entry in entries]
    except (ValueError, KeyError, TypeError) as error:
        raise SyncError("BAD_RESPONSE", f"{base}: not a status list index ({error})") from None
    if not all(isinstance(i, str) and _LIST_ID_RE.fullmatch(i) for i in ids) or \
            len(set(ids)) != len(ids):
        raise SyncError("BAD_RESPONSE", f"{base}: bad or repeated status list ids")
    return ids


def _get_jwt(http: httpx.Client, url: str, cap: int,
             cached: CachedList | None = None) -> tuple[CachedList, int]:
    """The JWT at ``url`` (with its ETag), or ``cached`` again on a 304 to its ETag; the
    caller verifies either exactly the same way."""
    headers = {"Accept": "application/jwt"}
    if cached is not None and cached.etag:
        headers["If-None-Match"] = cached.etag
    status, body, etag = get_capped(http, url, headers, cap)
    if status == 304:
        if cached is None or not cached.etag:
            raise SyncError("BAD_RESPONSE", f"{url} answered 304 to an unconditional request")
        return cached, 0
    try:
        jwt = body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise SyncError("BAD_RESPONSE", f"{url} did not answer with a JWT") from None
    if not _JWT_RE.fullmatch(jwt):
        raise SyncError("BAD_RESPONSE", f"{url} did not answer with a compact JWT")
    return CachedList(jwt, etag), len(body)
