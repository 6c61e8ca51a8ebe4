"""P8.7: a verifier's cache cannot be rolled back locally.

Three syncs against a fake authority leave older signed lists on disk next to the newest.
Each attack damages or rewrites the cache so that a load would serve the older lists; the
rollback floor (floor.json, and the verified files themselves) refuses it with
CACHE_ROLLBACK, and a sync repairs the cache. docs/SECURITY.md lists each row.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_sync_authority import FakeAuthority, running

from support import NOW, ROOT_FINGERPRINT
from verifier.cache import CacheError, VerifierCache
from verifier.sync import sync_cache


def _manifest(cache: Path, name: str = "manifest.json") -> dict[str, object]:
    return dict(json.loads((cache / name).read_bytes()))


def _lists_of(cache: Path, name: str) -> tuple[str, str]:
    manifest = _manifest(cache, name)
    trust = manifest["trust_list"]
    status = manifest["status_lists"]
    assert isinstance(trust, dict) and isinstance(status, dict)
    return str(trust["file"]), str(status["1"]["file"])


def _manifest_damaged(cache: Path) -> None:
    (cache / "manifest.json").write_bytes(b"\0" * 40)


def _manifest_damaged_and_floor_deleted(cache: Path) -> None:
    _manifest_damaged(cache)
    (cache / "floor.json").unlink()


def _manifest_damaged_and_newest_files_deleted(cache: Path) -> None:
    trust_file, status_file = _lists_of(cache, "manifest.json")
    _manifest_damaged(cache)
    (cache / "lists" / trust_file).unlink()
    (cache / "lists" / status_file).unlink()


def _manifest_rewritten_to_older_files(cache: Path) -> None:
    """A well-formed manifest naming the previous (older, validly signed) lists."""
    shutil.copyfile(cache / "manifest.prev.json", cache / "manifest.json")


ROLLBACKS: list[tuple[str, Callable[[Path], None]]] = [
    ("manifest damaged, previous names older lists", _manifest_damaged),
    ("manifest damaged and floor.json deleted", _manifest_damaged_and_floor_deleted),
    ("manifest damaged and the newest files deleted", _manifest_damaged_and_newest_files_deleted),
    ("manifest rewritten to name older files", _manifest_rewritten_to_older_files),
]


@pytest.fixture
def synced(tmp_path: Path) -> tuple[VerifierCache, FakeAuthority]:
    """Synced at v1, then v2 with a re-signed status list: manifest.prev.json names v1."""
    cache = VerifierCache(tmp_path / "cache")
    authority = FakeAuthority()
    with running(authority):
        sync_cache(cache, server=authority.url, root_fingerprint=ROOT_FINGERPRINT, now=NOW)
        authority.world.trust_version = 2
        authority.world.status_issued += 30
        sync_cache(cache, server=authority.url, root_fingerprint=None, now=NOW + 60)
    assert cache.load().trust_list.version == 2
    return cache, authority


@pytest.mark.parametrize(("what", "attack"), ROLLBACKS, ids=[r[0] for r in ROLLBACKS])
def test_attack_cache_rolled_back_locally(synced: tuple[VerifierCache, FakeAuthority],
                                          what: str, attack: Callable[[Path], None]) -> None:
    cache, authority = synced
    attack(cache.directory)
    with pytest.raises(CacheError) as refused:
        cache.load()
    assert refused.value.code == "CACHE_ROLLBACK"
    with running(authority):  # a sync repairs it
        sync_cache(cache, server=authority.url, root_fingerprint=None, now=NOW + 120)
    snapshot = cache.load()
    assert snapshot.trust_list.version == 2 and not snapshot.from_previous


def test_attack_cache_status_list_rolled_back_locally(tmp_path: Path) -> None:
    """Same trust list, a newer status list (a revocation): its file is cut and the
    manifest damaged; the previous status list is older than the recorded floor."""
    cache = VerifierCache(tmp_path / "cache")
    authority = FakeAuthority()
    with running(authority):
        sync_cache(cache, server=authority.url, root_fingerprint=ROOT_FINGERPRINT, now=NOW)
        authority.world.status_issued += 30
        sync_cache(cache, server=authority.url, root_fingerprint=None, now=NOW + 60)
    trust_file, status_file = _lists_of(cache.directory, "manifest.json")
    _manifest_damaged(cache.directory)
    (cache.directory / "lists" / status_file).write_bytes(b"")
    with pytest.raises(CacheError) as refused:
        cache.load()
    assert refused.value.code == "CACHE_ROLLBACK"
    assert (cache.directory / "lists" / trust_file).exists()
