"""The authority's story over real HTTP with a real uvicorn process: enrol, issue, provision
(the test plays the wallet with the keys library), verify offline after a sync, revoke,
suspend and reinstate, passport change, old-passport lookup."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cardsvc"))

from cardsvc_kit import b64, cli, portrait_bytes, provision_request, server_env
from kit.postgres import pg_create, pg_drop, pg_url, unique_name
from kit.processes import CardsvcServer

from keys import Ed25519Signer, sign_presentation
from verifier import POLICIES, MemoryReplayCache, verify_presentation
from verifier.cache import VerifierCache
from verifier.sync import sync_cache

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    name = unique_name("cardsvc_e2e")
    pg_create(name)
    try:
        yield pg_url(name)
    finally:
        pg_drop(name)


class Verifier:
    """A counter's verifier: syncs from the authority, then checks with no network."""

    def __init__(self, cache_dir: Path, server: str, root: str) -> None:
        self.cache = VerifierCache(cache_dir)
        self.server, self.root = server, root

    def sync(self) -> None:
        sync_cache(self.cache, server=self.server, root_fingerprint=self.root,
                   now=int(time.time()))

    def check(self, credential: str, device: Ed25519Signer, purpose: str, service: str) -> str:
        now = int(time.time())
        text = sign_presentation(credential, device, proof_time=now, purpose=purpose)
        result = verify_presentation(text, state=self.cache.load().state,
                                     policy=POLICIES[service], now=now,
                                     replay_cache=MemoryReplayCache())
        return result.code.value


def _token(output: str, label: str) -> str:
    found = re.search(rf"{label}:\s+(\S+)", output)
    assert found is not None, output
    return found.group(1)


def test_authority_story(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "authority"
    env = server_env(database_url)
    init = cli(data_dir, env, "init").stdout
    root, admin = _token(init, "root fingerprint"), _token(init, "admin token")
    server = CardsvcServer(data_dir, env).start()
    try:
        registrar = _officer(server.url, admin, "Chen Registrar", "registrar")
        supervisor = _officer(server.url, admin, "Zhou Supervisor", "supervisor")
        _story(server.url, root, registrar, supervisor, tmp_path / "verifier")
    finally:
        server.stop()
    assert "audit chain OK" in cli(data_dir, env, "audit", "verify").stdout


def _officer(url: str, admin: str, name: str, role: str) -> str:
    created = httpx.post(url + "/v1/officers", json={"name": name, "roles": [role]},
                         headers={"Authorization": f"Bearer {admin}"}, timeout=10)
    assert created.status_code == 201, created.text
    return str(created.json()["token"])


def _story(url: str, root: str, registrar: str, supervisor: str, cache_dir: Path) -> None:
    as_registrar = httpx.Client(base_url=url, timeout=10,
                                headers={"Authorization": f"Bearer {registrar}"})
    as_supervisor = httpx.Client(base_url=url, timeout=10,
                                 headers={"Authorization": f"Bearer {supervisor}"})
    wallet = httpx.Client(base_url=url, timeout=10)
    verifier = Verifier(cache_dir, url, root)

    # Enrol, issue, provision.
    enrolled = as_registrar.post("/v1/persons", json={
        "surname": "OKONKWO", "given_names": "Chiamaka Adaeze", "nationality": "NGA",
        "birth_date": "1988-11-23", "sex": "F", "portrait": b64(portrait_bytes("JPEG")),
        "passport": {"number": "A07654321", "country": "NGA", "expires": "2029-08-01"}})
    assert enrolled.status_code == 201, enrolled.text
    code = enrolled.json()["foreigner_code"]
    assert code.startswith("933566" + "19881123")
    issued = as_registrar.post("/v1/cards", json={
        "foreigner_code": code, "valid_until": "2030-12-31",
        "entitlements": ["healthcare", "education", "payment", "public_transport"]})
    assert issued.status_code == 201, issued.text
    phone = Ed25519Signer.generate(kid="device")
    bundle: dict[str, Any] = wallet.post(
        "/v1/provision", json=provision_request(issued.json()["provisioning_code"], phone)
    ).json()
    card = bundle["card_number"]
    assert bundle["portrait"] is not None

    # Offline verification after a sync.
    verifier.sync()
    assert verifier.check(bundle["credentials"]["id"], phone, "id", "counter") == "OK"
    assert verifier.check(bundle["credentials"]["svc"], phone, "svc", "hospital") == "OK"
    assert verifier.check(bundle["credentials"]["pay"], phone, "pay", "payment") == "OK"

    # Suspend and reinstate.
    assert as_supervisor.post(f"/v1/cards/{card}/suspend",
                              json={"reason": "reported lost"}).status_code == 200
    verifier.sync()
    assert verifier.check(bundle["credentials"]["id"], phone, "id", "counter") == "SUSPENDED"
    assert as_supervisor.post(f"/v1/cards/{card}/reinstate",
                              json={"reason": "found"}).status_code == 200
    verifier.sync()
    assert verifier.check(bundle["credentials"]["id"], phone, "id", "counter") == "OK"

    # A passport change keeps the code; the old passport still finds the person.
    changed = as_registrar.post(f"/v1/persons/{code}/passports", json={
        "number": "B11223344", "country": "NGA", "expires": "2034-08-01"})
    assert changed.status_code == 200 and changed.json()["foreigner_code"] == code
    for number in ("A07654321", "B11223344"):
        found = as_registrar.get("/v1/persons", params={"passport": number, "country": "NGA"})
        assert found.status_code == 200 and found.json()["foreigner_code"] == code

    # Revoke, sync, verify: REVOKED.
    assert as_supervisor.post(f"/v1/cards/{card}/revoke",
                              json={"reason": "left China"}).status_code == 200
    verifier.sync()
    assert verifier.check(bundle["credentials"]["id"], phone, "id", "counter") == "REVOKED"
    assert verifier.check(bundle["credentials"]["pay"], phone, "pay", "payment") == "REVOKED"

    # The registrar may not revoke; nobody without a token may enrol.
    assert as_registrar.post(f"/v1/cards/{card}/revoke", json={}).status_code == 403
    assert wallet.post("/v1/persons", json={}).status_code == 401
    for client in (as_registrar, as_supervisor, wallet):
        client.close()
