"""``verifier sync`` pinned to the national root, over real HTTP: one attack per test.

A tiny real server plays the national publication and both cities' status list URLs,
and a second one plays a mirror; what they serve is changed between syncs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from federation_kit import (
    HANGZHOU_KEY,
    NATIONAL_FINGERPRINT,
    REVOKED_IN_HANGZHOU,
    federation,
    federation_jwt,
    hangzhou,
    status_list_jwt,
    yiwu,
)
from kit.net import serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from keys import sign_credential, sign_presentation
from schemas import IssuerKey, KeyState, Purpose, ResultCode
from schemas.credential import StatusRef
from schemas.federation import FederationClaims, IssuerEntry, IssuerState
from support import DAY, DEVICE, ISSUER_KEY, NOW, ROOT_FINGERPRINT, World, credential
from verifier import POLICIES, verify_presentation
from verifier.cache import KIND_NATIONAL, CacheContents, CachedList, VerifierCache
from verifier.cli import app
from verifier.federation_sync import sync_federation
from verifier.sync import SyncError

runner = CliRunner()


@dataclass
class Site:
    """What one real HTTP server answers: path -> body (404 when absent)."""

    files: dict[str, str] = field(default_factory=dict)

    def app(self) -> Starlette:
        async def any_path(request: Request) -> Response:
            body = self.files.get(request.url.path)
            if body is None:
                return PlainTextResponse("not here", status_code=404)
            etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:16] + '"'
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"ETag": etag})
            return PlainTextResponse(body, headers={"ETag": etag})
        return Starlette(routes=[Route("/{path:path}", any_path)])


@dataclass
class Country:
    national: Site
    mirror: Site
    url: str
    mirror_url: str

    def publish(self, claims: FederationClaims) -> FederationClaims:
        self.national.files["/v1/federation-list"] = federation_jwt(claims)
        return claims

    def claims(self, *entries: IssuerEntry, version: int, issued_at: int = NOW - DAY,
               expires_at: int = NOW + 7 * DAY) -> FederationClaims:
        """Both cities (or ``entries``) with their status lists on the national server."""
        urls = {"CN-YW": f"{self.url}/yw/v1/status-lists",
                "CN-HZ": f"{self.url}/hz/v1/status-lists"}
        chosen = entries or (yiwu(), hangzhou())
        return federation(*(replace(e, status_url=urls[e.code]) for e in chosen),
                          version=version, issued_at=issued_at, expires_at=expires_at)

    def serve_lists(self, site: Site, prefix: str, code: str, jwt: str | None) -> None:
        if jwt is None:
            site.files.pop(f"{prefix}/1", None)
            site.files.pop(prefix, None)
            return
        site.files[prefix] = json.dumps({"status_lists": [{"id": "1", "uri": f"{prefix}/1"}]})
        site.files[f"{prefix}/1"] = jwt


YW_LIST = status_list_jwt("CN-YW", ISSUER_KEY)
HZ_LIST = status_list_jwt("CN-HZ", HANGZHOU_KEY, revoked=(REVOKED_IN_HANGZHOU,))


@pytest.fixture
def country() -> Iterator[Country]:
    national, mirror = Site(), Site()
    with serving(national.app()) as url, serving(mirror.app()) as mirror_url:
        land = Country(national, mirror, url, mirror_url)
        land.serve_lists(national, "/yw/v1/status-lists", "CN-YW", YW_LIST)
        land.serve_lists(national, "/hz/v1/status-lists", "CN-HZ", HZ_LIST)
        land.publish(land.claims(version=1))
        yield land


def _sync(cache: VerifierCache, country: Country, *, now: int = NOW,
          mirrors: tuple[str, ...] = ()) -> object:
    return sync_federation(cache, server=country.url, root_fingerprint=NATIONAL_FINGERPRINT,
                           now=now, mirrors=mirrors)


def _card(issuer: str = "CN-HZ", *, index: int = 123_456) -> str:
    signer = HANGZHOU_KEY if issuer == "CN-HZ" else ISSUER_KEY
    jws = sign_credential(credential(Purpose.SVC, issuer=issuer,
                                     status=StatusRef("1", index)), signer)
    return sign_presentation(jws, DEVICE, proof_time=NOW, purpose="svc")


def _code(cache: VerifierCache, text: str, *, now: int = NOW) -> ResultCode:
    return verify_presentation(text, state=cache.load().state, policy=POLICIES["hospital"],
                               now=now, replay_cache=None).code


def _files(cache: VerifierCache) -> dict[str, bytes]:
    return {str(p.relative_to(cache.directory)): p.read_bytes()
            for p in sorted(cache.directory.rglob("*")) if p.is_file() and "lock" not in p.name}


def test_first_sync_pins_the_country_and_accepts_both_cities(tmp_path: Path,
                                                             country: Country) -> None:
    cache = VerifierCache(tmp_path / "cache")
    report = _sync(cache, country)
    assert cache.pinned_kind() == KIND_NATIONAL
    assert {code: city.outcome for code, city in report.cities.items()} == {  # type: ignore[attr-defined]
        "CN-YW": "updated", "CN-HZ": "updated"}
    assert _code(cache, _card("CN-HZ")) is ResultCode.OK
    assert _code(cache, _card("CN-YW")) is ResultCode.OK
    # List ids repeat across cities: each city's list 1 decides for its own cards.
    assert _code(cache, _card("CN-HZ", index=REVOKED_IN_HANGZHOU)) is ResultCode.REVOKED
    assert _code(cache, _card("CN-YW", index=REVOKED_IN_HANGZHOU)) is ResultCode.OK
    again = _sync(cache, country)
    assert {c.outcome for c in again.cities.values()} == {"unchanged"}  # type: ignore[attr-defined]
    assert again.bytes_received == 0  # type: ignore[attr-defined]  # ETags: 304s only
    assert _code(cache, _card("CN-HZ")) is ResultCode.OK


@pytest.mark.parametrize(("name", "offered", "expected"), [
    ("rolled back", lambda c: c.claims(version=1), ResultCode.TRUST_LIST_ROLLBACK),
    ("forked", lambda c: c.claims(version=2, expires_at=NOW + 6 * DAY),
     ResultCode.TRUST_LIST_ROLLBACK),
    ("frozen", lambda c: c.claims(version=3, issued_at=NOW - 9 * DAY, expires_at=NOW - 1),
     ResultCode.TRUST_LIST_STALE),
    ("signed by another root", None, ResultCode.UNKNOWN_KEY),
])
def test_a_bad_federation_list_leaves_the_cache_unchanged(
    tmp_path: Path, country: Country, name: str, offered: object, expected: ResultCode
) -> None:
    cache = VerifierCache(tmp_path / "cache")
    country.publish(country.claims(version=2))
    _sync(cache, country)
    before = _files(cache)
    if offered is None:
        from federation_kit import OTHER_NATIONAL_ROOT
        country.national.files["/v1/federation-list"] = federation_jwt(
            country.claims(version=3), root=OTHER_NATIONAL_ROOT)
    else:
        country.publish(offered(country))  # type: ignore[operator]
    with pytest.raises(SyncError) as refused:
        _sync(cache, country)
    assert refused.value.code == expected.value
    assert _files(cache) == before


def test_a_mirror_serves_when_the_server_serves_a_rolled_back_list(
        tmp_path: Path, country: Country) -> None:
    cache = VerifierCache(tmp_path / "cache")
    country.publish(country.claims(version=2))
    _sync(cache, country)
    country.publish(country.claims(version=1))  # the server replays an old list
    country.mirror.files["/v1/federation-list"] = federation_jwt(country.claims(version=3))
    report = _sync(cache, country, mirrors=(country.mirror_url,))
    assert report.federation_version == 3  # type: ignore[attr-defined]
    assert report.federation_source == country.mirror_url  # type: ignore[attr-defined]


def test_a_suspended_city_is_cut_off_at_the_next_sync(tmp_path: Path,
                                                      country: Country) -> None:
    cache = VerifierCache(tmp_path / "cache")
    _sync(cache, country)
    hz = hangzhou(state=IssuerState.SUSPENDED)
    country.publish(country.claims(yiwu(), hz, version=2))
    report = _sync(cache, country)
    assert report.cities["CN-HZ"].outcome == "dropped"  # type: ignore[attr-defined]
    assert not any(key.startswith("CN-HZ/") for key in cache.load().status_lists)
    assert _code(cache, _card("CN-HZ")) is ResultCode.ISSUER_SUSPENDED
    assert _code(cache, _card("CN-YW")) is ResultCode.OK


def test_a_removed_city_is_cut_off(tmp_path: Path, country: Country) -> None:
    cache = VerifierCache(tmp_path / "cache")
    _sync(cache, country)
    country.publish(country.claims(yiwu(), hangzhou(state=IssuerState.REMOVED), version=2))
    _sync(cache, country)
    assert _code(cache, _card("CN-HZ")) is ResultCode.ISSUER_REMOVED


def test_a_city_key_marked_compromised(tmp_path: Path, country: Country) -> None:
    cache = VerifierCache(tmp_path / "cache")
    _sync(cache, country)
    compromised = hangzhou(keys=(
        IssuerKey("h1", HANGZHOU_KEY.public_key, KeyState.COMPROMISED, NOW - 30 * DAY),
        IssuerKey("h2", bytes(range(60, 92)), KeyState.ACTIVE, NOW - DAY)))
    country.publish(country.claims(yiwu(), compromised, version=2))
    report = _sync(cache, country)
    # Its list, signed by h1, no longer verifies: kept from before is not possible either
    # (the held one fails too), so Hangzhou is "kept" with nothing, and cards are refused.
    assert report.cities["CN-HZ"].outcome == "kept"  # type: ignore[attr-defined]
    assert _code(cache, _card("CN-HZ")) is ResultCode.KEY_COMPROMISED


def test_one_city_unreachable_does_not_block_the_others(tmp_path: Path,
                                                        country: Country) -> None:
    cache = VerifierCache(tmp_path / "cache")
    _sync(cache, country)
    country.serve_lists(country.national, "/hz/v1/status-lists", "CN-HZ", None)
    newer_yw = status_list_jwt("CN-YW", ISSUER_KEY, issued_at=NOW - 10)
    country.serve_lists(country.national, "/yw/v1/status-lists", "CN-YW", newer_yw)
    report = _sync(cache, country)
    assert report.cities["CN-YW"].outcome == "updated"  # type: ignore[attr-defined]
    assert report.cities["CN-HZ"].outcome == "kept"  # type: ignore[attr-defined]
    assert _code(cache, _card("CN-HZ")) is ResultCode.OK  # the held list still fresh
    # Once the held list is stale, Hangzhou's cards cannot be checked; Yiwu's still can.
    later = NOW + 2 * 3600
    assert _code(cache, _card("CN-HZ"), now=later) is ResultCode.STATUS_UNAVAILABLE


def test_a_mirror_serving_another_citys_list_under_this_citys_url(
        tmp_path: Path, country: Country) -> None:
    cache = VerifierCache(tmp_path / "cache")
    _sync(cache, country)
    # The server loses Hangzhou's lists; the mirror offers Yiwu's list (id 1) as Hangzhou's.
    country.serve_lists(country.national, "/hz/v1/status-lists", "CN-HZ", None)
    country.serve_lists(country.mirror, "/v1/federation/CN-HZ/status-lists", "CN-HZ",
                        status_list_jwt("CN-YW", ISSUER_KEY, issued_at=NOW))
    report = _sync(cache, country, mirrors=(country.mirror_url,))
    hz = report.cities["CN-HZ"]  # type: ignore[attr-defined]
    assert hz.outcome == "kept" and "UNKNOWN_KEY" in hz.error
    held = cache.load().status_lists["CN-HZ/1"]
    assert held.statuses.get(REVOKED_IN_HANGZHOU) != 0  # still Hangzhou's own list
    # A genuine Hangzhou list from the mirror is taken.
    country.serve_lists(country.mirror, "/v1/federation/CN-HZ/status-lists", "CN-HZ",
                        status_list_jwt("CN-HZ", HANGZHOU_KEY, issued_at=NOW))
    assert _sync(cache, country, mirrors=(country.mirror_url,)).cities[  # type: ignore[attr-defined]
        "CN-HZ"].outcome == "updated"


def test_pin_kind_cannot_change(tmp_path: Path, country: Country) -> None:
    city_cache = VerifierCache(tmp_path / "city")
    world = World()
    city_cache.store(CacheContents(ROOT_FINGERPRINT, "http://127.0.0.1:9", NOW,
                                   CachedList(world.trust_list_jwt())))
    with pytest.raises(SyncError) as refused:
        _sync(city_cache, country)
    assert refused.value.code == "ROOT_MISMATCH"
    national_cache = VerifierCache(tmp_path / "national")
    _sync(national_cache, country)
    from verifier.cache import CacheError

    with pytest.raises(CacheError) as mismatch:
        national_cache.store(CacheContents(NATIONAL_FINGERPRINT, None, NOW,
                                           CachedList(world.trust_list_jwt())))
    assert mismatch.value.code == "ROOT_MISMATCH"
    assert city_cache.pinned_kind() == "city"  # a pre-P10 cache reads as a city's


def test_cli_sync_and_check_show_the_issuing_city(tmp_path: Path, country: Country) -> None:
    cache = str(tmp_path / "cache")
    at = "2027-01-15T08:00:00Z"
    synced = runner.invoke(app, ["--cache", cache, "sync", "--server", country.url,
                                 "--root", NATIONAL_FINGERPRINT, "--json", "--at", at])
    assert synced.exit_code == 0, synced.output
    answer = json.loads(synced.output)
    assert answer["kind"] == "national" and answer["cities"]["CN-HZ"]["outcome"] == "updated"
    again = runner.invoke(app, ["--cache", cache, "sync", "--at", at])  # remembered
    assert again.exit_code == 0 and "CN-HZ" in again.output
    checked = runner.invoke(app, ["--cache", cache, "check", "--as", "hospital", "--json",
                                  "--at", at, "--text", _card("CN-HZ")])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["issuer"] == {"code": "CN-HZ", "name_en": "Hangzhou",
                                                    "name_zh": "杭州"}
    text = runner.invoke(app, ["--cache", cache, "check", "--as", "hospital", "--lang", "zh",
                               "--at", at, "--text", _card("CN-HZ")])
    assert "杭州" in text.output


def test_the_single_city_sync_refuses_a_national_cache(tmp_path: Path,
                                                       country: Country) -> None:
    from verifier.sync import sync_cache

    cache = VerifierCache(tmp_path / "cache")
    _sync(cache, country)
    with pytest.raises(SyncError) as refused:
        sync_cache(cache, server=country.url, root_fingerprint=None, now=NOW)
    assert refused.value.code == "ROOT_MISMATCH"


def test_a_damaged_national_cache_is_refused_and_the_next_sync_repairs_it(
        tmp_path: Path, country: Country) -> None:
    from verifier.cache import CacheError

    cache = VerifierCache(tmp_path / "cache")
    _sync(cache, country)
    manifest = json.loads(cache.manifest_path.read_text())
    damaged = cache.directory / "lists" / manifest["status_lists"]["CN-HZ/1"]["file"]
    damaged.write_bytes(damaged.read_bytes()[:-3] + b"AAA")
    with pytest.raises(CacheError) as refused:
        cache.load()
    assert refused.value.code == "CACHE_CORRUPT"
    _sync(cache, country)
    assert _code(cache, _card("CN-HZ")) is ResultCode.OK


def test_a_rolled_back_list_cannot_return_through_a_damaged_cache(
        tmp_path: Path, country: Country) -> None:
    """The floor remembers the federation version even when the manifest is lost."""
    from verifier.cache import CacheError

    cache = VerifierCache(tmp_path / "cache")
    country.publish(country.claims(version=2))
    _sync(cache, country)
    cache.manifest_path.write_text("{")
    (cache.directory / "manifest.prev.json").unlink(missing_ok=True)
    country.publish(country.claims(version=1))  # an old list, Hangzhou maybe still trusted
    _sync(cache, country)
    with pytest.raises(CacheError) as refused:
        cache.load()
    assert refused.value.code == "CACHE_ROLLBACK"


def test_a_304_does_not_keep_a_list_alive_past_its_expiry(tmp_path: Path,
                                                          country: Country) -> None:
    cache = VerifierCache(tmp_path / "cache")
    _sync(cache, country)
    with pytest.raises(SyncError) as refused:  # the server answers 304: the held list again
        _sync(cache, country, now=NOW + 8 * DAY)
    assert refused.value.code == ResultCode.TRUST_LIST_STALE.value
