"""P8.5 a counter cannot be frozen in the past: one test per attack on the signed timestamp.

A man in the middle between a counter and the authority may replay anything the authority
ever signed. Without the timestamp he could keep a counter on the trust list from before a
key compromise for that list's whole 30-day life; with it the counter learns within hours
that a newer list exists, and refuses (codes asserted, never text).

The attacks on the wire run against a real cardsvc (SQLite, fixed clock) behind an
``httpx.MockTransport`` that plays the man in the middle; the format attacks use the fixed
keys of tests/support.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cardsvc_kit import Authority, Template, authority_from

from cardsvc.services.audit import Actor
from cardsvc.services.bootstrap import open_keyring
from cardsvc.services.trust import compromise_key
from keys import Ed25519Signer
from schemas import Purpose, ResultCode, TimestampKey
from schemas.codes import FmcError
from schemas.timestamp import TimestampClaims
from support import (
    ISSUER_KEY,
    NOW,
    ROOT_FINGERPRINT,
    TIMESTAMP_KEY,
    TIMESTAMP_KEYS,
    World,
    present,
    timestamp_jwt,
)
from verifier import (
    POLICIES,
    MemoryReplayCache,
    TrustedSet,
    verify_presentation,
    verify_status_list,
    verify_timestamp,
    verify_trust_list,
)
from verifier.cache import CacheError, VerifierCache
from verifier.checkpoint import DEFAULT_STATUS_GRACE, Checkpoint
from verifier.sync import SyncError, sync_cache

SERVER = "http://authority.test"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    made = Template.create("sqlite", tmp_path_factory.mktemp("timestamp-authority"))
    yield made
    made.drop()


@pytest.fixture
def authority(template: Template, tmp_path: Path) -> Iterator[Authority]:
    with authority_from(template, tmp_path) as instance:
        yield instance


def _relay(authority: Authority, request: httpx.Request) -> httpx.Response:
    """What the real authority answers (the honest part of the wire)."""
    headers = {name: value for name, value in request.headers.items()
               if name.lower() in ("if-none-match", "accept")}
    real = authority.client.get(request.url.path, headers=headers)
    kept = {name: value for name, value in real.headers.items()
            if name.lower() in ("etag", "content-type", "cache-control")}
    return httpx.Response(real.status_code, headers=kept, content=real.content)


def _wire(authority: Authority, attacks: dict[str, Handler] | None = None) -> httpx.Client:
    """The wire to the authority; ``attacks`` answers some paths in the attacker's place."""
    def handle(request: httpx.Request) -> httpx.Response:
        attack = (attacks or {}).get(request.url.path)
        return attack(request) if attack is not None else _relay(authority, request)

    return httpx.Client(transport=httpx.MockTransport(handle))


def _sync(cache: VerifierCache, authority: Authority, wire: httpx.Client | None = None) -> int:
    with wire or _wire(authority) as client:
        report = sync_cache(cache, server=SERVER, root_fingerprint=authority.root_fingerprint,
                            now=authority.clock.epoch, client=client)
    assert report.timestamp_version is not None  # this authority publishes one
    return report.timestamp_version


def _held(cache: VerifierCache) -> TimestampClaims:
    timestamp = cache.load().state.timestamp
    assert timestamp is not None
    return timestamp


def _counter_code(cache: VerifierCache, now: int) -> ResultCode:
    """The code a counter gives a well-formed card at ``now``; the freshness step runs
    before the key lookup, so a card of tests/support's issuer is enough to reach it."""
    outcome = Checkpoint(cache).check_text(present(Purpose.SVC, proof_time=now),
                                           service="hospital", now=now)
    return outcome.result.code


def _answer(body: str) -> Handler:
    return lambda _: httpx.Response(200, content=body.encode(),
                                    headers={"content-type": "application/jwt"})


def _manifest(cache: VerifierCache) -> bytes:
    return cache.manifest_path.read_bytes()


# -- on the wire, against a real cardsvc --------------------------------------------------


