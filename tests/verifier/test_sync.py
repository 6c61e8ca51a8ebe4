"""verifier sync against a fake authority over real HTTP: ETag, rollback, freeze, tampering,
network failure, and a cache that stays as it was whenever a sync fails."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest
from test_sync_authority import FakeAuthority, flip_one_byte, running, unused_url

import verifier.cache as cache_module
from keys import Ed25519Signer, jwk_thumbprint, public_jwk
from schemas import STATUS_REVOKED, IssuerKey, KeyState, Purpose
from support import DAY, ISSUER_KEY, NEXT_KEY, NOW, ROOT_FINGERPRINT, World, present
from verifier import POLICIES, MemoryReplayCache, ResultCode, verify_presentation
from verifier.cache import CacheError, VerifierCache
from verifier.sync import SyncError, sync_cache

INDEX = 123_456  # the status index of tests/support's credential


def _sync(cache: VerifierCache, authority: FakeAuthority, *, now: int = NOW,
          root: str | None = ROOT_FINGERPRINT) -> object:
    return sync_cache(cache, server=authority.url, root_fingerprint=root, now=now)


def _files(directory: Path) -> dict[str, bytes]:
    """Everything a sync writes (the lock file aside), to compare before and after."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != ".sync.lock"
    }


def _code_of(cache: VerifierCache, text: str, service: str = "hospital",
             now: int = NOW) -> ResultCode:
    state = cache.load().state
    return verify_presentation(text, state=state, policy=POLICIES[service], now=now,
                               replay_cache=MemoryReplayCache()).code


@pytest.fixture
def cache(tmp_path: Path) -> VerifierCache:
    return VerifierCache(tmp_path / "cache")


def test_first_sync_stores_verified_lists_and_pins_the_root(cache: VerifierCache) -> None:
    with running(FakeAuthority()) as authority:
        report = sync_cache(cache, server=authority.url + "/", root_fingerprint=ROOT_FINGERPRINT,
                            now=NOW)
    assert report.trust_list_version == 1 and report.trust_list_updated
    assert dict(report.status_lists) == {"1": "updated"}
    assert report.server == authority.url
    assert cache.pinned_root() == ROOT_FINGERPRINT
    snapshot = cache.load()
    assert snapshot.contents.synced_at == NOW and not snapshot.from_previous
    assert snapshot.contents.server == authority.url
    assert _code_of(cache, present(Purpose.SVC)) is ResultCode.OK


def test_unchanged_lists_cost_no_transfer(cache: VerifierCache) -> None:
    with running(FakeAuthority()) as authority:
        _sync(cache, authority)
        first_bytes = authority.bytes_sent()
        authority.requests.clear()
        report = sync_cache(cache, server=None, root_fingerprint=None, now=NOW + 60)
    assert report.bytes_received == 0
    assert dict(report.status_lists) == {"1": "unchanged"} and not report.trust_list_updated
    statuses = {path: status for path, status, _ in authority.requests}
    assert statuses == {"/v1/trust-list": 304, "/v1/status-lists": 200,
                        "/v1/status-lists/1": 304}
    assert authority.bytes_sent() < first_bytes / 5  # only the small index
    assert cache.load().contents.synced_at == NOW + 60  # a confirmed list is fresh again


def test_revocation_reaches_the_counter(cache: VerifierCache) -> None:
    authority = FakeAuthority()
    with running(authority):
        _sync(cache, authority)
        assert _code_of(cache, present(Purpose.SVC)) is ResultCode.OK
        authority.world.statuses.set(INDEX, STATUS_REVOKED)
        authority.world.status_issued = NOW - 30
        report = _sync(cache, authority)
    assert dict(report.status_lists) == {"1": "updated"}  # type: ignore[attr-defined]
    assert _code_of(cache, present(Purpose.SVC)) is ResultCode.REVOKED


TAMPERED = [
    pytest.param("trust-list", 1, {"BAD_SIGNATURE"}, id="trust-list-payload"),
    pytest.param("trust-list", 2, {"BAD_SIGNATURE"}, id="trust-list-signature"),
    pytest.param("trust-list", 0, {"BAD_SIGNATURE", "MALFORMED", "UNKNOWN_KEY"},
                 id="trust-list-header"),
    pytest.param("1", 1, {"BAD_SIGNATURE"}, id="status-list-payload"),
    pytest.param("1", 2, {"BAD_SIGNATURE"}, id="status-list-signature"),
    pytest.param("1", 0, {"BAD_SIGNATURE", "MALFORMED", "UNKNOWN_KEY"}, id="status-list-header"),
]


