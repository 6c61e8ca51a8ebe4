"""The counter story with real processes (docs/DESIGN.md sections 6 to 8).

cardsvc serves; a registrar enrols a foreigner and issues a card with healthcare but
no education; the phone (wallet-sim) is provisioned; a hospital counter and a school
counter run ``verifier sync``. Then the authority goes away and the counters check the
wallet's PNG offline: the hospital accepts, the school refuses (ENTITLEMENT_MISSING),
the same picture at the hospital again is REPLAYED. The authority comes back, the card
is revoked; a status list or trust list changed by one byte on the way (a tampering
proxy) is refused by sync and the old cache is kept; a clean sync brings the
revocation and the hospital answers REVOKED.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from e2e_kit import PIN, Authority
from fastapi import FastAPI, Request, Response
from kit.net import free_port
from kit.processes import clean_env, run_cli
from PIL import Image

pytestmark = pytest.mark.e2e

PASSPHRASE = "counter-story-passphrase"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authority]:
    data_dir = tmp_path_factory.mktemp("authority") / "data"
    authority = Authority.init(data_dir, passphrase=PASSPHRASE)
    authority.start()
    try:
        yield authority
    finally:
        authority.stop()


def _portrait() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (90, 120), (190, 160, 130)).save(out, format="JPEG", quality=85)
    return out.getvalue()


def _issue_card(authority: Authority) -> tuple[str, str]:
    person = httpx.post(authority.url + "/v1/persons", headers=authority.admin, json={
        "surname": "OKONKWO", "given_names": "CHIDI EMEKA", "nationality": "NGA",
        "birth_date": "1988-03-14", "sex": "M", "confirm_new": True,
        "passport": {"number": "A09876543", "country": "NGA", "expires": "2032-01-31"},
        "portrait": base64.b64encode(_portrait()).decode()})
    assert person.status_code == 201, person.text
    card = httpx.post(authority.url + "/v1/cards", headers=authority.admin, json={
        "foreigner_code": person.json()["foreigner_code"],
        "entitlements": ["healthcare", "social_insurance", "payment"],  # no education
        "valid_until": "2030-12-31"})
    assert card.status_code == 201, card.text
    return card.json()["card_number"], card.json()["provisioning_code"]


def _verifier(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("verifier", "--cache", str(cache), *args)


def _check(cache: Path, service: str, png: Path) -> tuple[int, dict[str, object]]:
    run = _verifier(cache, "check", "--as", service, "--image", str(png), "--json")
    assert run.returncode in (0, 1), run.stdout + run.stderr
    return run.returncode, json.loads(run.stdout)


def _show_png(wallet: Path, out: Path) -> Path:
    shown = run_cli("wallet-sim", "--wallet", str(wallet), "show", "--purpose", "svc",
                 "--png", str(out), env=clean_env(FMC_WALLET_PIN=PIN))
    assert shown.returncode == 0, shown.stderr
    return out


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name not in (".sync.lock",) and "replay" not in p.name}


@contextmanager
def _tampering_proxy(upstream: str, path: str) -> Iterator[str]:
    """Forwards to ``upstream``; changes one byte of the signed JWT served at ``path``."""
    app = FastAPI()

    @app.get("/{rest:path}")
    def forward(rest: str, request: Request) -> Response:
        answer = httpx.get(f"{upstream}/{rest}")  # unconditional: always a full body
        body = answer.content
        if "/" + rest == path:
            header, payload, signature = body.split(b".")
            position = len(payload) // 2
            flipped = b"A" if payload[position:position + 1] != b"A" else b"B"
            body = b".".join((header, payload[:position] + flipped + payload[position + 1:],
                              signature))
        return Response(body, status_code=answer.status_code,
                        media_type=answer.headers.get("content-type"))

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "proxy did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_counter_story(authority: Authority, tmp_path: Path) -> None:
    card_number, code = _issue_card(authority)
    wallet = tmp_path / "phone.wallet"
    provisioned = run_cli("wallet-sim", "--wallet", str(wallet), "provision",
                       "--server", authority.url, "--code", code, env=clean_env(FMC_WALLET_PIN=PIN))
    assert provisioned.returncode == 0, provisioned.stderr

    hospital, school = tmp_path / "hospital-cache", tmp_path / "school-cache"
    for cache in (hospital, school):
        synced = _verifier(cache, "sync", "--server", authority.url,
                           "--root", authority.root_fingerprint)
        assert synced.returncode == 0, synced.stdout + synced.stderr
    unchanged = _verifier(hospital, "sync", "--json")
    assert unchanged.returncode == 0 and json.loads(unchanged.stdout)["bytes_received"] == 0

    # The network is gone: the authority stops; the counters work from their caches.
    png = _show_png(wallet, tmp_path / "svc.png")
    authority.stop()
    with pytest.raises(httpx.HTTPError):
        httpx.get(authority.url + "/v1/health", timeout=1)

    exit_code, accepted = _check(hospital, "hospital", png)
    assert (exit_code, accepted["code"]) == (0, "OK")
    holder = accepted["holder"]
    assert isinstance(holder, dict) and holder["surname"] == "OKONKWO"
    assert accepted["card"] == card_number and accepted["entitlement_asked"] == "healthcare"

    exit_code, refused = _check(school, "school", png)
    assert (exit_code, refused["code"]) == (1, "ENTITLEMENT_MISSING")

    exit_code, replayed = _check(hospital, "hospital", png)
    assert (exit_code, replayed["code"]) == (1, "REPLAYED")

    human = _verifier(hospital, "check", "--as", "hospital", "--image", str(png))
    assert human.returncode == 1 and "REFUSED" in human.stdout and "拒绝" in human.stdout

    offline = _verifier(hospital, "sync")
    assert offline.returncode == 1 and "NETWORK_UNAVAILABLE" in offline.stdout + offline.stderr

    # Revocation reaches the counter, but only through lists that verify.
    authority.start()
    revoked = httpx.post(f"{authority.url}/v1/cards/{card_number}/revoke",
                         headers=authority.admin, json={"reason": "reported stolen"})
    assert revoked.status_code == 200, revoked.text
    status_path = "/v1/status-lists/" + httpx.get(
        authority.url + "/v1/status-lists").json()["status_lists"][0]["id"]
    before = _files(hospital)
    for tampered_path in (status_path, "/v1/trust-list"):
        with _tampering_proxy(authority.url, tampered_path) as proxy:
            forged = _verifier(hospital, "sync", "--server", proxy, "--json")
        assert forged.returncode == 1, forged.stdout + forged.stderr
        assert json.loads(forged.stdout)["code"] == "BAD_SIGNATURE"
        assert _files(hospital) == before  # the old cache is kept, byte for byte
    exit_code, still_old = _check(hospital, "hospital", _show_png(wallet, tmp_path / "a.png"))
    assert (exit_code, still_old["code"]) == (0, "OK")  # the kept cache predates the revocation

    resynced = _verifier(hospital, "sync")  # the remembered server, not the proxy
    assert resynced.returncode == 0, resynced.stdout + resynced.stderr
    authority.stop()
    exit_code, answer = _check(hospital, "hospital", _show_png(wallet, tmp_path / "b.png"))
    assert (exit_code, answer["code"]) == (1, "REVOKED")
    assert answer["holder"] is None