def test_attack_mitm_keeps_serving_the_pre_compromise_trust_list(
    authority: Authority, tmp_path: Path
) -> None:
    cache = VerifierCache(tmp_path / "cache")
    _sync(cache, authority)
    old_trust_list = authority.client.get("/v1/trust-list").text
    held = _held(cache)
    # k1 is compromised: the authority marks it so and signs a newer trust list.
    authority.clock.advance(60)
    keyring = open_keyring(authority.settings)
    authority.database.transact(lambda session: compromise_key(
        session, kid="k1", keyring=keyring, kid_prefix="k",
        actor=Actor.cli(), now=authority.clock()))
    before = _manifest(cache)

    mitm = _wire(authority, {"/v1/trust-list": _answer(old_trust_list)})
    with pytest.raises(SyncError) as refused:
        _sync(cache, authority, mitm)

    assert refused.value.code == ResultCode.TRUST_LIST_OUTDATED
    assert _manifest(cache) == before  # the last good cache is kept
    grace_end = held.expires_at + DEFAULT_STATUS_GRACE
    assert _counter_code(cache, grace_end - 1) is not ResultCode.TIMESTAMP_STALE
    assert _counter_code(cache, grace_end) is ResultCode.TIMESTAMP_STALE


@pytest.mark.parametrize("withhold", ["404", "blocked"])
def test_attack_timestamp_withheld(authority: Authority, tmp_path: Path, withhold: str) -> None:
    cache = VerifierCache(tmp_path / "cache")
    _sync(cache, authority)
    held = _held(cache)
    authority.clock.advance(3600)

    def hide(request: httpx.Request) -> httpx.Response:
        if withhold == "blocked":
            raise httpx.ConnectError("blocked", request=request)
        return httpx.Response(404)

    with _wire(authority, {"/v1/timestamp": hide}) as mitm:
        try:
            sync_cache(cache, server=SERVER, root_fingerprint=authority.root_fingerprint,
                       now=authority.clock.epoch, client=mitm)
        except SyncError as error:
            assert error.code == "NETWORK_UNAVAILABLE"
    assert _held(cache) == held  # a 404 does not unpublish what the counter holds

    grace_end = held.expires_at + DEFAULT_STATUS_GRACE
    assert _counter_code(cache, grace_end - 1) is not ResultCode.TIMESTAMP_STALE
    assert _counter_code(cache, grace_end) is ResultCode.TIMESTAMP_STALE


def test_attack_rolled_back_timestamp(authority: Authority, tmp_path: Path) -> None:
    cache = VerifierCache(tmp_path / "cache")
    _sync(cache, authority)
    old_timestamp = authority.client.get("/v1/timestamp").text
    authority.clock.advance(4 * 3600)  # past a quarter of the 12 h life: re-signed
    newer = _sync(cache, authority)
    before = _manifest(cache)

    with pytest.raises(SyncError) as refused:
        _sync(cache, authority, _wire(authority, {"/v1/timestamp": _answer(old_timestamp)}))

    assert refused.value.code == ResultCode.TIMESTAMP_ROLLBACK
    assert _held(cache).version == newer and _manifest(cache) == before


def test_authority_delegates_a_timestamp_key_that_signs_nothing_else(
    authority: Authority,
) -> None:
    trust_list = verify_trust_list(authority.client.get("/v1/trust-list").text,
                                   root_fingerprint=authority.root_fingerprint)
    timestamp = authority.client.get("/v1/timestamp").text
    claims = verify_timestamp(timestamp, trust_list=trust_list, held=None,
                              now=authority.clock.epoch)
    assert claims.trust_list.serial == trust_list.version
    delegated = {key.kid for key in trust_list.timestamp_keys}
    assert delegated and not delegated & {key.kid for key in trust_list.keys}


# -- the format, with the fixed keys ------------------------------------------------------

_TRUST_LIST = World().trust_list_jwt(timestamp_keys=TIMESTAMP_KEYS)
_TRUST = verify_trust_list(_TRUST_LIST, root_fingerprint=ROOT_FINGERPRINT)


def _timestamp_code(unverified_jwt: str) -> ResultCode:
    try:
        verify_timestamp(unverified_jwt, trust_list=_TRUST, held=None, now=NOW)
    except FmcError as refused:
        return refused.code
    return ResultCode.OK


@pytest.mark.parametrize(("name", "signer", "expected"), [
    ("the delegated timestamp key", TIMESTAMP_KEY, ResultCode.OK),
    ("an issuer key under its own kid", ISSUER_KEY, ResultCode.UNKNOWN_KEY),
])
def test_attack_timestamp_signed_by_an_issuer_key(name: str, signer: Ed25519Signer,
                                                  expected: ResultCode) -> None:
    assert _timestamp_code(timestamp_jwt(_TRUST_LIST, signer=signer)) is expected