@pytest.mark.parametrize(("name", "part", "codes"), TAMPERED)
def test_one_changed_byte_is_refused_and_the_old_cache_kept(
    cache: VerifierCache, name: str, part: int, codes: set[str]
) -> None:
    authority = FakeAuthority()
    with running(authority):
        _sync(cache, authority)
        before = _files(cache.directory)
        # A newer list (revocation) arrives damaged in transit or forged.
        authority.world.statuses.set(INDEX, STATUS_REVOKED)
        authority.world.trust_version = 2
        authority.override[name] = flip_one_byte(authority.body(name), part)
        with pytest.raises(SyncError) as refused:
            _sync(cache, authority, now=NOW + 60)
    assert refused.value.code in codes and not refused.value.usage
    assert _files(cache.directory) == before
    assert cache.load().trust_list.version == 1


def test_rollback_is_refused(cache: VerifierCache) -> None:
    authority = FakeAuthority(world=World(trust_version=5))
    with running(authority):
        _sync(cache, authority)
        before = _files(cache.directory)
        authority.world.trust_version = 4
        with pytest.raises(SyncError) as refused:
            _sync(cache, authority)
    assert refused.value.code == "TRUST_LIST_ROLLBACK"
    assert _files(cache.directory) == before


@pytest.mark.parametrize(("field", "code"), [
    ("trust_expires", "TRUST_LIST_STALE"),
    ("status_expires", "STATUS_UNAVAILABLE"),
])
def test_an_expired_list_is_refused(cache: VerifierCache, field: str, code: str) -> None:
    authority = FakeAuthority()
    with running(authority):
        _sync(cache, authority)
        before = _files(cache.directory)
        setattr(authority.world, field, NOW + 100)
        with pytest.raises(SyncError) as refused:
            _sync(cache, authority, now=NOW + 200)
    assert refused.value.code == code
    assert _files(cache.directory) == before


def test_an_expired_list_is_refused_on_the_first_sync(cache: VerifierCache) -> None:
    authority = FakeAuthority(world=World(trust_expires=NOW - 1))
    with running(authority), pytest.raises(SyncError) as refused:
        _sync(cache, authority)
    assert refused.value.code == "TRUST_LIST_STALE"
    with pytest.raises(CacheError) as missing:
        cache.load()
    assert missing.value.code == "NO_CACHE"
    assert cache.pinned_root() is None  # nothing is pinned by a failed sync


def test_network_gone_keeps_the_cache(cache: VerifierCache) -> None:
    with running(FakeAuthority()) as authority:
        _sync(cache, authority)
    before = _files(cache.directory)
    with pytest.raises(SyncError) as down:
        sync_cache(cache, server=unused_url(), root_fingerprint=None, now=NOW + 60)
    assert down.value.code == "NETWORK_UNAVAILABLE"
    # The remembered server is gone too.
    with pytest.raises(SyncError) as gone:
        sync_cache(cache, server=None, root_fingerprint=None, now=NOW + 60, timeout=2)
    assert gone.value.code == "NETWORK_UNAVAILABLE"
    assert _files(cache.directory) == before
    assert _code_of(cache, present(Purpose.SVC)) is ResultCode.OK


def test_server_error_keeps_the_cache(cache: VerifierCache) -> None:
    authority = FakeAuthority()
    with running(authority):
        _sync(cache, authority)
        before = _files(cache.directory)
        authority.down = True
        with pytest.raises(SyncError) as failed:
            _sync(cache, authority)
    assert failed.value.code == "SERVER_ERROR"
    assert _files(cache.directory) == before


@pytest.mark.parametrize(("server", "root", "code"), [
    ("http://127.0.0.1:9", None, "NO_ROOT"),
    (None, ROOT_FINGERPRINT, "NO_SERVER"),
    ("ftp://authority.example", ROOT_FINGERPRINT, "BAD_SERVER"),
    ("not a url", ROOT_FINGERPRINT, "BAD_SERVER"),
])
def test_configuration_errors(cache: VerifierCache, server: str | None, root: str | None,
                              code: str) -> None:
    with pytest.raises(SyncError) as error:
        sync_cache(cache, server=server, root_fingerprint=root, now=NOW)
    assert error.value.code == code and error.value.usage


@pytest.mark.parametrize("root", ["hello", ROOT_FINGERPRINT + "=", ROOT_FINGERPRINT[:-1] + "/",
                                  ROOT_FINGERPRINT + "A", " " + ROOT_FINGERPRINT[1:]])
def test_a_malformed_root_is_refused_before_the_network(cache: VerifierCache, root: str) -> None:
    def no_network(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"the network was asked: {request.url}")

    with httpx.Client(transport=httpx.MockTransport(no_network)) as client, \
            pytest.raises(SyncError) as error:
        sync_cache(cache, server="http://127.0.0.1:9", root_fingerprint=root, now=NOW,
                   client=client)
    assert error.value.code == "BAD_ROOT" and error.value.usage


