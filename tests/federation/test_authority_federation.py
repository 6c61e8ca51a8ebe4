"""Two cities made by `cardsvc init` join a federation through the national tool: each
holds the published list (`cardsvc federation sync`, and `serve` in the background),
serves it, and allocates foreigner codes only inside its own sequence blocks."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kit.names import in_letters
from kit.net import free_port, serving
from kit.processes import CardsvcServer, clean_env
from test_national_cli import PASSPHRASE, City, _add, _city, _run

from cardsvc.db import Database
from cardsvc.services.audit import Actor
from cardsvc.services.errors import DomainError
from cardsvc.services.persons import PassportDetails, PersonDetails, enrol_person
from cardsvc.settings import get_settings
from schemas import b64url_decode
from schemas._jose import parse_json_object

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


@contextmanager
def _static(path: Path) -> Iterator[str]:
    """A national publication: a plain file server for one file (read on each request)."""

    async def app(scope: Scope, receive: Callable[[], Awaitable[Message]],
                  send: Callable[[Message], Awaitable[None]]) -> None:
        assert scope["type"] == "http"
        body = path.read_bytes() if path.exists() else b""
        status = 200 if body else 404
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/jwt")]})
        await send({"type": "http.response.body", "body": body})

    with serving(app, lifespan="off") as url:
        yield url + "/federation.jwt"


def _enrol(city: City, surname: str, passport: str) -> str:
    settings = get_settings(data_dir=city.data_dir, issuer=city.code)
    database = Database.from_settings(settings)
    try:
        return database.transact(lambda session: enrol_person(
            session, details=PersonDetails(surname, "Ade", "NGA", date(1984, 5, 6), "F"),
            passport=PassportDetails(passport, "NGA", date(2032, 1, 1)), actor=Actor.cli(),
            now=datetime.now(UTC), confirm_new=True,
            issuer=settings.issuer)).person.foreigner_code
    finally:
        database.dispose()


def _sequence(code: str) -> int:
    return int(code[14:17])


def _version(jwt: str) -> int:
    return int(parse_json_object(b64url_decode(jwt.split(".")[1]))["ver"])


@pytest.fixture
def federation_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        tuple[City, City, Path, str]]:
    for name in ("CARDSVC_DATABASE_URL", "CARDSVC_KEY_PASSPHRASE", "CARDSVC_DATA_DIR",
                 "CARDSVC_FEDERATION_ROOT", "CARDSVC_FEDERATION_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FMC_NATIONAL_PASSPHRASE", PASSPHRASE)
    yiwu, hangzhou = _city(tmp_path, monkeypatch, "CN-YW"), _city(tmp_path, monkeypatch, "CN-HZ")
    monkeypatch.delenv("CARDSVC_ISSUER")
    monkeypatch.delenv("CARDSVC_KID_PREFIX")
    national = tmp_path / "national"
    exit_code, output = _run("national", "init", "--dir", str(national))
    assert exit_code == 0, output
    found = re.search(r"national root fingerprint:\s+(\S+)", output)
    assert found is not None
    yield yiwu, hangzhou, national, found.group(1)


def test_cities_sync_the_list_and_allocate_in_their_blocks(
    tmp_path: Path, federation_env: tuple[City, City, Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    yiwu, hangzhou, national, pin = federation_env
    # Yiwu ran alone before: three people of one prefix.
    before = [_enrol(yiwu, f"EARLY{in_letters(n)}", f"E{n:07d}") for n in range(3)]
    assert [_sequence(code) for code in before] == [1, 2, 3]
    exit_code, output = _run("federation", "highest-sequence", "--data-dir", str(yiwu.data_dir))
    assert (exit_code, output.strip()) == (0, "3")
    # Yiwu registers with a block covering its codes (100 >= 3), Hangzhou the next one.
    assert _add(national, yiwu, "--block-size", "100")[0] == 0
    assert _add(national, hangzhou)[0] == 0
    published = tmp_path / "federation.jwt"
    assert _run("national", "publish", "--dir", str(national), "--out", str(published))[0] == 0

    with _static(published) as url:
        monkeypatch.setenv("CARDSVC_FEDERATION_ROOT", pin)
        monkeypatch.setenv("CARDSVC_FEDERATION_URL", f"http://127.0.0.1:{free_port()}/x,{url}")
        for city in (yiwu, hangzhou):
            monkeypatch.setenv("CARDSVC_ISSUER", city.code)
            exit_code, output = _run("federation", "sync", "--data-dir", str(city.data_dir))
            assert exit_code == 0 and "version 1 held" in output, output
            assert f"{city.code} is active" in output
        exit_code, output = _run("federation", "show", "--data-dir", str(hangzhou.data_dir))
        assert exit_code == 0, output
        assert re.search(r"CN-HZ\s+active\s+seq 101-200\s+keys h1:active h2:next", output)
        assert re.search(r"CN-YW\s+active\s+seq 1-100\s+keys k1:active k2:next", output)

        # The same prefix in both cities: never the same code.
        assert _sequence(_enrol(yiwu, "LATER", "L0000001")) == 4
        hangzhou_codes = [_enrol(hangzhou, f"HZ{in_letters(n)}", f"H{n:07d}") for n in range(2)]
        assert [_sequence(code) for code in hangzhou_codes] == [101, 102]

        # A wrong pin: refused, exit 1, the held list unchanged.
        monkeypatch.setenv("CARDSVC_FEDERATION_ROOT", "A" * 43)
        exit_code, output = _run("federation", "sync", "--data-dir", str(hangzhou.data_dir))
        assert exit_code == 1 and "error: FEDERATION_ROOT_MISMATCH:" in output, output
        monkeypatch.setenv("CARDSVC_FEDERATION_ROOT", pin)
        monkeypatch.delenv("CARDSVC_FEDERATION_URL")
        exit_code, output = _run("federation", "sync", "--data-dir", str(hangzhou.data_dir))
        assert exit_code == 2 and "error: FEDERATION_NOT_CONFIGURED:" in output, output


def test_a_city_without_a_block_allocates_nothing(
    tmp_path: Path, federation_env: tuple[City, City, Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    yiwu, hangzhou, national, pin = federation_env
    assert _add(national, yiwu, "--block-size", "2")[0] == 0
    published = tmp_path / "federation.jwt"
    assert _run("national", "publish", "--dir", str(national), "--out", str(published))[0] == 0
    with _static(published) as url:
        monkeypatch.setenv("CARDSVC_FEDERATION_ROOT", pin)
        for city in (yiwu, hangzhou):
            monkeypatch.setenv("CARDSVC_ISSUER", city.code)
            exit_code, output = _run("federation", "sync", "--data-dir", str(city.data_dir),
                                     "--url", url)
            assert exit_code == 0, output
        assert "CN-HZ is not on the list" in output
        assert [_sequence(_enrol(yiwu, f"YW{in_letters(n)}", f"Y{n:07d}"))
                for n in range(2)] == [1, 2]
        for city in (yiwu, hangzhou):
            with pytest.raises(DomainError) as refused:
                _enrol(city, "ONEMORE", f"Z{city.code[3:]}00001")
            assert refused.value.code == "FOREIGNER_CODE_EXHAUSTED"
            assert refused.value.extra["prefix"] == "93356619840506"  # named in the answer
        # A further block, published and synced: Yiwu allocates again.
        assert _run("national", "grant-block", "--dir", str(national), "--code", "CN-YW",
                    "--block-size", "10")[0] == 0
        assert _run("national", "publish", "--dir", str(national), "--out",
                    str(published))[0] == 0
        monkeypatch.setenv("CARDSVC_ISSUER", "CN-YW")
        exit_code, output = _run("federation", "sync", "--data-dir", str(yiwu.data_dir),
                                 "--url", url)
        assert exit_code == 0 and "version 2 held" in output, output
        assert _sequence(_enrol(yiwu, "ONEMORE", "ZYW00001")) == 3


@pytest.mark.e2e
def test_serve_refreshes_the_held_list_in_the_background(
    tmp_path: Path, federation_env: tuple[City, City, Path, str],
) -> None:
    yiwu, hangzhou, national, pin = federation_env
    assert _add(national, yiwu)[0] == 0
    assert _add(national, hangzhou)[0] == 0
    published = tmp_path / "federation.jwt"
    assert _run("national", "publish", "--dir", str(national), "--out", str(published))[0] == 0
    with _static(published) as url:
        env = clean_env(CARDSVC_ISSUER="CN-HZ", CARDSVC_KID_PREFIX="h",
                        CARDSVC_FEDERATION_ROOT=pin, CARDSVC_FEDERATION_URL=url,
                        CARDSVC_FEDERATION_REFRESH_SECONDS="10",
                        CARDSVC_KEY_PASSPHRASE=(hangzhou.data_dir / "key-passphrase"
                                                ).read_text().strip())
        # Start-up does not wait for an unreachable publication.
        dead = CardsvcServer(yiwu.data_dir, clean_env(
            CARDSVC_FEDERATION_ROOT=pin,
            CARDSVC_FEDERATION_URL=f"http://127.0.0.1:{free_port()}/federation.jwt",
            CARDSVC_KEY_PASSPHRASE=(yiwu.data_dir / "key-passphrase").read_text().strip()))
        server = CardsvcServer(hangzhou.data_dir, env)
        try:
            dead.start()
            assert httpx.get(dead.url + "/v1/federation-list").json()["code"] == \
                "FEDERATION_NOT_CONFIGURED"
            server.start()
            assert _wait_for_version(server.url, 1) == published.read_text().strip()
            assert _run("national", "suspend-issuer", "--dir", str(national),
                        "--code", "CN-YW")[0] == 0
            assert _run("national", "publish", "--dir", str(national), "--out",
                        str(published))[0] == 0
            assert _wait_for_version(server.url, 2, seconds=30) == published.read_text().strip()
            # The publication goes away: the held copy stays served.
            published.unlink()
            time.sleep(1)
            assert _version(httpx.get(server.url + "/v1/federation-list").text) == 2
        finally:
            server.stop()
            dead.stop()


def _wait_for_version(url: str, version: int, *, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while True:
        answer = httpx.get(url + "/v1/federation-list")
        if answer.status_code == 200 and _version(answer.text) == version:
            assert answer.headers["content-type"].startswith("application/jwt")
            return answer.text
        assert time.monotonic() < deadline, f"no federation list v{version}: {answer.text}"
        time.sleep(0.2)
