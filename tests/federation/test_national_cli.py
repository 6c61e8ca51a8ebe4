"""`cardsvc national ...` end to end in process: two real cities made by `cardsvc init`."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardsvc.cli import app
from cardsvc.db import Database
from cardsvc.services.bootstrap import open_keyring
from cardsvc.services.trust import signed_trust_list
from cardsvc.settings import get_settings
from schemas.federation import FederationClaims, IssuerState, SequenceBlock
from verifier.federation import resolve_issuer_key, verify_federation_list

_NAMES_ZH = {"CN-YW": "义乌", "CN-HZ": "杭州", "CN-NB": "宁波"}
PASSPHRASE = "national test passphrase"


@dataclass(frozen=True)
class City:
    code: str
    data_dir: Path
    root_fingerprint: str
    trust_list_file: Path | str  # a file, or a URL


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _write_trust_list(city_dir: Path, code: str, out: Path) -> Path:
    settings = get_settings(data_dir=city_dir, issuer=code)
    database = Database.from_settings(settings)
    try:
        signed = database.transact(lambda session: signed_trust_list(
            session, keyring=open_keyring(settings), issuer=code, now=datetime.now(UTC),
            lifetime_seconds=30 * 86_400))
    finally:
        database.dispose()
    out.write_text(signed.jwt)
    return out


def _city(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str,
          prefix: str | None = None) -> City:
    monkeypatch.setenv("CARDSVC_ISSUER", code)
    monkeypatch.setenv("CARDSVC_KID_PREFIX", prefix or ("h" if code == "CN-HZ" else "k"))
    data_dir = tmp_path / code
    exit_code, output = _run("init", "--data-dir", str(data_dir))
    assert exit_code == 0, output
    found = re.search(r"root fingerprint:\s+(\S+)", output)
    assert found is not None
    trust_list = _write_trust_list(data_dir, code, tmp_path / f"{code}.jwt")
    return City(code, data_dir, found.group(1), trust_list)


@pytest.fixture
def cities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[City, City]:
    for name in ("CARDSVC_DATABASE_URL", "CARDSVC_KEY_PASSPHRASE", "CARDSVC_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FMC_NATIONAL_PASSPHRASE", PASSPHRASE)
    return _city(tmp_path, monkeypatch, "CN-YW"), _city(tmp_path, monkeypatch, "CN-HZ")


def _add(national: Path, city: City, *extra: str) -> tuple[int, str]:
    host = city.code.lower()
    return _run("national", "add-issuer", "--dir", str(national), "--code", city.code,
                "--name-en", city.code[3:].title(), "--name-zh", _NAMES_ZH[city.code],
                "--trust-list", str(city.trust_list_file),
                "--city-root-fingerprint", city.root_fingerprint,
                "--status-url", f"https://{host}.example.cn/v1/status-lists",
                "--api-url", f"https://{host}.example.cn", *extra)


def _publish(national: Path, out: Path, pin: str, held: FederationClaims | None
             ) -> FederationClaims:
    exit_code, output = _run("national", "publish", "--dir", str(national), "--out", str(out))
    assert exit_code == 0, output
    return verify_federation_list(out.read_text().strip(), pinned_root_fingerprint=pin,
                                  now=int(datetime.now(UTC).timestamp()), held=held)


def test_init_add_publish_suspend(tmp_path: Path, cities: tuple[City, City]) -> None:
    yiwu, hangzhou = cities
    national = tmp_path / "national"
    exit_code, output = _run("national", "init", "--dir", str(national))
    assert exit_code == 0, output
    found = re.search(r"national root fingerprint:\s+([A-Za-z0-9_-]{43})", output)
    assert found is not None
    pin = found.group(1)
    assert "already initialised" in _run("national", "init", "--dir", str(national))[1]
    assert (national / "keys" / "national-root.pem").read_bytes().startswith(
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    assert _add(national, yiwu)[0] == 0
    assert _add(national, hangzhou)[0] == 0
    out = tmp_path / "federation.jwt"
    first = _publish(national, out, pin, None)
    assert first.version == 1
    assert [e.code for e in first.issuers] == ["CN-YW", "CN-HZ"]
    # each city's interchange key is copied from its trust list (P10, ``ik``)
    assert [[k.kid for k in e.interchange_keys] for e in first.issuers] == [["ki1"], ["hi1"]]
    assert first.issuers_by_code["CN-YW"].sequence_blocks == (SequenceBlock(1, 100),)
    assert first.issuers_by_code["CN-HZ"].sequence_blocks == (SequenceBlock(101, 200),)
    # Kids are unique nationally: Yiwu mints k1, Hangzhou h1.
    _, yiwu_k1 = resolve_issuer_key(first, unverified_issuer="CN-YW", unverified_kid="k1")
    _, hangzhou_k1 = resolve_issuer_key(first, unverified_issuer="CN-HZ", unverified_kid="h1")
    assert yiwu_k1.public_key != hangzhou_k1.public_key

    exit_code, output = _run("national", "suspend-issuer", "--dir", str(national),
                             "--code", "CN-HZ")
    assert exit_code == 0, output
    second = _publish(national, out, pin, first)
    assert second.version == 2
    assert second.issuers_by_code["CN-HZ"].state is IssuerState.SUSPENDED
    exit_code, output = _run("national", "show", "--dir", str(national))
    assert exit_code == 0 and pin in output and "last published version: 2" in output
    assert re.search(r"CN-HZ\s+suspended", output) and re.search(r"CN-YW\s+active", output)


def test_update_issuer_carries_a_city_compromise(tmp_path: Path,
                                                 cities: tuple[City, City]) -> None:
    yiwu, _ = cities
    national = tmp_path / "national"
    assert _run("national", "init", "--dir", str(national))[0] == 0
    assert _add(national, yiwu)[0] == 0
    old_list = tmp_path / "old.jwt"
    old_list.write_text(yiwu.trust_list_file.read_text())
    exit_code, output = _run("keys", "compromise", "k1", "--data-dir", str(yiwu.data_dir))
    assert exit_code == 0, output
    _write_trust_list(yiwu.data_dir, "CN-YW", yiwu.trust_list_file)
    exit_code, output = _run("national", "update-issuer", "--dir", str(national),
                             "--code", "CN-YW")
    assert exit_code == 0 and re.search(r"k1 compromised", output), output
    # The city's older list cannot bring k1 back.
    exit_code, output = _run("national", "update-issuer", "--dir", str(national),
                             "--code", "CN-YW", "--trust-list", str(old_list))
    assert exit_code == 1 and "TRUST_LIST_ROLLBACK" in output
    show = _run("national", "show", "--dir", str(national))[1]
    assert "k1 compromised" in show


def _expect(code: str, exit_status: int, result: tuple[int, str]) -> None:
    assert result[0] == exit_status and f"error: {code}:" in result[1], result
    assert "Traceback" not in result[1]


def test_refusals_have_codes_and_change_nothing(
    tmp_path: Path, cities: tuple[City, City], monkeypatch: pytest.MonkeyPatch
) -> None:
    yiwu, hangzhou = cities
    national = tmp_path / "national"
    _expect("NOT_INITIALISED", 2, _run("national", "show", "--dir", str(national)))
    assert _run("national", "init", "--dir", str(national))[0] == 0
    out = tmp_path / "federation.jwt"
    _expect("NO_ISSUERS", 1, _run("national", "publish", "--dir", str(national),
                                  "--out", str(out)))
    wrong_root = City(yiwu.code, yiwu.data_dir, hangzhou.root_fingerprint, yiwu.trust_list_file)
    _expect("UNKNOWN_KEY", 1, _add(national, wrong_root))
    mislabelled = City("CN-HZ", yiwu.data_dir, yiwu.root_fingerprint, yiwu.trust_list_file)
    _expect("ISSUER_MISMATCH", 1, _add(national, mislabelled))
    _expect("BAD_TRUST_LIST", 1, _add(national, City(
        yiwu.code, yiwu.data_dir, yiwu.root_fingerprint, tmp_path / "missing.jwt")))
    _expect("INVALID_ISSUER", 1, _add(national, yiwu, "--name-zh", "义\u202e乌"))
    _expect("BAD_BLOCK_SIZE", 1, _add(national, yiwu, "--block-size", "1000"))
    before = (national / "registry.json").read_bytes()
    assert before.count(b'"code"') == 0  # nothing refused was kept
    assert _add(national, yiwu)[0] == 0
    _expect("ISSUER_EXISTS", 1, _add(national, yiwu))
    _expect("SEQUENCE_EXHAUSTED", 1, _add(national, hangzhou, "--block-size", "950"))
    _expect("ISSUER_NOT_FOUND", 1, _run("national", "suspend-issuer", "--dir", str(national),
                                        "--code", "CN-NB"))
    assert _run("national", "remove-issuer", "--dir", str(national), "--code", "CN-YW")[0] == 0
    _expect("ISSUER_REMOVED", 1, _run("national", "reinstate-issuer", "--dir", str(national),
                                      "--code", "CN-YW"))
    # A removed city's block stays reserved: the next city gets the next block.
    assert _add(national, hangzhou)[0] == 0
    assert "sequence: 101-200" in _run("national", "show", "--dir", str(national))[1]
    monkeypatch.delenv("FMC_NATIONAL_PASSPHRASE")
    _expect("NO_PASSPHRASE", 2, _run("national", "publish", "--dir", str(national),
                                     "--out", str(out)))
    monkeypatch.setenv("FMC_NATIONAL_PASSPHRASE", "wrong")
    _expect("ROOT_UNAVAILABLE", 1, _run("national", "publish", "--dir", str(national),
                                        "--out", str(out)))
    assert not out.exists()


def test_add_issuer_pulls_the_trust_list_from_a_serving_city(
    tmp_path: Path, cities: tuple[City, City]
) -> None:
    from kit.net import free_port, serving

    from cardsvc.api import create_app

    yiwu, _ = cities
    national = tmp_path / "national"
    assert _run("national", "init", "--dir", str(national))[0] == 0
    unreachable = f"http://127.0.0.1:{free_port()}/v1/trust-list"
    _expect("NETWORK_UNAVAILABLE", 1, _add(national, replace(yiwu, trust_list_file=unreachable)))
    with serving(create_app(get_settings(data_dir=yiwu.data_dir, issuer=yiwu.code))) as url:
        _expect("BAD_RESPONSE", 1, _add(national, replace(yiwu, trust_list_file=f"{url}/nope")))
        exit_code, output = _add(national, replace(yiwu, trust_list_file=f"{url}/v1/trust-list"))
    assert exit_code == 0 and re.search(r"k1 active", output), output


def test_a_kid_another_city_uses_is_refused(
    tmp_path: Path, cities: tuple[City, City], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kids are unique nationally: a city that kept the default prefix ``k`` beside Yiwu
    is refused at add-issuer and at update-issuer, and nothing is kept."""
    yiwu, hangzhou = cities
    national = tmp_path / "national"
    assert _run("national", "init", "--dir", str(national))[0] == 0
    assert _add(national, yiwu)[0] == 0
    ningbo = _city(tmp_path, monkeypatch, "CN-NB", prefix="k")
    before = (national / "registry.json").read_bytes()
    _expect("KID_IN_USE", 1, _add(national, ningbo))
    assert (national / "registry.json").read_bytes() == before
    # Hangzhou rotates (h3 next); Yiwu rotates once with the prefix h by mistake: h3.
    assert _add(national, hangzhou)[0] == 0
    for city, prefix in ((hangzhou, "h"), (yiwu, "h")):
        monkeypatch.setenv("CARDSVC_KID_PREFIX", prefix)
        exit_code, output = _run("keys", "rotate", "--data-dir", str(city.data_dir))
        assert exit_code == 0 and "h3" in output, output
        _write_trust_list(city.data_dir, city.code, Path(city.trust_list_file))
    assert _run("national", "update-issuer", "--dir", str(national), "--code", "CN-HZ")[0] == 0
    before = (national / "registry.json").read_bytes()
    _expect("KID_IN_USE", 1, _run("national", "update-issuer", "--dir", str(national),
                                  "--code", "CN-YW"))
    assert (national / "registry.json").read_bytes() == before


