"""P8.4: an old key cannot mint cards.

A credential's lifetime (``exp - iat``) is capped per purpose, so a leaked retired key can
only sign credentials that die soon after its window; the private part of a key that
stopped signing is destroyed (key store and backups); and a stopped key leaves the trust
list once every credential it may have signed has expired.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cardsvc_kit import (
    Authority,
    Template,
    authority_from,
    cli,
    device_key,
    provision_request,
    verify,
)
from pydantic import ValidationError
from typer.testing import CliRunner

from cardsvc.services.audit import Actor
from cardsvc.services.backup import create_backup
from cardsvc.services.bootstrap import open_keyring
from cardsvc.services.provisioning import SigningContext, redeem_provisioning_code
from cardsvc.services.trust import compromise_key
from cardsvc.settings import Settings
from keys import KEY_RETENTION_SECONDS, public_jwk, sign_credential, sign_presentation
from schemas import IssuerKey, KeyState, Purpose, ResultCode, TrustListClaims, b64url_decode
from schemas.credential import MAX_CREDENTIAL_LIFETIME_SECONDS, MAX_LIFETIME_SECONDS
from support import (
    DAY,
    ISSUER_KEY,
    NEXT_KEY,
    NOW,
    ROOT_FINGERPRINT,
    World,
    check_code,
    present,
)
from verifier import verify_trust_list
from verifier.cache import CacheContents, CachedList, VerifierCache
from verifier.cli import EXIT_REFUSED, app

CENTURY = 36_525 * DAY
SERVICE_FOR = {Purpose.PAY: "payment", Purpose.ID: "counter", Purpose.SVC: "hospital"}
# k1 signed from 60 days ago until it retired 2 days ago; k2 signs now.
RETIRED_WORLD = World(keys=(
    IssuerKey("k1", ISSUER_KEY.public_key, KeyState.RETIRED, NOW - 60 * DAY, NOW - 2 * DAY),
    IssuerKey("k2", NEXT_KEY.public_key, KeyState.ACTIVE, NOW - 2 * DAY),
))


# --- the format and the verifier ------------------------------------------------------------

@pytest.mark.parametrize("purpose", list(Purpose))
def test_attack_leaked_retired_key_mints_a_century_credential(purpose: Purpose) -> None:
    iat = NOW - 3 * DAY  # inside k1's window: KEY_NOT_VALID_AT_ISSUE cannot catch it
    forged = present(purpose, signer=ISSUER_KEY, issued_at=iat, expires_at=iat + CENTURY)
    assert check_code(forged, service=SERVICE_FOR[purpose], world=RETIRED_WORLD) is \
        ResultCode.LIFETIME_TOO_LONG


def test_attack_leaked_retired_key_century_credential_through_the_cli(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    VerifierCache(cache).store(CacheContents(
        root_fingerprint=ROOT_FINGERPRINT, server="http://127.0.0.1:9", synced_at=NOW,
        trust_list=CachedList(RETIRED_WORLD.trust_list_jwt(), '"t"'),
        status_lists={"1": CachedList(RETIRED_WORLD.status_list_jwt(signer=NEXT_KEY), '"s"')},
    ))
    iat = NOW - 3 * DAY
    forged = present(Purpose.ID, signer=ISSUER_KEY, issued_at=iat, expires_at=iat + CENTURY)
    result = CliRunner().invoke(app, ["--cache", str(cache), "check", "--as", "counter",
                                      "--at", "2027-01-15T08:00:00Z", "--json", "-"],
                                input=forged)
    assert result.exit_code == EXIT_REFUSED, result.output
    assert json.loads(result.output)["code"] == ResultCode.LIFETIME_TOO_LONG.value


LIFETIME_EDGES = [
    pytest.param(purpose, MAX_LIFETIME_SECONDS[purpose] + extra, expected,
                 id=f"{purpose.value}-{'over' if extra else 'at'}-cap")
    for purpose in Purpose
    for extra, expected in ((0, ResultCode.OK), (1, ResultCode.LIFETIME_TOO_LONG))
]


@pytest.mark.parametrize(("purpose", "lifetime", "expected"), LIFETIME_EDGES)
def test_attack_lifetime_one_second_over_the_cap(
    purpose: Purpose, lifetime: int, expected: ResultCode
) -> None:
    iat = NOW - DAY
    text = present(purpose, issued_at=iat, expires_at=iat + lifetime)
    assert check_code(text, service=SERVICE_FOR[purpose]) is expected


# --- the authority ----------------------------------------------------------------------------

@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def authority_template(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Template]:
    template = Template.create(request.param, tmp_path_factory.mktemp("old-key-attacks"))
    yield template
    template.drop()


@pytest.fixture
def authority(authority_template: Template, tmp_path: Path) -> Iterator[Authority]:
    """A fresh authority (own database and key store copy) with a fixed clock."""
    with authority_from(authority_template, tmp_path) as instance:
        yield instance


def _trust(authority: Authority) -> TrustListClaims:
    return verify_trust_list(authority.client.get("/v1/trust-list").text,
                             root_fingerprint=authority.root_fingerprint)


def _cli_env(authority: Authority) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
    env["CARDSVC_KEY_PASSPHRASE"] = "test-pass"
    assert authority.settings.database_url is not None
    env["CARDSVC_DATABASE_URL"] = authority.settings.database_url
    return env


def _archived_key_files(archive: Path) -> set[str]:
    with tarfile.open(archive, "r:gz") as source:
        return {name for name in source.getnames() if name.startswith("keys/")}


def test_attack_authority_configured_for_long_lifetimes_still_issues_within_caps(
    authority: Authority,
) -> None:
    with pytest.raises(ValidationError):
        Settings(credential_lifetime_days=MAX_CREDENTIAL_LIFETIME_SECONDS // DAY + 1)
    issued = authority.issue(authority.enrol()["foreigner_code"])  # valid until 2030
    phone = device_key(41)
    request = provision_request(issued["provisioning_code"], phone)
    # A service-level signing context the settings would refuse: ten years asked for.
    signing = SigningContext(open_keyring(authority.settings), authority.settings.issuer,
                             credential_lifetime_days=3650)
    bundle = authority.database.transact(lambda session: redeem_provisioning_code(
        session, unverified_code=request["provisioning_code"],
        unverified_device_key=phone.public_key, unverified_proof=b64url_decode(request["proof"]),
        signing=signing, now=authority.clock()))
    state = authority.state()
    assert set(bundle.credentials) == {"id", "svc", "pay"}
    for name, token in bundle.credentials.items():
        purpose = Purpose(name)
        result = verify(state, token, phone, purpose=name, service=SERVICE_FOR[purpose],
                        now=authority.clock.epoch)
        assert result.code is ResultCode.OK
        assert result.credential is not None
        assert result.credential.expires_at - result.credential.issued_at == \
            MAX_LIFETIME_SECONDS[purpose]
    assert bundle.expires_at == authority.clock.epoch + MAX_LIFETIME_SECONDS[Purpose.PAY]


def test_attack_retired_key_private_part_survives_rotation(
    authority: Authority, tmp_path: Path
) -> None:
    keys_dir = authority.settings.keys_dir
    k1_public = open_keyring(authority.settings).signer("k1").public_key
    cli(authority.settings.data_dir, _cli_env(authority), "keys", "rotate")
    assert not (keys_dir / "k1.pem").exists()
    assert json.loads((keys_dir / "k1.jwk").read_text()) == public_jwk(k1_public, kid="k1")
    # The online timestamp key (ts1) stays: it never signed a credential.
    assert {p.name for p in keys_dir.glob("*.pem")} == {"root.pem", "ts1.pem", "k2.pem",
                                                        "k3.pem", "ki1.pem"}  # P10 link key
    archive = tmp_path / "after-rotation.tar.gz"
    create_backup(authority.settings, out=archive, now=authority.clock())
    assert _archived_key_files(archive) == {"keys/root.pem", "keys/ts1.pem", "keys/k1.jwk",
                                            "keys/k2.pem", "keys/k3.pem", "keys/ki1.pem",
                                            "keys/data-kek.key"}  # P13: the data keys' KEK


def test_attack_backup_leaves_out_a_stopped_key_whose_destruction_was_cut_short(
    authority: Authority, tmp_path: Path
) -> None:
    keys_dir = authority.settings.keys_dir
    shutil.copy2(keys_dir / "k1.pem", tmp_path / "k1.pem")
    cli(authority.settings.data_dir, _cli_env(authority), "keys", "rotate")
    shutil.copy2(tmp_path / "k1.pem", keys_dir / "k1.pem")  # as if the process died first
    archive = tmp_path / "backup.tar.gz"
    create_backup(authority.settings, out=archive, now=authority.clock())
    assert "keys/k1.pem" not in _archived_key_files(archive)


def test_attack_compromised_key_private_part_is_destroyed(authority: Authority) -> None:
    keyring = open_keyring(authority.settings)
    authority.database.transact(lambda session: compromise_key(
        session, kid="k2", keyring=keyring, kid_prefix="k",
        actor=Actor.cli(), now=authority.clock()))
    keys_dir = authority.settings.keys_dir
    assert not (keys_dir / "k2.pem").exists() and (keys_dir / "k2.jwk").exists()
    assert (keys_dir / "k1.pem").exists() and (keys_dir / "k3.pem").exists()


def _stop_k1(authority: Authority, how: str) -> None:
    if how == "retired":
        answer = authority.client.post("/v1/keys/rotate", headers=authority.admin)
        assert answer.status_code == 200, answer.text
    else:
        keyring = open_keyring(authority.settings)
        authority.database.transact(lambda session: compromise_key(
            session, kid="k1", keyring=keyring, kid_prefix="k",
            actor=Actor.cli(), now=authority.clock()))


@pytest.mark.parametrize(("how", "listed_as", "code_while_listed"), [
    ("retired", KeyState.RETIRED, ResultCode.OK),
    ("compromised", KeyState.COMPROMISED, ResultCode.KEY_COMPROMISED),
])
def test_attack_stopped_key_stays_on_the_trust_list_forever(
    authority: Authority, how: str, listed_as: KeyState, code_while_listed: ResultCode
) -> None:
    phone = device_key(42)
    bundle = authority.card_with_phone(phone)
    _stop_k1(authority, how)
    retired_until = _trust(authority).keys_by_kid["k1"].valid_until
    assert retired_until is not None
    assert _trust(authority).keys_by_kid["k1"].state is listed_as
    assert authority.check(bundle, phone) == code_while_listed.value
    authority.clock.now = authority.clock.now + timedelta(
        seconds=retired_until + KEY_RETENTION_SECONDS - 1 - authority.clock.epoch)
    assert "k1" in _trust(authority).keys_by_kid  # one second before its retention ends
    authority.clock.advance(1)
    listed = _trust(authority).keys_by_kid
    assert "k1" not in listed and {"k2", "k3"} <= set(listed)
    assert authority.check(bundle, phone) == ResultCode.UNKNOWN_KEY.value


def test_attack_century_pay_credential_charged_at_the_authority(authority: Authority) -> None:
    phone = device_key(43)
    bundle = authority.card_with_phone(phone)
    genuine = verify(authority.state(), bundle["credentials"]["pay"], phone, purpose="pay",
                     service="payment", now=authority.clock.epoch).credential
    assert genuine is not None
    stolen_k1 = open_keyring(authority.settings).signer("k1")  # as a thief of the key would
    forged = sign_credential(genuine._replace(expires_at=genuine.issued_at + CENTURY), stolen_k1)
    merchant = authority.client.post("/v1/merchants", headers=authority.admin,
                                     json={"name": "Bead Shop"}).json()
    terminal = authority.client.post(f"/v1/merchants/{merchant['merchant_id']}/terminals",
                                     headers=authority.admin, json={"name": "till 1"}).json()
    answer = authority.client.post(
        "/v1/payments", headers={"Authorization": f"Bearer {terminal['token']}"},
        json={"pay_code": sign_presentation(forged, phone, proof_time=authority.clock.epoch,
                                            purpose="pay"),
              "amount_fen": 100, "idempotency_key": "century"})
    assert answer.status_code == 422 and answer.json()["code"] == "LIFETIME_TOO_LONG"