def test_attack_timestamp_signed_by_an_issuer_key_claiming_the_timestamp_kid() -> None:
    impostor = Ed25519Signer(bytes(range(1, 33)), kid="ts1")  # k1's seed, ts1's kid
    assert _timestamp_code(timestamp_jwt(_TRUST_LIST, signer=impostor)) is (
        ResultCode.BAD_SIGNATURE)


def test_attack_credential_or_status_list_signed_by_the_timestamp_key() -> None:
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    trusted.update_trust_list(_TRUST_LIST, now=NOW)
    trusted.update_status_list(World().status_list_jwt(), now=NOW)
    state = trusted.snapshot()
    card = present(Purpose.SVC, signer=TIMESTAMP_KEY)
    result = verify_presentation(card, state=state, policy=POLICIES["hospital"], now=NOW,
                                 replay_cache=MemoryReplayCache())
    assert result.code is ResultCode.UNKNOWN_KEY
    with pytest.raises(FmcError) as refused:
        verify_status_list(World().status_list_jwt(signer=TIMESTAMP_KEY), trust_list=_TRUST)
    assert refused.value.code is ResultCode.UNKNOWN_KEY


def _static_wire(served: dict[str, str]) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/status-lists":
            return httpx.Response(200, json={"status_lists": [{"id": "1", "uri": "x"}]})
        body = served.get(path)
        return httpx.Response(404) if body is None else httpx.Response(200, content=body)

    return httpx.Client(transport=httpx.MockTransport(handle))


def test_attack_timestamp_names_another_digest_for_the_same_version(tmp_path: Path) -> None:
    # Two root-signed lists with the same version (say one re-signed after a compromise):
    # the timestamp names the other one, so the one served is not current.
    served_list = World().trust_list_jwt(timestamp_keys=TIMESTAMP_KEYS)
    current_list = World().trust_list_jwt(timestamp_keys=TIMESTAMP_KEYS, expires_at=NOW + 86_400)
    served = {"/v1/trust-list": served_list, "/v1/status-lists/1": World().status_list_jwt(),
              "/v1/timestamp": timestamp_jwt(current_list)}
    cache = VerifierCache(tmp_path / "cache")
    with _static_wire(served) as wire, pytest.raises(SyncError) as refused:
        sync_cache(cache, server=SERVER, root_fingerprint=ROOT_FINGERPRINT, now=NOW,
                   client=wire)
    assert refused.value.code == ResultCode.TRUST_LIST_OUTDATED
    assert not cache.manifest_path.exists()

    served["/v1/timestamp"] = timestamp_jwt(served_list)  # the honest answer syncs
    with _static_wire(served) as wire:
        report = sync_cache(cache, server=SERVER, root_fingerprint=ROOT_FINGERPRINT, now=NOW,
                            client=wire)
    assert report.timestamp_version == 1


def _damage_timestamp_file(cache: VerifierCache) -> None:
    name = json.loads(_manifest(cache))["timestamp"]["file"]
    path = cache.directory / "lists" / name
    path.write_bytes(path.read_bytes()[:-8] + b"AAAAAAAA")


def _drop_timestamp_from_manifest(cache: VerifierCache) -> None:
    manifest = json.loads(_manifest(cache))
    del manifest["timestamp"]
    cache.manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [_damage_timestamp_file, _drop_timestamp_from_manifest],
                         ids=["damaged file", "dropped from the manifest"])
def test_attack_damaged_cached_timestamp_does_not_lower_the_floor(
    tmp_path: Path, damage: Callable[[VerifierCache], None]
) -> None:
    served = {"/v1/trust-list": _TRUST_LIST, "/v1/status-lists/1": World().status_list_jwt(),
              "/v1/timestamp": timestamp_jwt(_TRUST_LIST, version=1)}
    cache = VerifierCache(tmp_path / "cache")
    for version in (1, 2):
        served["/v1/timestamp"] = timestamp_jwt(_TRUST_LIST, version=version)
        with _static_wire(served) as wire:
            sync_cache(cache, server=SERVER, root_fingerprint=ROOT_FINGERPRINT, now=NOW,
                       client=wire)
    damage(cache)
    with pytest.raises(CacheError) as refused:
        cache.load()
    assert refused.value.code == "CACHE_ROLLBACK"