def test_another_root_is_refused(cache: VerifierCache) -> None:
    other_root = jwk_thumbprint(public_jwk(Ed25519Signer(bytes(range(9, 41))).public_key))
    with running(FakeAuthority()) as authority:
        with pytest.raises(SyncError) as unpinned:  # first sync: the list is not by that root
            _sync(cache, authority, root=other_root)
        assert unpinned.value.code == "UNKNOWN_KEY"
        _sync(cache, authority)
        with pytest.raises(SyncError) as mismatch:  # later: the cache is pinned
            _sync(cache, authority, root=other_root)
    assert mismatch.value.code == "ROOT_MISMATCH" and mismatch.value.usage


def test_key_rotation_is_followed(cache: VerifierCache) -> None:
    authority = FakeAuthority()
    with running(authority):
        _sync(cache, authority)
        world = authority.world
        world.keys = (
            IssuerKey("k1", ISSUER_KEY.public_key, KeyState.RETIRED, NOW - 30 * DAY, NOW),
            IssuerKey("k2", NEXT_KEY.public_key, KeyState.ACTIVE, NOW - 30 * DAY),
        )
        world.trust_version = 2
        # The status list did not change, so its ETag still matches, but its signer k1
        # is retired now: the sync must not keep it on the strength of a 304.
        with pytest.raises(SyncError) as refused:
            _sync(cache, authority, now=NOW + 60)
        assert refused.value.code == "UNKNOWN_KEY"
        assert cache.load().trust_list.version == 1
        authority.override["1"] = world.status_list_jwt(signer=NEXT_KEY)
        report = _sync(cache, authority, now=NOW + 60)
    assert report.trust_list_version == 2  # type: ignore[attr-defined]
    assert _code_of(cache, present(Purpose.SVC), now=NOW + 60) is ResultCode.OK
    assert _code_of(cache, present(Purpose.SVC, signer=NEXT_KEY, issued_at=NOW,
                                   proof_time=NOW + 60), now=NOW + 60) is ResultCode.OK


def test_a_list_no_longer_published_is_dropped(cache: VerifierCache) -> None:
    authority = FakeAuthority(list_ids=("1", "2"))
    with running(authority):
        first = _sync(cache, authority)
        assert set(first.status_lists) == {"1", "2"}  # type: ignore[attr-defined]
        authority.list_ids = ("1",)
        second = _sync(cache, authority)
    assert second.removed_status_lists == ("2",)  # type: ignore[attr-defined]
    assert set(cache.load().status_lists) == {"1"}
    assert len(list((cache.directory / "lists").iterdir())) <= 3  # old files cleaned up


def test_a_bad_index_is_refused(cache: VerifierCache) -> None:
    authority = FakeAuthority(list_ids=("../../trust-list",))
    with running(authority), pytest.raises(SyncError) as refused:
        _sync(cache, authority)
    assert refused.value.code == "BAD_RESPONSE"


