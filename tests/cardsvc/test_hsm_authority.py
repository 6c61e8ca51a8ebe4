"""P13.1: an authority whose keys live in PKCS#11 tokens (SoftHSM2), as real processes.

The issuer keys are made in one token and never leave it; the root lives in another that
is "plugged in" (its PIN set) only for a signing ceremony. Everything runs as console
scripts and `cardsvc serve`, each process reading the test's own SoftHSM configuration.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kit.processes import PYTHON, CardsvcServer, clean_env, run_cli

from schemas import TrustListClaims
from verifier import verify_trust_list
from verifier.federation import verify_federation_list

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
ISSUER_PIN, ROOT_PIN = "112233", "445566"
KEYS = f"pkcs11:token=city-issuer;module-path={MODULE}"
ROOT_KEYS = f"pkcs11:token=city-root;module-path={MODULE}"


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two fresh tokens and the environment that finds them (SOFTHSM2_CONF)."""
    assert Path(MODULE).exists(), "SoftHSM2 is needed (make installs Debian's softhsm2)"
    directory = tmp_path_factory.mktemp("hsm-authority")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    env = clean_env(SOFTHSM2_CONF=str(conf), CARDSVC_KEY_PASSPHRASE="test passphrase 1234")
    for label, pin in (("city-issuer", ISSUER_PIN), ("city-root", ROOT_PIN)):
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                        "--so-pin", "13579", "--pin", pin], check=True, capture_output=True,
                       env=env)
    yield env


def _token_kids(env: dict[str, str], uri: str, pin: str) -> list[str]:
    """The labels of the private keys in a token, read by a process of its own."""
    listed = subprocess.run(
        [str(PYTHON), "-c", "import sys, json; from keys.pkcs11 import HsmKeyStore;"
         "print(json.dumps(HsmKeyStore.open(sys.argv[1], pin=sys.argv[2]).kids()))", uri, pin],
        capture_output=True, text=True, env=env, check=True)
    return list(json.loads(listed.stdout))