def test_grant_block(tmp_path: Path, cities: tuple[City, City]) -> None:
    yiwu, hangzhou = cities
    national = tmp_path / "national"
    assert _run("national", "init", "--dir", str(national))[0] == 0
    assert _add(national, yiwu)[0] == 0
    assert _add(national, hangzhou)[0] == 0

    def grant(code: str, *extra: str) -> tuple[int, str]:
        return _run("national", "grant-block", "--dir", str(national), "--code", code, *extra)

    # Hangzhou's next block follows its own: the two merge into one.
    exit_code, output = grant("CN-HZ", "--block-size", "50")
    assert exit_code == 0 and "sequence: 101-250" in output, output
    exit_code, output = grant("CN-YW")
    assert exit_code == 0 and "sequence: 1-100, 251-350" in output, output
    before = (national / "registry.json").read_bytes()
    _expect("BAD_BLOCK_SIZE", 1, grant("CN-YW", "--block-size", "0"))
    _expect("SEQUENCE_EXHAUSTED", 1, grant("CN-YW", "--block-size", "700"))
    _expect("ISSUER_NOT_FOUND", 1, grant("CN-NB"))
    assert (national / "registry.json").read_bytes() == before
    for _ in range(6):  # alternate, so no grant extends a block: eight blocks for Yiwu
        assert grant("CN-HZ", "--block-size", "5")[0] == 0
        assert grant("CN-YW", "--block-size", "5")[0] == 0
    # The next free run follows Yiwu's last block, so it extends it; after one more for
    # Hangzhou it would be a ninth block.
    assert grant("CN-YW", "--block-size", "5")[0] == 0
    assert grant("CN-HZ", "--block-size", "5")[0] == 0
    before = (national / "registry.json").read_bytes()
    _expect("TOO_MANY_BLOCKS", 1, grant("CN-YW", "--block-size", "5"))
    assert (national / "registry.json").read_bytes() == before
    assert _run("national", "remove-issuer", "--dir", str(national), "--code", "CN-HZ")[0] == 0
    _expect("ISSUER_REMOVED", 1, grant("CN-HZ"))
    out = tmp_path / "federation.jwt"
    exit_code, output = _run("national", "publish", "--dir", str(national), "--out", str(out))
    assert exit_code == 0, output
