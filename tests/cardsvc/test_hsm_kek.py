"""P13.2: the KEK of the sealed personal data inside the PKCS#11 token (SoftHSM2).

An authority made with ``--keys pkcs11:…`` wraps its data keys with an AES-256 key made
in the token (sensitive, never extractable); the database names it, a backup names it,
no file holds it. One made before (a file KEK beside token signing keys) moves it with
``cardsvc keys move-kek --to-hsm``. Real processes, each reading the test's SoftHSM
configuration, as in test_hsm_authority.py.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cardsvc_kit import portrait_bytes
from kit.names import in_letters
from kit.processes import PYTHON, CardsvcServer, clean_env, run_cli

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "314159"
PASSPHRASE = "kek test passphrase 1234"


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a fresh SoftHSM2 token directory (tokens made per test)."""
    assert Path(MODULE).exists(), "SoftHSM2 is needed (make installs Debian's softhsm2)"
    directory = tmp_path_factory.mktemp("hsm-kek")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    yield clean_env(SOFTHSM2_CONF=str(conf), CARDSVC_KEY_PASSPHRASE=PASSPHRASE)


def _token(env: dict[str, str], label: str) -> str:
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                    "--so-pin", "13579", "--pin", PIN], check=True, capture_output=True,
                   env=env)
    return f"pkcs11:token={label};module-path={MODULE}"


_KEK_ATTRIBUTES = """
import json, sys
import pkcs11
from pkcs11 import Attribute, KeyType, ObjectClass
token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2])
with token.open(user_pin=sys.argv[3]) as session:
    print(json.dumps({key.label: {name: bool(key[getattr(Attribute, name)]) for name in (
        "TOKEN", "SENSITIVE", "EXTRACTABLE", "NEVER_EXTRACTABLE", "ALWAYS_SENSITIVE",
        "LOCAL", "WRAP", "UNWRAP", "ENCRYPT", "DECRYPT")}
        for key in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})}))
"""


def _token_keks(env: dict[str, str], label: str) -> dict[str, dict[str, bool]]:
    """The secret keys in a token and their attributes, read by a process of its own."""
    listed = subprocess.run([str(PYTHON), "-c", _KEK_ATTRIBUTES, MODULE, label, PIN],
                            capture_output=True, text=True, env=env, check=True)
    return dict(json.loads(listed.stdout))


def _row_keks(data: Path) -> list[str]:
    with sqlite3.connect(data / "cardsvc.db") as connection:
        return [row[0] for row in connection.execute("SELECT kek FROM data_keys ORDER BY id")]


def _init(env: dict[str, str], data: Path, keys: str) -> dict[str, str]:
    init = run_cli("cardsvc", "init", "--data-dir", str(data), "--keys", keys, env=env)
    assert init.returncode == 0, init.stderr
    return {"Authorization": "Bearer " + init.stdout.split("admin token:")[1].split()[0]}


def _enrol(url: str, admin: dict[str, str], number: str) -> dict[str, Any]:
    person = httpx.post(url + "/v1/persons", headers=admin, timeout=30, json={
        "surname": "ADEYEMI", "given_names": "FOLA " + in_letters(int(number[-2:])),
        "nationality": "NGA",
        "birth_date": f"1990-0{1 + int(number[-1]) % 9}-1{number[-1]}",
        "sex": "F", "confirm_new": True,
        "passport": {"number": number, "country": "NGA", "expires": "2032-01-31"},
        "portrait": base64.b64encode(portrait_bytes()).decode()})
    assert person.status_code == 201, person.text
    return dict(person.json())


def _found(url: str, admin: dict[str, str], number: str) -> str:
    found = httpx.get(url + "/v1/persons", headers=admin, timeout=30,
                      params={"passport": number, "country": "NGA"})
    assert found.status_code == 200, found.text
    return str(found.json()["foreigner_code"])