def test_an_authority_in_tokens_signs_with_a_root_plugged_in_only_to_sign(
    softhsm: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ceremony = {**softhsm, "CARDSVC_HSM_PIN": ISSUER_PIN, "CARDSVC_ROOT_PIN": ROOT_PIN}
    daily = {**softhsm, "CARDSVC_HSM_PIN": ISSUER_PIN}  # the root token is unplugged

    init = run_cli("cardsvc", "init", "--data-dir", str(data), "--keys", KEYS,
                   "--root-keys", ROOT_KEYS, env=ceremony)
    assert init.returncode == 0, init.stderr
    fingerprint = init.stdout.split("root fingerprint:")[1].split()[0]
    # Only handles in the data dir: no private signing key file, no data KEK (made in
    # the token, tests/cardsvc/test_hsm_kek.py), only token URIs.
    assert sorted(p.name for p in (data / "keys").iterdir()) == ["pkcs11.json"]
    assert _token_kids(softhsm, KEYS, ISSUER_PIN) == ["k1", "k2", "ki1", "ts1"]
    assert _token_kids(softhsm, ROOT_KEYS, ROOT_PIN) == ["root"]

    # Without the root's PIN nothing can sign a trust list...
    refused = run_cli("cardsvc", "trust", "sign", "--data-dir", str(data), env=daily)
    assert refused.returncode == 1 and "ROOT_OFFLINE" in refused.stderr
    # ...the ceremony can.
    signed = run_cli("cardsvc", "trust", "sign", "--data-dir", str(data), env=ceremony)
    assert signed.returncode == 0 and " signed; expires " in signed.stdout, signed.stderr

    server = CardsvcServer(data, daily).start()
    try:
        trust_jwt = httpx.get(server.url + "/v1/trust-list").text
        trust = verify_trust_list(trust_jwt, root_fingerprint=fingerprint)
        assert [key.kid for key in trust.keys] == ["k1", "k2"]

        # A rotation needs no root: k3 is made in the token, the served list stays the
        # last signed one (k2 was already published as next) until the next ceremony.
        rotated = run_cli("cardsvc", "keys", "rotate", "--data-dir", str(data), env=daily)
        assert rotated.returncode == 0, rotated.stderr
        assert "k3" in _token_kids(softhsm, KEYS, ISSUER_PIN)
        assert httpx.get(server.url + "/v1/trust-list").text == trust_jwt
        assert "k1" not in _token_kids(softhsm, KEYS, ISSUER_PIN)  # retired: destroyed

        again = run_cli("cardsvc", "trust", "sign", "--data-dir", str(data), env=ceremony)
        assert again.returncode == 0, again.stderr
        newer = _served_after(server, fingerprint, trust.version)
        assert newer.version > trust.version and "k3" in [key.kid for key in newer.keys]

        compromised = run_cli("cardsvc", "keys", "compromise", "k3", "--data-dir", str(data),
                              env=daily)
        assert compromised.returncode == 0, compromised.stderr
        assert "k3" not in _token_kids(softhsm, KEYS, ISSUER_PIN)
    finally:
        server.stop()

    # A backup holds handles and public keys only; a restore opens the same token.
    archive = tmp_path / "backup.tar.gz"
    backed_up = run_cli("cardsvc", "backup", "--data-dir", str(data), "--out", str(archive),
                        "--insecure-plaintext", env=daily)  # to look inside (P13)
    assert backed_up.returncode == 0, backed_up.stderr
    with tarfile.open(archive) as opened:
        names = opened.getnames()
        keys_members = [name for name in names if name.startswith("keys/")]
        assert keys_members == ["keys/pkcs11.json"]
        for name in keys_members:
            member = opened.extractfile(name)
            assert member is not None and b"PRIVATE KEY" not in member.read()
    restored_dir = tmp_path / "restored"
    restored = run_cli("cardsvc", "restore", "--data-dir", str(restored_dir), "--from",
                       str(archive), env=daily)
    assert restored.returncode == 0, restored.stderr
    listed = run_cli("cardsvc", "keys", "list", "--data-dir", str(restored_dir), env=daily)
    assert listed.returncode == 0 and "k4" in listed.stdout, listed.stderr


def _served_after(server: CardsvcServer, fingerprint: str, version: int) -> TrustListClaims:
    """The trust list served once it is newer than ``version``. The list was signed by
    another process (the ceremony's CLI): the server shows it within its recheck interval
    (CARDSVC_PUBLICATION_RECHECK_SECONDS, 1 s), not at once; 10 s is the test's bound."""
    deadline = time.monotonic() + 10
    while True:
        served = verify_trust_list(httpx.get(server.url + "/v1/trust-list").text,
                                   root_fingerprint=fingerprint)
        if served.version > version or time.monotonic() > deadline:
            return served
        time.sleep(0.1)


def test_a_token_that_does_not_open_is_a_clear_refusal(
    softhsm: dict[str, str], tmp_path: Path
) -> None:
    for args, env, code in (
        (("--keys", KEYS), softhsm, "NO_PIN"),
        (("--keys", KEYS), {**softhsm, "CARDSVC_HSM_PIN": "000000"}, "KEYS_UNAVAILABLE"),
        (("--keys", "pkcs11:token=no-such-token"), {**softhsm, "CARDSVC_HSM_PIN": "1"},
         "KEYS_UNAVAILABLE"),
        (("--keys", "pkcs11:token=x;pin-value=1234"), softhsm, "BAD_KEYS_URI"),
    ):
        data = tmp_path / code / str(len(args[1]))
        answer = run_cli("cardsvc", "init", "--data-dir", str(data), *args, env=env)
        assert answer.returncode in (1, 2) and code in answer.stderr, (args, answer.stderr)
        assert "Traceback" not in answer.stderr


NATIONAL_PIN = "778899"
NATIONAL_KEYS = f"pkcs11:token=national-root;module-path={MODULE}"


def _city_trust_list(env: dict[str, str], data: Path) -> str:
    """A city's root-signed trust list, signed by a process of its own."""
    signed = subprocess.run(
        [str(PYTHON), "-c",
         "import sys; from datetime import UTC, datetime; from pathlib import Path;"
         "from cardsvc.db import Database; from cardsvc.settings import get_settings;"
         "from cardsvc.services.bootstrap import open_keyring;"
         "from cardsvc.services.trust import signed_trust_list;"
         "s = get_settings(data_dir=Path(sys.argv[1])); k = open_keyring(s);"
         "db = Database.from_settings(s);"
         "print(db.transact(lambda x: signed_trust_list(x, keyring=k, issuer=s.issuer,"
         " now=datetime.now(UTC), lifetime_seconds=30 * 86400)).jwt)", str(data)],
        capture_output=True, text=True, env=env, check=True)
    return signed.stdout.strip()


def test_the_national_root_lives_in_a_token_plugged_in_only_to_publish(
    softhsm: dict[str, str], tmp_path: Path
) -> None:
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "national-root",
                    "--so-pin", "13579", "--pin", NATIONAL_PIN], check=True,
                   capture_output=True, env=softhsm)
    national = tmp_path / "national"
    plugged = {**softhsm, "FMC_NATIONAL_PIN": NATIONAL_PIN}
    made = run_cli("cardsvc", "national", "init", "--dir", str(national), "--keys",
                   NATIONAL_KEYS, env=plugged)
    assert made.returncode == 0, made.stderr
    fingerprint = made.stdout.split("national root fingerprint:")[1].split()[0]
    assert not (national / "keys").exists()  # no key file: only the token's URI is kept
    assert _token_kids(softhsm, NATIONAL_KEYS, NATIONAL_PIN) == ["national-root"]

    city = tmp_path / "city"
    assert run_cli("cardsvc", "init", "--data-dir", str(city), env=softhsm).returncode == 0
    city_fp = run_cli("cardsvc", "init", "--data-dir", str(city), env=softhsm
                      ).stdout.split("root fingerprint:")[1].split()[0]
    trust_file = tmp_path / "yw-trust.jwt"
    trust_file.write_text(_city_trust_list(softhsm, city))
    added = run_cli("cardsvc", "national", "add-issuer", "--dir", str(national), "--code",
                    "CN-YW", "--name-en", "Yiwu", "--name-zh", "义乌", "--trust-list",
                    str(trust_file), "--city-root-fingerprint", city_fp, "--status-url",
                    "https://yw.example/v1/status-lists", "--api-url", "https://yw.example",
                    env=softhsm)
    assert added.returncode == 0, added.stderr

    out = tmp_path / "federation.jwt"
    unplugged = run_cli("cardsvc", "national", "publish", "--dir", str(national), "--out",
                        str(out), env=softhsm)
    assert unplugged.returncode == 2 and "NO_PIN" in unplugged.stderr
    assert not out.exists()
    published = run_cli("cardsvc", "national", "publish", "--dir", str(national), "--out",
                        str(out), env=plugged)
    assert published.returncode == 0, published.stderr
    claims = verify_federation_list(out.read_text().strip(), pinned_root_fingerprint=fingerprint,
                                    now=int(time.time()), held=None)
    assert [entry.code for entry in claims.issuers] == ["CN-YW"]
