"""The counter page's HTTP side (verifier serve): page, assets, check, decode, portraits,
and every bad request answered with a code (never a 500)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from test_sync_authority import FakeAuthority, running, unused_url

from schemas import STATUS_REVOKED, Purpose, StatusRef, b64url_encode
from schemas.credential import portrait_digest
from schemas.qr import presentation_qr
from support import NOW, ROOT_FINGERPRINT, World, present
from verifier.cache import CacheContents, CachedList, VerifierCache
from verifier.checkpoint import Checkpoint
from verifier.portraits import PortraitFetcher
from verifier.sync import sync_cache
from verifier.web import create_app

REVOKED_INDEX = 777


def _portrait() -> bytes:
    """A small, deterministic JPEG head-and-shoulders drawing."""
    image = Image.new("RGB", (240, 300), (214, 226, 240))
    draw = ImageDraw.Draw(image)
    draw.ellipse((30, 190, 210, 380), fill=(52, 73, 110))
    draw.ellipse((70, 60, 170, 180), fill=(141, 98, 72))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


PORTRAIT = _portrait()


def store_world(directory: Path, world: World, *, synced_at: int = NOW) -> VerifierCache:
    cache = VerifierCache(directory)
    cache.store(CacheContents(
        root_fingerprint=ROOT_FINGERPRINT, server=None, synced_at=synced_at,
        trust_list=CachedList(world.trust_list_jwt()),
        status_lists={"1": CachedList(world.status_list_jwt())},
    ))
    return cache


def qr_png(text: str, box_size: int = 4) -> bytes:
    out = io.BytesIO()
    presentation_qr(text, box_size=box_size).make_image().save(out)
    return out.getvalue()


@pytest.fixture
def cache(tmp_path: Path) -> VerifierCache:
    world = World()
    world.statuses.set(REVOKED_INDEX, STATUS_REVOKED)
    cache = store_world(tmp_path / "cache", world)
    cache.add_portrait(PORTRAIT)
    return cache


@pytest.fixture
def client(cache: VerifierCache) -> TestClient:
    return TestClient(create_app(Checkpoint(cache), clock=lambda: NOW))


def test_the_page_serves_its_own_assets_only(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "外籍商友卡核验" in html and 'value="hospital"' in html
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith("/static/"), url
        assert client.get(url).status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    script = client.get("/static/counter.js").text
    assert "http://" not in script and "https://" not in script and "innerHTML" not in script


def test_the_service_can_be_preselected(client: TestClient) -> None:
    assert re.search(r'value="school"\s+checked', client.get("/?service=school").text)
    assert re.search(r'value="counter"\s+checked', client.get("/?service=nope").text)


def test_check_an_uploaded_picture(client: TestClient) -> None:
    text = present(Purpose.ID, portrait_digest=portrait_digest(PORTRAIT))
    answer = client.post("/api/check", data={"service": "counter"},
                         files={"image": ("card.png", qr_png(text), "image/png")}).json()
    assert answer["ok"] is True and answer["code"] == "OK"
    assert answer["holder"]["surname"].startswith("ABDULRAHMAN")
    assert answer["reason"]["zh"] and answer["portrait"] == "available"
    portrait = client.get(answer["portrait_url"])
    assert portrait.status_code == 200 and portrait.content == PORTRAIT
    assert portrait.headers["content-type"] == "image/jpeg"


def test_check_text_and_replay(client: TestClient) -> None:
    text = present(Purpose.SVC)
    first = client.post("/api/check", data={"service": "hospital", "text": text}).json()
    second = client.post("/api/check", data={"service": "hospital", "text": text}).json()
    assert (first["code"], second["code"]) == ("OK", "REPLAYED")
    assert first["portrait"] == "not_cached" and first["portrait_url"] is None


def test_the_page_and_the_cli_share_the_replay_store(cache: VerifierCache) -> None:
    text = present(Purpose.SVC)
    Checkpoint(cache).check_text(text, service="hospital", now=NOW)
    client = TestClient(create_app(Checkpoint(cache), clock=lambda: NOW))
    answer = client.post("/api/check", data={"service": "hospital", "text": text}).json()
    assert answer["code"] == "REPLAYED"


def test_refused_answers_carry_the_reason_and_no_personal_data(client: TestClient) -> None:
    text = present(Purpose.SVC, status=StatusRef("1", REVOKED_INDEX))
    answer = client.post("/api/check", data={"service": "hospital", "text": text}).json()
    assert answer["ok"] is False and answer["code"] == "REVOKED"
    assert answer["reason"] == {"en": "The card has been revoked.", "zh": "此卡已被吊销。"}
    assert answer["holder"] is None and answer["portrait_url"] is None


def test_decode_returns_the_text(client: TestClient) -> None:
    text = present(Purpose.PAY)
    decoded = client.post("/api/decode",
                          files={"image": ("frame.jpg", qr_png(text), "image/png")})
    assert decoded.json() == {"ok": True, "text": text}
    blank = io.BytesIO()
    Image.new("L", (320, 240), 200).save(blank, "PNG")
    missing = client.post("/api/decode",
                          files={"image": ("frame.png", blank.getvalue(), "image/png")})
    assert missing.status_code == 422 and missing.json()["code"] == "QR_NOT_FOUND"


def test_status_shows_the_cache_age(cache: VerifierCache) -> None:
    client = TestClient(create_app(Checkpoint(cache), clock=lambda: NOW + 7200))
    status = client.get("/api/status").json()
    assert status["cache_age_seconds"] == 7200 + 60 and status["trust_list_version"] == 1


BAD_REQUESTS = [
    ("/api/check", {"data": {"service": "casino", "text": "FMC1:1"}}, 400, "UNKNOWN_SERVICE"),
    ("/api/check", {"data": {"text": "FMC1:1"}}, 400, "UNKNOWN_SERVICE"),
    ("/api/check", {"data": {"service": "hospital"}}, 400, "BAD_INPUT"),
    ("/api/check", {"data": {"service": "hospital", "text": "   "}}, 400, "BAD_INPUT"),
    ("/api/check", {"data": {"service": "hospital", "text": "FMC1:" + "1" * 9000}}, 413,
     "BAD_INPUT"),
    ("/api/check", {"content": b"not a form", "headers": {"content-type": "multipart/form-data"}},
     400, "BAD_INPUT"),
    ("/api/decode", {"data": {"text": "x"}}, 400, "BAD_INPUT"),
]


@pytest.mark.parametrize(("path", "request_args", "status", "code"), BAD_REQUESTS)
def test_bad_requests_have_codes(client: TestClient, path: str,
                                 request_args: dict[str, object], status: int,
                                 code: str) -> None:
    response = client.post(path, **request_args)  # type: ignore[arg-type]
    assert (response.status_code, response.json()["code"]) == (status, code)


def test_garbage_text_is_a_refusal_not_an_error(client: TestClient) -> None:
    answer = client.post("/api/check", data={"service": "hospital", "text": "hello"}).json()
    assert answer["ok"] is False and answer["code"] in ("MALFORMED", "UNSUPPORTED_VERSION")


def test_a_huge_upload_is_refused_before_reading(client: TestClient) -> None:
    response = client.post("/api/check", content=b"x" * 10,
                           headers={"content-type": "multipart/form-data; boundary=x",
                                    "content-length": str(200 * 1024 * 1024)})
    assert response.status_code == 413 and response.json()["code"] == "IMAGE_TOO_LARGE"


def test_another_site_cannot_drive_the_counter(client: TestClient) -> None:
    response = client.post("/api/check", data={"service": "hospital", "text": "FMC1:1"},
                           headers={"origin": "https://evil.example"})
    assert response.status_code == 403 and response.json()["code"] == "CROSS_ORIGIN"
    same = client.post("/api/check", data={"service": "hospital", "text": "FMC1:1"},
                       headers={"origin": "http://testserver"})
    assert same.status_code == 200


def test_without_a_cache_the_page_says_so(tmp_path: Path) -> None:
    client = TestClient(create_app(Checkpoint(VerifierCache(tmp_path / "none")),
                                   clock=lambda: NOW))
    assert client.get("/").status_code == 200
    status = client.get("/api/status")
    assert status.status_code == 503 and status.json()["code"] == "NO_CACHE"
    check = client.post("/api/check", data={"service": "hospital", "text": present(Purpose.SVC)})
    assert check.status_code == 503 and check.json()["reason"]["zh"]


@pytest.mark.parametrize("name", ["AAAA", "not-base64!", "A" * 200])
def test_unknown_portraits_are_404(client: TestClient, name: str) -> None:
    response = client.get(f"/api/portraits/{name}")
    assert response.status_code == 404 and response.json()["code"] == "NO_PORTRAIT"


def test_a_sync_is_picked_up_without_a_restart(cache: VerifierCache) -> None:
    client = TestClient(create_app(Checkpoint(cache), clock=lambda: NOW))
    text = present(Purpose.SVC, status=StatusRef("1", 4242), proof_time=NOW - 1)
    assert client.post("/api/check", data={"service": "hospital", "text": text}).json()["ok"]
    world = World()
    world.statuses.set(4242, STATUS_REVOKED)
    store_world(cache.directory, world, synced_at=NOW + 1)
    again = present(Purpose.SVC, status=StatusRef("1", 4242))
    answer = client.post("/api/check", data={"service": "hospital", "text": again}).json()
    assert answer["code"] == "REVOKED"


# -- portraits fetched online (docs/DESIGN.md section 5) ---------------------------------------

def _synced_with_portraits(tmp_path: Path, authority: FakeAuthority) -> VerifierCache:
    cache = VerifierCache(tmp_path / "online")
    sync_cache(cache, server=authority.url, root_fingerprint=ROOT_FINGERPRINT, now=NOW)
    return cache


def _answer(checkpoint: Checkpoint, digest: bytes, proof_time: int) -> dict[str, Any]:
    client = TestClient(create_app(checkpoint, clock=lambda: NOW))
    text = present(Purpose.ID, portrait_digest=digest, proof_time=proof_time)
    answer: dict[str, Any] = client.post("/api/check",
                                         data={"service": "counter", "text": text}).json()
    return answer


def test_a_portrait_is_fetched_checked_and_kept(tmp_path: Path) -> None:
    digest = portrait_digest(PORTRAIT)
    authority = FakeAuthority(portraits={b64url_encode(digest): PORTRAIT})
    with running(authority):
        cache = _synced_with_portraits(tmp_path, authority)
        fetcher = PortraitFetcher(authority.url, authority.portrait_token)
        answer = _answer(Checkpoint(cache, portrait_fetcher=fetcher), digest, NOW)
    assert answer["portrait"] == "available" and answer["portrait_url"]
    assert cache.portrait(digest) == PORTRAIT  # kept for when the network is gone


@pytest.mark.parametrize("trouble", ["wrong-image", "wrong-token", "not-there"])
def test_a_portrait_that_does_not_match_is_not_shown(tmp_path: Path, trouble: str) -> None:
    digest = portrait_digest(PORTRAIT)
    served = {"wrong-image": {b64url_encode(digest): PORTRAIT + b"x"}}.get(trouble, {})
    if trouble == "wrong-token":
        served = {b64url_encode(digest): PORTRAIT}
    authority = FakeAuthority(portraits=served)
    with running(authority):
        cache = _synced_with_portraits(tmp_path, authority)
        token = "stolen" if trouble == "wrong-token" else authority.portrait_token
        fetcher = PortraitFetcher(authority.url, token)
        answer = _answer(Checkpoint(cache, portrait_fetcher=fetcher), digest, NOW)
    assert answer["ok"] and answer["portrait"] == "not_cached"
    assert answer["portrait_url"] is None and cache.portrait(digest) is None


def test_offline_the_fetcher_rests_instead_of_waiting(tmp_path: Path) -> None:
    with running(FakeAuthority()) as authority:
        cache = _synced_with_portraits(tmp_path, authority)
    calls: list[int] = []

    def clock() -> float:
        calls.append(1)
        return 1000.0

    fetcher = PortraitFetcher(unused_url(), "verifier-token", monotonic=clock)
    checkpoint = Checkpoint(cache, portrait_fetcher=fetcher)
    digest = portrait_digest(PORTRAIT)
    assert _answer(checkpoint, digest, NOW)["portrait"] == "not_cached"
    assert _answer(checkpoint, digest, NOW - 1)["portrait"] == "not_cached"
    assert fetcher.fetch(digest) is None
    assert len(calls) == 4  # the first failure set a rest; later calls only read the clock


def test_the_cli_fetches_portraits_with_a_token_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from verifier.cli import app

    digest = portrait_digest(PORTRAIT)
    authority = FakeAuthority(portraits={b64url_encode(digest): PORTRAIT})
    token_file = tmp_path / "token"
    token_file.write_text(authority.portrait_token + "\n")
    runner = CliRunner()
    text = present(Purpose.ID, portrait_digest=digest)
    with running(authority):
        cache = _synced_with_portraits(tmp_path, authority)
        result = runner.invoke(app, ["--cache", str(cache.directory), "check", "--as", "counter",
                                     "--json", "--at", str(NOW), "--text", text,
                                     "--portrait-token-file", str(token_file)])
    assert result.exit_code == 0 and '"portrait": "available"' in result.output
    assert authority.portrait_token not in result.output
    missing = runner.invoke(app, ["--cache", str(cache.directory), "check", "--as", "counter",
                                  "--text", text, "--portrait-token-file",
                                  str(tmp_path / "none")])
    assert missing.exit_code == 2 and "PORTRAIT_TOKEN" in missing.output