def test_an_hsm_authority_wraps_its_data_keys_in_the_token_and_backs_up_only_its_name(
    softhsm: dict[str, str], tmp_path: Path
) -> None:
    keys = _token(softhsm, "kek-issuer")
    env = {**softhsm, "CARDSVC_HSM_PIN": PIN}
    data = tmp_path / "data"
    admin = _init(env, data, keys)

    # The KEK was made in the token: a token object, sensitive, never extractable (so
    # its bytes were never anywhere else: no file, row or backup can hold them), allowed
    # only to wrap and unwrap. The data dir holds the token URI, no key file.
    keks = _token_keks(env, "kek-issuer")
    assert list(keks) == ["data-kek-1"]
    assert keks["data-kek-1"] == {"TOKEN": True, "SENSITIVE": True, "EXTRACTABLE": False,
                                  "NEVER_EXTRACTABLE": True, "ALWAYS_SENSITIVE": True,
                                  "LOCAL": True, "WRAP": True, "UNWRAP": True,
                                  "ENCRYPT": False, "DECRYPT": False}
    assert sorted(p.name for p in (data / "keys").iterdir()) == ["pkcs11.json"]
    assert not list(data.rglob("*.key"))
    assert _row_keks(data) == ["pkcs11:data-kek-1"] * 2  # the DEK and the index key

    server = CardsvcServer(data, env).start()
    try:
        person = _enrol(server.url, admin, "KEKH00001")
        assert _found(server.url, admin, "KEKH00001") == person["foreigner_code"]
        jpeg = httpx.get(f"{server.url}/v1/portraits/{person['portrait_digest']}",
                         headers=admin, timeout=30).content
    finally:
        server.stop()

    # The backup: the wrapped data keys (in the database) and the KEK's name, no key.
    archive = tmp_path / "backup.tar.gz"
    backed_up = run_cli("cardsvc", "backup", "--data-dir", str(data), "--out", str(archive),
                        "--insecure-plaintext", env=env)  # plain, to look inside
    assert backed_up.returncode == 0, backed_up.stderr
    with tarfile.open(archive) as opened:
        assert sorted(opened.getnames()) == ["MANIFEST.json", "cardsvc.db",
                                             "keys/pkcs11.json"]
        manifest_file = opened.extractfile("MANIFEST.json")
        assert manifest_file is not None
        assert json.loads(manifest_file.read())["data_keks"] == ["pkcs11:data-kek-1"]
        database_file = opened.extractfile("cardsvc.db")
        assert database_file is not None and b"KEKH00001" not in database_file.read()

    # A restore needs the token: with it every sealed field opens.
    restored = tmp_path / "restored"
    answer = run_cli("cardsvc", "restore", "--data-dir", str(restored), "--from",
                     str(archive), env=env)
    assert answer.returncode == 0, answer.stderr
    assert "pkcs11:data-kek-1 in the token" in answer.stdout
    server = CardsvcServer(restored, env).start()
    try:
        assert _found(server.url, admin, "KEKH00001") == person["foreigner_code"]
        portrait = httpx.get(f"{server.url}/v1/portraits/{person['portrait_digest']}",
                             headers=admin, timeout=30)
        assert portrait.status_code == 200 and portrait.content == jpeg
    finally:
        server.stop()


def test_without_the_token_or_its_pin_sealed_data_does_not_open(
    softhsm: dict[str, str], tmp_path: Path
) -> None:
    keys = _token(softhsm, "kek-absent")
    env = {**softhsm, "CARDSVC_HSM_PIN": PIN}
    data = tmp_path / "data"
    admin = _init(env, data, keys)
    server = CardsvcServer(data, env).start()
    try:
        _enrol(server.url, admin, "KEKA00001")
    finally:
        server.stop()
    before = _row_keks(data)
    empty = tmp_path / "no-tokens"
    (empty / "tokens").mkdir(parents=True)
    (empty / "softhsm2.conf").write_text(f"directories.tokendir = {empty / 'tokens'}\n"
                                         "objectstore.backend = file\nlog.level = ERROR\n")
    for name, broken, code in (
        ("wrong PIN", {**env, "CARDSVC_HSM_PIN": "000000"}, "DATA_KEY_UNAVAILABLE"),
        ("no PIN", softhsm, "NO_PIN"),
        ("token absent", {**env, "SOFTHSM2_CONF": str(empty / "softhsm2.conf")},
         "DATA_KEY_UNAVAILABLE"),
    ):
        # Every command that opens sealed data refuses with a code, and changes nothing.
        for command in (("keys", "rotate-data-key"), ("keys", "rotate-kek")):
            refused = run_cli("cardsvc", *command, "--data-dir", str(data), env=broken)
            assert refused.returncode == 1, (name, command, refused.stdout)
            assert code in refused.stderr and "Traceback" not in refused.stderr, (
                name, refused.stderr)
        assert _row_keks(data) == before
        serve = run_cli("cardsvc", "serve", "--data-dir", str(data), "--port", "9", env=broken)
        assert serve.returncode != 0 and "Traceback" not in serve.stderr, (name, serve.stderr)


def test_rotating_the_token_kek_rewraps_every_data_key_while_serving(
    softhsm: dict[str, str], tmp_path: Path
) -> None:
    keys = _token(softhsm, "kek-rotate")
    env = {**softhsm, "CARDSVC_HSM_PIN": PIN}
    data = tmp_path / "data"
    admin = _init(env, data, keys)
    server = CardsvcServer(data, env).start()
    try:
        person = _enrol(server.url, admin, "KEKR00001")
        rotated = run_cli("cardsvc", "keys", "rotate-kek", "--data-dir", str(data), env=env)
        assert rotated.returncode == 0, rotated.stderr
        assert "2 data keys re-wrapped by pkcs11:data-kek-2" in rotated.stdout
        assert "kept pkcs11:data-kek-1" in rotated.stdout  # old backups need it
        assert _row_keks(data) == ["pkcs11:data-kek-2"] * 2
        assert sorted(_token_keks(env, "kek-rotate")) == ["data-kek-1", "data-kek-2"]
        # a new DEK now wrapped by the new KEK; the running server opens both
        run_cli("cardsvc", "keys", "rotate-data-key", "--data-dir", str(data), env=env)
        assert _enrol(server.url, admin, "KEKR00002")["foreigner_code"]
        assert _found(server.url, admin, "KEKR00001") == person["foreigner_code"]

        again = run_cli("cardsvc", "keys", "rotate-kek", "--destroy-old", "--data-dir",
                        str(data), env=env)
        assert again.returncode == 0, again.stderr
        assert "destroyed pkcs11:data-kek-2" in again.stdout
        assert sorted(_token_keks(env, "kek-rotate")) == ["data-kek-1", "data-kek-3"]
        assert _found(server.url, admin, "KEKR00001") == person["foreigner_code"]
    finally:
        server.stop()
    audit = sqlite3.connect(data / "cardsvc.db")
    try:
        actions = [row[0] for row in audit.execute(
            "SELECT action FROM audit_entries WHERE action LIKE 'keys.kek%' ORDER BY seq")]
    finally:
        audit.close()
    assert actions == ["keys.kek_rotated", "keys.kek_rotated"]


