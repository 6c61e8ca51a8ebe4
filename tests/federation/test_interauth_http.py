"""Two `cardsvc serve` processes, each with its own database and keys, joined by the
national tool, talk over real HTTP: a registrar in Hangzhou finds a person known in
Yiwu and moves them (same foreigner code; Yiwu's card ends `transferred`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from kit.net import free_port
from kit.processes import CardsvcServer, clean_env
from test_national_cli import PASSPHRASE, _run, _write_trust_list

from cardsvc.db import Database
from cardsvc.federation.state import accept_federation_list
from cardsvc.settings import get_settings

CITY = {"CN-YW": ("k", "Yiwu", "义乌"), "CN-HZ": ("h", "Hangzhou", "杭州")}


@dataclass
class RunningCity:
    code: str
    server: CardsvcServer
    token: str

    def post(self, path: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(self.server.url + path, json=body, timeout=30,
                          headers={"Authorization": f"Bearer {self.token}"})


def _init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str
          ) -> tuple[Path, str, str, Path]:
    monkeypatch.setenv("CARDSVC_ISSUER", code)
    monkeypatch.setenv("CARDSVC_KID_PREFIX", CITY[code][0])
    data_dir = tmp_path / code
    exit_code, output = _run("init", "--data-dir", str(data_dir))
    assert exit_code == 0, output
    fingerprint = re.search(r"root fingerprint:\s+(\S+)", output)
    token = re.search(r"admin token:\s+(\S+)", output)
    assert fingerprint is not None and token is not None
    trust_list = _write_trust_list(data_dir, code, tmp_path / f"{code}.jwt")
    return data_dir, fingerprint.group(1), token.group(1), trust_list


@pytest.fixture
def two_cities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        tuple[RunningCity, RunningCity]]:
    for name in ("CARDSVC_DATABASE_URL", "CARDSVC_KEY_PASSPHRASE", "CARDSVC_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FMC_NATIONAL_PASSPHRASE", PASSPHRASE)
    national = tmp_path / "national"
    exit_code, output = _run("national", "init", "--dir", str(national))
    assert exit_code == 0, output
    found = re.search(r"national root fingerprint:\s+([A-Za-z0-9_-]{43})", output)
    assert found is not None
    pin = found.group(1)
    made = {}
    for code, (_, name_en, name_zh) in CITY.items():
        data_dir, fingerprint, token, trust_list = _init(tmp_path, monkeypatch, code)
        port = free_port()
        exit_code, output = _run(
            "national", "add-issuer", "--dir", str(national), "--code", code,
            "--name-en", name_en, "--name-zh", name_zh, "--trust-list", str(trust_list),
            "--city-root-fingerprint", fingerprint,
            "--status-url", f"http://127.0.0.1:{port}/v1/status-lists",
            "--api-url", f"http://127.0.0.1:{port}")
        assert exit_code == 0, output
        made[code] = (data_dir, token, port)
    out = tmp_path / "federation.jwt"
    exit_code, output = _run("national", "publish", "--dir", str(national), "--out", str(out))
    assert exit_code == 0, output
    jwt = out.read_text().strip()
    running = []
    for code, (data_dir, token, port) in made.items():
        settings = get_settings(data_dir=data_dir, issuer=code)
        database = Database.from_settings(settings)
        try:
            database.transact(lambda session: accept_federation_list(
                session, unverified_jwt=jwt, pinned_root=pin,
                now=int(datetime.now(UTC).timestamp())))
        finally:
            database.dispose()
        env = clean_env(CARDSVC_ISSUER=code, CARDSVC_KID_PREFIX=CITY[code][0],
                        CARDSVC_FEDERATION_ROOT=pin)
        running.append(RunningCity(code, CardsvcServer(data_dir, env, port=port).start(),
                                   token))
    try:
        yield running[0], running[1]
    finally:
        for city in running:
            city.server.stop()


def test_lookup_and_move_between_two_serving_cities(
        two_cities: tuple[RunningCity, RunningCity]) -> None:
    yiwu, hangzhou = two_cities
    passport = {"number": "HTTP12345", "country": "GHA", "expires": "2032-01-01"}
    enrolled = yiwu.post("/v1/persons", {
        "surname": "MENSAH", "given_names": "Kofi", "nationality": "GHA",
        "birth_date": "1980-07-01", "sex": "M", "passport": passport, "confirm_new": True})
    assert enrolled.status_code == 201, enrolled.text
    code = enrolled.json()["foreigner_code"]
    card = yiwu.post("/v1/cards", {"foreigner_code": code, "entitlements": ["payment"],
                                   "valid_until": "2030-12-31"})
    assert card.status_code == 201, card.text

    ping = hangzhou.post("/v1/persons/national-lookup",
                         {"passport": {"number": "HTTP12345", "country": "GHA"}})
    assert ping.status_code == 200, ping.text
    [answer] = ping.json()["cities"]
    assert (answer["city"], answer["status"]) == ("CN-YW", "answered")
    assert answer["matches"][0]["foreigner_code"] == code

    moved = hangzhou.post("/v1/persons/transfers", {"from_city": "CN-YW",
                                                    "foreigner_code": code})
    assert moved.status_code == 200, moved.text + hangzhou.server.log_tail()
    assert moved.json()["state"] == "committed"
    here = httpx.get(f"{hangzhou.server.url}/v1/persons/{code}", timeout=10,
                     headers={"Authorization": f"Bearer {hangzhou.token}"})
    assert here.status_code == 200 and here.json()["foreigner_code"] == code
    there = httpx.get(f"{yiwu.server.url}/v1/persons/{code}", timeout=10,
                      headers={"Authorization": f"Bearer {yiwu.token}"})
    assert [(c["state"], c["state_reason"]) for c in there.json()["cards"]] == [
        ("revoked", "transferred")]
    issued = hangzhou.post("/v1/cards", {"foreigner_code": code, "entitlements": ["payment"],
                                         "valid_until": "2030-12-31"})
    assert issued.status_code == 201, issued.text