def test_attack_timestamp_withheld_while_its_key_is_undelegated(tmp_path: Path) -> None:
    served = {"/v1/trust-list": _TRUST_LIST, "/v1/status-lists/1": World().status_list_jwt(),
              "/v1/timestamp": timestamp_jwt(_TRUST_LIST)}
    cache = VerifierCache(tmp_path / "cache")
    with _static_wire(served) as wire:
        sync_cache(cache, server=SERVER, root_fingerprint=ROOT_FINGERPRINT, now=NOW,
                   client=wire)
    before = _manifest(cache)
    served = {"/v1/trust-list": World(trust_version=2).trust_list_jwt(),  # no ts_keys
              "/v1/status-lists/1": World().status_list_jwt()}
    with _static_wire(served) as wire, pytest.raises(SyncError) as refused:
        sync_cache(cache, server=SERVER, root_fingerprint=ROOT_FINGERPRINT, now=NOW,
                   client=wire)
    assert refused.value.code == ResultCode.TIMESTAMP_STALE
    assert _manifest(cache) == before and cache.load().state.timestamp is not None


def test_attack_stolen_timestamp_key_fast_forwards_ver_then_the_root_rotates_it(
    tmp_path: Path,
) -> None:
    # A thief of ts1 signs ver 1000; the root then replaces ts1 by ts2 in trust list v2.
    # The counter must accept ts2's ver 1 (TUF's fast-forward recovery), not lock out.
    served = {"/v1/trust-list": _TRUST_LIST, "/v1/status-lists/1": World().status_list_jwt(),
              "/v1/timestamp": timestamp_jwt(_TRUST_LIST, version=1000)}
    cache = VerifierCache(tmp_path / "cache")
    with _static_wire(served) as wire:
        sync_cache(cache, server=SERVER, root_fingerprint=ROOT_FINGERPRINT, now=NOW,
                   client=wire)
    new_key = Ed25519Signer(bytes(range(7, 39)), kid="ts2")
    rotated = World(trust_version=2).trust_list_jwt(
        timestamp_keys=(TimestampKey("ts2", new_key.public_key),))
    served = {"/v1/trust-list": rotated, "/v1/status-lists/1": World().status_list_jwt(),
              "/v1/timestamp": timestamp_jwt(rotated, version=1, signer=new_key)}
    with _static_wire(served) as wire:
        report = sync_cache(cache, server=SERVER, root_fingerprint=ROOT_FINGERPRINT, now=NOW,
                            client=wire)
    assert report.timestamp_version == 1
    assert _held(cache).version == 1  # loads: the floor started again under ts2

    served["/v1/timestamp"] = timestamp_jwt(_TRUST_LIST, version=1001)  # ts1 is no use now
    with _static_wire(served) as wire, pytest.raises(SyncError) as refused:
        sync_cache(cache, server=SERVER, root_fingerprint=ROOT_FINGERPRINT, now=NOW,
                   client=wire)
    assert refused.value.code == ResultCode.UNKNOWN_KEY


def test_attack_not_modified_to_the_timestamp_refreshes_nothing(
    authority: Authority, tmp_path: Path
) -> None:
    cache = VerifierCache(tmp_path / "cache")
    _sync(cache, authority)
    held = _held(cache)

    def not_modified(request: httpx.Request) -> httpx.Response:
        if request.headers.get("if-none-match"):
            return httpx.Response(304, headers={"etag": request.headers["if-none-match"]})
        return _relay(authority, request)

    authority.clock.advance(held.expires_at - authority.clock.epoch - 60)
    _sync(cache, authority, _wire(authority, {path: not_modified for path in (
        "/v1/timestamp", "/v1/trust-list", "/v1/status-lists/1")}))
    assert _held(cache) == held  # a 304 is not a newer signed timestamp
    authority.clock.advance(120)  # now past its exp: a 304 cannot make it current again
    with pytest.raises(SyncError) as refused:
        _sync(cache, authority, _wire(authority, {"/v1/timestamp": not_modified}))
    assert refused.value.code == ResultCode.TIMESTAMP_STALE
    assert _counter_code(cache, held.expires_at + DEFAULT_STATUS_GRACE) is (
        ResultCode.TIMESTAMP_STALE)