_BACK_TO_A_FILE = """
import sys
from pathlib import Path
from cardsvc.db import Database
from cardsvc.services.sealing import KekRing, data_key_store, data_keks_for, rewrap_data_keys
from cardsvc.settings import get_settings
settings = get_settings(data_dir=Path(sys.argv[1]))
files, token = KekRing.of_file(data_key_store(settings)), data_keks_for(settings)
database = Database.from_settings(settings)
done = database.transact(lambda session: rewrap_data_keys(
    session.connection(), keks=token, to=files.create()))
token.destroy(done.replaced[0])
print(done)
"""


def test_an_hsm_authority_with_a_file_kek_moves_it_into_the_token(
    softhsm: dict[str, str], tmp_path: Path
) -> None:
    keys = _token(softhsm, "kek-move")
    env = {**softhsm, "CARDSVC_HSM_PIN": PIN}
    data = tmp_path / "data"
    admin = _init(env, data, keys)
    server = CardsvcServer(data, env).start()
    try:
        person = _enrol(server.url, admin, "KEKM00001")
        # The state of an HSM authority made before P13.2: a file KEK, under the passphrase.
        old = subprocess.run([str(PYTHON), "-c", _BACK_TO_A_FILE, str(data)],
                             capture_output=True, text=True, env=env, check=False)
        assert old.returncode == 0, old.stderr
        assert _row_keks(data) == ["file:data-kek"] * 2 and not _token_keks(env, "kek-move")
        assert (data / "keys" / "data-kek.key").exists()

        moved = run_cli("cardsvc", "keys", "move-kek", "--to-hsm", "--data-dir", str(data),
                        env=env)
        assert moved.returncode == 0, moved.stderr
        assert "2 data keys re-wrapped by pkcs11:data-kek-1" in moved.stdout
        assert "destroyed file:data-kek" in moved.stdout
        assert _row_keks(data) == ["pkcs11:data-kek-1"] * 2
        assert sorted(p.name for p in (data / "keys").iterdir()) == ["pkcs11.json"]
        assert _found(server.url, admin, "KEKM00001") == person["foreigner_code"]

        again = run_cli("cardsvc", "keys", "move-kek", "--to-hsm", "--data-dir", str(data),
                        env=env)
        assert again.returncode == 0 and "nothing changed" in again.stdout, again.stderr
        assert list(_token_keks(env, "kek-move")) == ["data-kek-1"]
    finally:
        server.stop()
    with sqlite3.connect(data / "cardsvc.db") as audit:
        moves = [json.loads(row[0]) for row in audit.execute(
            "SELECT details FROM audit_entries WHERE action = 'keys.kek_moved'")]
    assert moves == [{"kek": "pkcs11:data-kek-1", "rows": 2, "replaced": ["file:data-kek"]}]


def test_a_file_authority_rotates_its_kek_and_cannot_move_it_to_a_token(
    softhsm: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = softhsm
    admin = _init(env, data, "file")
    refused = run_cli("cardsvc", "keys", "move-kek", "--to-hsm", "--data-dir", str(data),
                      env=env)
    assert refused.returncode == 1 and "KEYS_NOT_IN_HSM" in refused.stderr, refused.stderr
    server = CardsvcServer(data, env).start()
    try:
        person = _enrol(server.url, admin, "KEKF00001")
        rotated = run_cli("cardsvc", "keys", "rotate-kek", "--data-dir", str(data), env=env)
        assert rotated.returncode == 0, rotated.stderr
        assert "re-wrapped by file:data-kek-2" in rotated.stdout
        assert "destroyed file:data-kek" in rotated.stdout  # a backup keeps its own copy
        assert _row_keks(data) == ["file:data-kek-2"] * 2
        assert not (data / "keys" / "data-kek.key").exists()
        assert _found(server.url, admin, "KEKF00001") == person["foreigner_code"]
    finally:
        server.stop()


def test_a_backup_manifest_without_data_keks_still_reads() -> None:
    from cardsvc.services.backup import BackupManifest

    old = {"format": "fmc-authority-backup/1", "created_at": "2026-11-01T00:00:00+00:00",
           "database": "sqlite", "root_fingerprint": "ab", "audit_anchor": "1:" + "0" * 64,
           "files": {}}
    assert BackupManifest.from_json(json.dumps(old).encode()).data_keks == ()
