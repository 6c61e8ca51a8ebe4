"""A verifier pinned nationally syncs from a real cardsvc over HTTP: the federation list
the authority holds (``GET /v1/federation-list``) and the city's own status lists at the
``status_url`` the federation entry names (``/v1/status-lists``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cardsvc_kit import Authority
from federation_kit import NATIONAL_FINGERPRINT, federation, federation_jwt, hangzhou, yiwu
from kit.net import free_port, serving

from cardsvc.federation import accept_federation_list
from verifier.cache import KIND_NATIONAL, VerifierCache
from verifier.federation_sync import sync_federation
from verifier.trust import verify_trust_list


def test_a_national_verifier_syncs_from_a_real_authority(authority: Authority,
                                                          tmp_path: Path) -> None:
    keys = verify_trust_list(authority.client.get("/v1/trust-list").text.strip(),
                             root_fingerprint=authority.root_fingerprint).keys
    unreachable = f"http://127.0.0.1:{free_port()}"
    now = authority.clock.epoch
    with serving(authority.client.app) as url:
        entry = replace(yiwu(), keys=keys, status_url=f"{url}/v1/status-lists",
                        api_url=url)
        hz = hangzhou(status_url=f"{unreachable}/v1/status-lists", api_url=unreachable)
        claims = federation(entry, hz, issued_at=now - 60, expires_at=now + 86_400)
        authority.database.transact(lambda session: accept_federation_list(
            session, unverified_jwt=federation_jwt(claims),
            pinned_root=NATIONAL_FINGERPRINT, now=now))
        cache = VerifierCache(tmp_path / "cache")
        report = sync_federation(cache, server=url, root_fingerprint=NATIONAL_FINGERPRINT,
                                 now=now)
    assert cache.pinned_kind() == KIND_NATIONAL
    assert report.cities["CN-YW"].outcome == "updated", report.cities["CN-YW"].error
    assert report.cities["CN-HZ"].outcome == "kept"  # nothing answers there
    assert any(key.startswith("CN-YW/") for key in cache.load().status_lists)