def test_a_failed_write_leaves_the_old_cache(cache: VerifierCache,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    authority = FakeAuthority()
    with running(authority):
        _sync(cache, authority)
        before = cache.manifest_path.read_bytes()
        authority.world.statuses.set(INDEX, STATUS_REVOKED)
        real_write = cache_module._write_atomic

        def crash_on_manifest(path: Path, raw: bytes) -> None:
            if path.name == "manifest.json":
                raise OSError(28, "No space left on device")
            real_write(path, raw)

        monkeypatch.setattr(cache_module, "_write_atomic", crash_on_manifest)
        with pytest.raises(SyncError) as failed:
            _sync(cache, authority)
    assert failed.value.code == "CACHE_WRITE_FAILED"
    assert cache.manifest_path.read_bytes() == before
    assert _code_of(cache, present(Purpose.SVC)) is ResultCode.OK  # still the old lists
    assert not list(cache.directory.rglob(".*.tmp"))  # keys._atomic's temporaries



@pytest.mark.parametrize("leftover", [".s1.json.k2x9q1.tmp", ".tmp-k2x9q1"])
def test_a_killed_writers_temporary_is_removed_by_the_next_sync(
    cache: VerifierCache, leftover: str
) -> None:
    authority = FakeAuthority()
    with running(authority):
        _sync(cache, authority)
        lists_dir = cache.directory / "lists"
        (lists_dir / leftover).write_bytes(b"half a list")
        authority.world.statuses.set(INDEX, STATUS_REVOKED)
        _sync(cache, authority)
    assert not (lists_dir / leftover).exists()


def _break(cache: VerifierCache, how: str) -> None:
    manifest = cache.manifest_path
    if how == "truncated-manifest":
        manifest.write_bytes(manifest.read_bytes()[:40])
    elif how == "manifest-not-json":
        manifest.write_bytes(b"\x00\xff garbage")
    elif how == "truncated-list":
        for path in (cache.directory / "lists").iterdir():
            path.write_bytes(path.read_bytes()[:-7])
    elif how == "missing-list":
        for path in (cache.directory / "lists").iterdir():
            path.unlink()
    elif how == "forged-list":  # a valid-looking file under the right name, not signed
        for path in (cache.directory / "lists").iterdir():
            path.write_bytes(flip_one_byte(path.read_text()).encode())


BREAKS = ["truncated-manifest", "manifest-not-json", "truncated-list", "missing-list",
          "forged-list"]


@pytest.mark.parametrize("how", BREAKS)
def test_a_damaged_cache_is_a_clear_error(cache: VerifierCache, how: str) -> None:
    with running(FakeAuthority()) as authority:
        _sync(cache, authority)
    _break(cache, how)
    with pytest.raises(CacheError) as damaged:
        cache.load()
    assert damaged.value.code == "CACHE_CORRUPT"


@pytest.mark.parametrize("how", ["truncated-manifest", "manifest-not-json"])
def test_a_damaged_manifest_never_falls_back_to_older_lists(cache: VerifierCache,
                                                           how: str) -> None:
    authority = FakeAuthority()
    with running(authority):
        _sync(cache, authority)
        authority.world.trust_version = 2
        _sync(cache, authority, now=NOW + 60)
    _break(cache, how)
    with pytest.raises(CacheError) as refused:
        cache.load()
    assert refused.value.code == "CACHE_ROLLBACK"


@pytest.mark.parametrize("how", ["truncated-manifest", "manifest-not-json"])
def test_a_damaged_manifest_falls_back_when_the_previous_names_the_same_lists(
        cache: VerifierCache, how: str) -> None:
    authority = FakeAuthority()
    with running(authority):
        _sync(cache, authority)
        _sync(cache, authority, now=NOW + 60)  # nothing new: only the sync time moves
    _break(cache, how)
    snapshot = cache.load()
    assert snapshot.from_previous and snapshot.trust_list.version == 1


def test_a_sync_repairs_a_damaged_cache(cache: VerifierCache) -> None:
    authority = FakeAuthority()
    with running(authority):
        _sync(cache, authority)
        _break(cache, "truncated-list")
        report = _sync(cache, authority, now=NOW + 60)
    assert report.trust_list_updated  # type: ignore[attr-defined]
    assert _code_of(cache, present(Purpose.SVC)) is ResultCode.OK


def test_a_damaged_pin_is_reported(cache: VerifierCache) -> None:
    cache.directory.mkdir(parents=True)
    (cache.directory / "pinned-root").write_text("not a fingerprint")
    with pytest.raises(SyncError) as error:
        sync_cache(cache, server="http://127.0.0.1:9", root_fingerprint=None, now=NOW)
    assert error.value.code == "CACHE_CORRUPT"


def test_world_is_not_shared_between_tests() -> None:
    # FakeAuthority() builds a fresh World each time (the tests above mutate it).
    assert dataclasses.replace(World()).trust_version == 1
    assert FakeAuthority().world is not FakeAuthority().world


def test_an_authority_that_starts_publishing_a_timestamp(cache: VerifierCache) -> None:
    """P8.5 upgrade path: no timestamp (an older authority) checks as before; once one is
    published it is held, and a later 404 does not drop it."""
    from support import TIMESTAMP_KEYS, timestamp_jwt

    authority = FakeAuthority()
    with running(authority):
        first = sync_cache(cache, server=authority.url, root_fingerprint=ROOT_FINGERPRINT,
                           now=NOW)
        assert first.timestamp_version is None and cache.load().state.timestamp is None
        assert _code_of(cache, present(Purpose.SVC)) is ResultCode.OK
        upgraded = World(trust_version=2).trust_list_jwt(timestamp_keys=TIMESTAMP_KEYS)
        authority.override.update({"trust-list": upgraded,
                                   "timestamp": timestamp_jwt(upgraded, version=1)})
        for served in ("published", "withheld"):
            if served == "withheld":
                del authority.override["timestamp"]
            report = sync_cache(cache, server=None, root_fingerprint=None, now=NOW)
            assert report.timestamp_version == 1, served
    assert cache.load().state.timestamp is not None
    assert _code_of(cache, present(Purpose.SVC)) is ResultCode.OK
