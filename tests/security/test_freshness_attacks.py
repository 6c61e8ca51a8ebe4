"""P8.5: freshness comes only from signed data, never from an unauthenticated HTTP answer.

A man in the middle answers ``304 Not Modified`` to every request while a card is revoked
at the authority. The verifier's cache age is that of the newest signed list it holds, so
it keeps growing across such "syncs", and checks end in STATUS_UNAVAILABLE once the held
status list's signed life has passed. docs/SECURITY.md lists the row.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_sync_authority import FakeAuthority, running

from schemas import STATUS_REVOKED, Purpose
from support import DAY, NOW, ROOT_FINGERPRINT, present
from verifier import POLICIES, MemoryReplayCache, ResultCode, verify_presentation
from verifier.cache import VerifierCache
from verifier.sync import SyncError, sync_cache

INDEX = 123_456  # the status index of tests/support's credential
HOUR = 3600


def test_attack_not_modified_to_everything_does_not_refresh_the_cache(tmp_path: Path) -> None:
    cache = VerifierCache(tmp_path / "cache")
    authority = FakeAuthority()
    with running(authority):
        sync_cache(cache, server=authority.url, root_fingerprint=ROOT_FINGERPRINT, now=NOW)
        authority.world.statuses.set(INDEX, STATUS_REVOKED)
        authority.world.status_issued = NOW + HOUR
        authority.not_modified = True
        for later in (2 * HOUR, 20 * HOUR):
            sync_cache(cache, server=authority.url, root_fingerprint=None, now=NOW + later)
            snapshot = cache.load()
            assert snapshot.contents.synced_at == NOW + later  # the HTTP exchange happened
            assert snapshot.age_seconds(NOW + later) == later + 60  # signed at NOW - 60
        with pytest.raises(SyncError) as refused:  # a 304 cannot stretch a list past its exp
            sync_cache(cache, server=authority.url, root_fingerprint=None, now=NOW + 2 * DAY)
        assert refused.value.code == "STATUS_UNAVAILABLE"
    answer = verify_presentation(
        present(Purpose.SVC, proof_time=NOW + 2 * DAY), state=cache.load().state,
        policy=POLICIES["hospital"], now=NOW + 2 * DAY, replay_cache=MemoryReplayCache())
    assert answer.code is ResultCode.STATUS_UNAVAILABLE  # the held list's signed exp passed
