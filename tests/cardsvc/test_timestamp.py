"""GET /v1/timestamp as served (P8.5): delegated key, media type, ETag, max-age, and when
it is re-signed (version up by one each time)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cardsvc_kit import Authority, device_key

from cardsvc.services.audit import Actor
from cardsvc.services.bootstrap import open_keyring
from cardsvc.services.timestamp import ensure_timestamp_key, replace_timestamp_key
from schemas import ResultCode, TimestampClaims, TrustListClaims
from schemas.codes import FmcError
from schemas.timestamp import list_digest
from verifier import verify_timestamp, verify_trust_list
from verifier.cache import VerifierCache
from verifier.sync import sync_cache

LIFETIME = 12 * 3600


def _trust(authority: Authority) -> tuple[str, TrustListClaims]:
    jwt = authority.client.get("/v1/trust-list").text
    return jwt, verify_trust_list(jwt, root_fingerprint=authority.root_fingerprint)


def _timestamp(authority: Authority) -> TimestampClaims:
    answer = authority.client.get("/v1/timestamp")
    assert answer.status_code == 200, answer.text
    _, trust = _trust(authority)
    return verify_timestamp(answer.text, trust_list=trust, held=None, now=authority.clock.epoch)


def test_timestamp_names_the_lists_as_served(authority: Authority) -> None:
    answer = authority.client.get("/v1/timestamp")
    assert answer.headers["content-type"] == "application/jwt"
    max_age = int(answer.headers["cache-control"].rsplit("=", 1)[1])
    assert 0 < max_age <= LIFETIME // 8
    claims = _timestamp(authority)
    trust_jwt, trust = _trust(authority)
    assert claims.expires_at - claims.issued_at == LIFETIME
    assert (claims.trust_list.serial, claims.trust_list.sha256) == (trust.version,
                                                                    list_digest(trust_jwt))
    status_jwt = authority.client.get("/v1/status-lists/1").text
    assert claims.status_lists["1"].sha256 == list_digest(status_jwt)
    again = authority.client.get("/v1/timestamp",
                                 headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304


def test_timestamp_is_re_signed_when_a_list_changes_or_a_quarter_life_passes(
    authority: Authority,
) -> None:
    first = _timestamp(authority)
    authority.clock.advance(30)
    assert _timestamp(authority) == first  # nothing changed: the same timestamp

    bundle = authority.card_with_phone(device_key(41))
    authority.revoke(bundle["card_number"])
    revoked = _timestamp(authority)
    assert revoked.version == first.version + 1
    assert revoked.status_lists["1"] != first.status_lists["1"]

    authority.clock.advance(LIFETIME // 4)
    assert _timestamp(authority).version > revoked.version


def test_timestamp_key_is_made_once_and_delegated_by_the_root(authority: Authority) -> None:
    _, trust = _trust(authority)
    assert [key.kid for key in trust.timestamp_keys] == ["ts1"]
    keyring = open_keyring(authority.settings)
    made = authority.database.transact(
        lambda session: ensure_timestamp_key(session, keyring=keyring, actor=Actor.cli(),
                                             now=authority.clock()))
    assert made is None  # init made it; start-up calls this again and changes nothing
    assert _trust(authority)[1].version == trust.version


def test_a_data_dir_from_before_the_timestamp_gets_its_key_on_start(
    authority: Authority,
) -> None:
    from sqlalchemy import delete

    from cardsvc.cli import prepare_to_serve
    from cardsvc.models import TimestampState

    authority.database.transact(lambda session: session.execute(delete(TimestampState)))
    assert authority.client.get("/v1/timestamp").status_code == 404  # publishes none
    _, before = _trust(authority)

    prepare_to_serve(authority.settings)

    _, after = _trust(authority)
    assert after.version > before.version and [k.kid for k in after.timestamp_keys] == ["ts1"]
    assert _timestamp(authority).trust_list.serial == after.version
    audit = authority.client.get("/v1/audit", headers=authority.as_role("auditor")).json()
    assert [e["action"] for e in audit["entries"]].count("keys.timestamp_created") == 1


def test_replacing_the_timestamp_key_recovers_a_synced_verifier(
    authority: Authority, tmp_path: Path
) -> None:
    cache = VerifierCache(tmp_path / "cache")
    sync_cache(cache, server="http://testserver", root_fingerprint=authority.root_fingerprint,
               now=authority.clock.epoch, client=authority.client)
    old_timestamp = authority.client.get("/v1/timestamp").text
    keyring = open_keyring(authority.settings)
    new_key = authority.database.transact(lambda session: replace_timestamp_key(
        session, keyring=keyring, actor=Actor.cli(), now=authority.clock()))
    authority.clock.advance(60)

    report = sync_cache(cache, server="http://testserver", root_fingerprint=None,
                        now=authority.clock.epoch, client=authority.client)

    _, trust = _trust(authority)
    assert new_key.kid == "ts2" and [k.kid for k in trust.timestamp_keys] == ["ts2"]
    assert report.timestamp_version == _timestamp(authority).version
    with pytest.raises(FmcError) as refused:  # what the old key signed is no use now
        verify_timestamp(old_timestamp, trust_list=trust, held=None, now=authority.clock.epoch)
    assert refused.value.code is ResultCode.UNKNOWN_KEY


def test_cli_replaces_the_timestamp_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cardsvc.cli import app

    for name in ("CARDSVC_DATABASE_URL", "CARDSVC_KEY_PASSPHRASE", "CARDSVC_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    data_dir = str(tmp_path / "data")
    assert CliRunner().invoke(app, ["init", "--data-dir", data_dir]).exit_code == 0
    replaced = CliRunner().invoke(app, ["keys", "replace-timestamp", "--data-dir", data_dir])
    assert replaced.exit_code == 0 and "timestamp key ts2" in replaced.output
    listed = CliRunner().invoke(app, ["keys", "list", "--data-dir", data_dir])
    assert listed.exit_code == 0 and re.search(r"ts2\s+timestamp", listed.output)
    assert "ts1" not in listed.output
