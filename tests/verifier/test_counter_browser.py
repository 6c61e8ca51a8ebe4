"""The counter page in real headless Chromium: upload a QR picture, type a code, and scan
with a (fake) camera; see the big green or red answer. Screenshots go to test-output/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.net import serving
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright
from test_counter import PORTRAIT, REVOKED_INDEX, qr_png, store_world

from schemas import STATUS_REVOKED, Purpose, StatusRef
from schemas.credential import portrait_digest
from schemas.qr import presentation_qr
from support import NOW, World, present
from verifier.checkpoint import Checkpoint
from verifier.web import create_app

pytestmark = pytest.mark.browser

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
CAMERA_TEXT = present(Purpose.SVC, proof_time=NOW - 3)


def _camera_video(path: Path, text: str) -> Path:
    """One Y4M frame (Chromium loops it) of a phone showing the QR, for the fake camera."""
    width, height = 640, 480
    frame = Image.new("L", (width, height), 120)
    code = presentation_qr(text, box_size=5).make_image().get_image().convert("L")
    frame.paste(code, ((width - code.width) // 2, (height - code.height) // 2))
    header = f"YUV4MPEG2 W{width} H{height} F5:1 Ip A1:1 C420jpeg\n".encode()
    chroma = bytes([128]) * ((width // 2) * (height // 2))
    path.write_bytes(header + b"FRAME\n" + frame.tobytes() + chroma + chroma)
    return path


@pytest.fixture(scope="module")
def counter_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    world = World()
    world.statuses.set(REVOKED_INDEX, STATUS_REVOKED)
    cache = store_world(tmp_path_factory.mktemp("counter") / "cache", world)
    cache.add_portrait(PORTRAIT)
    with serving(create_app(Checkpoint(cache), clock=lambda: NOW)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    video = _camera_video(tmp_path_factory.mktemp("camera") / "camera.y4m", CAMERA_TEXT)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-video-capture={video}"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def _shot(page: Page, name: str) -> None:
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / name), full_page=True)


def _upload(page: Page, tmp_path: Path, text: str, name: str) -> None:
    picture = tmp_path / name
    picture.write_bytes(qr_png(text, box_size=6))
    page.set_input_files("#file-input", str(picture))


def test_upload_a_valid_card_shows_green_with_the_holder(page: Page, counter_url: str,
                                                         tmp_path: Path) -> None:
    page.goto(f"{counter_url}/?service=hospital")
    expect(page.locator("#cache-status")).to_contain_text("trust list v1")
    _upload(page, tmp_path, present(Purpose.SVC, portrait_digest=portrait_digest(PORTRAIT),
                                    proof_time=NOW - 1), "card.png")
    answer = page.locator("#answer")
    expect(answer).to_have_attribute("data-state", "accepted")
    expect(page.locator("#verdict-word")).to_contain_text("ACCEPTED")
    expect(page.locator("#verdict-word")).to_contain_text("通过")
    expect(page.locator("#fields")).to_contain_text("ABDULRAHMAN MOHAMMED AL-HASHIMI")
    expect(page.locator("#fields")).to_contain_text("933566199001010017")
    expect(page.locator("#fields")).to_contain_text("Healthcare")
    expect(page.locator("#portrait")).to_be_visible()
    expect(page.locator("#no-portrait")).to_be_hidden()
    assert page.locator("#portrait").evaluate("img => img.complete && img.naturalWidth") == 240
    background = page.locator("#verdict").evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(21, 128, 61)"  # green
    _shot(page, "counter-accepted.png")


def test_upload_a_revoked_card_shows_red_with_the_reason(page: Page, counter_url: str,
                                                         tmp_path: Path) -> None:
    page.goto(f"{counter_url}/?service=hospital")
    revoked = present(Purpose.SVC, status=StatusRef("1", REVOKED_INDEX), proof_time=NOW - 2)
    _upload(page, tmp_path, revoked, "revoked.png")
    expect(page.locator("#answer")).to_have_attribute("data-state", "refused")
    expect(page.locator("#verdict-word")).to_contain_text("REFUSED")
    expect(page.locator("#verdict-word")).to_contain_text("拒绝")
    expect(page.locator("#reason-en")).to_have_text("The card has been revoked.")
    expect(page.locator("#reason-zh")).to_have_text("此卡已被吊销。")
    expect(page.locator("#fields")).to_contain_text("REVOKED")
    expect(page.locator("#fields")).not_to_contain_text("ABDULRAHMAN")
    background = page.locator("#verdict").evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(185, 28, 28)"  # red
    _shot(page, "counter-revoked.png")


def test_a_missing_entitlement_and_a_typed_code(page: Page, counter_url: str) -> None:
    page.goto(f"{counter_url}/?service=school")
    page.fill("#text-input", present(Purpose.SVC, proof_time=NOW - 4))
    page.press("#text-input", "Enter")  # how a USB scanner that types ends its input
    expect(page.locator("#answer")).to_have_attribute("data-state", "refused")
    expect(page.locator("#reason-en")).to_have_text("The holder is not entitled to this service.")
    expect(page.locator("#fields")).to_contain_text("Education")
    _shot(page, "counter-entitlement-missing.png")


def test_the_camera_scans_once_per_code(page: Page, counter_url: str) -> None:
    checks: list[str] = []
    decodes: list[int] = []
    page.on("request", lambda r: checks.append(r.url) if r.url.endswith("/api/check") else None)
    page.on("response",
            lambda r: decodes.append(r.status) if r.url.endswith("/api/decode") else None)
    page.goto(f"{counter_url}/?service=hospital")
    page.click("#camera-button")
    expect(page.locator("#answer")).to_have_attribute("data-state", "accepted", timeout=20_000)
    expect(page.locator("#fields")).to_contain_text("ABDULRAHMAN")
    expect(page.locator("#next-button")).to_be_visible()
    _shot(page, "counter-camera.png")
    # Next visitor: the same code is still in front of the camera; it is not checked again.
    seen = len(decodes)
    page.click("#next-button")
    page.wait_for_function("() => true")
    page.wait_for_event("response", lambda r: r.url.endswith("/api/decode"), timeout=20_000)
    page.wait_for_event("response", lambda r: r.url.endswith("/api/decode"), timeout=20_000)
    assert len(decodes) >= seen + 2 and 200 in decodes
    assert len(checks) == 1
    expect(page.locator("#answer")).to_have_attribute("data-state", "idle")


def test_a_picture_without_a_code_is_a_neutral_scan_again(page: Page, counter_url: str,
                                                          tmp_path: Path) -> None:
    page.goto(f"{counter_url}/?service=hospital")
    blank = tmp_path / "blank.png"
    Image.new("L", (400, 300), 255).save(blank)
    page.set_input_files("#file-input", str(blank))
    expect(page.locator("#answer")).to_have_attribute("data-state", "rescan")
    expect(page.locator("#verdict-word")).to_contain_text("SCAN AGAIN")
    expect(page.locator("#verdict-word")).not_to_contain_text("REFUSED")
    expect(page.locator("#fields")).to_contain_text("QR_NOT_FOUND")  # the CLI's code
    background = page.locator("#verdict").evaluate("e => getComputedStyle(e).backgroundColor")
    assert background not in ("rgb(185, 28, 28)", "rgb(21, 128, 61)")  # neither red nor green
    _shot(page, "counter-scan-again.png")


@pytest.mark.parametrize(("width", "height"), [(390, 844), (768, 1024)], ids=["phone", "tablet"])
def test_the_page_fits_phones_and_tablets(browser: Browser, counter_url: str, tmp_path: Path,
                                          width: int, height: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        page.goto(f"{counter_url}/?service=hospital")
        _upload(page, tmp_path, present(Purpose.SVC, portrait_digest=portrait_digest(PORTRAIT),
                                        proof_time=NOW - (5 if width < 500 else 6)), "card.png")
        expect(page.locator("#answer")).to_have_attribute("data-state", "accepted")
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than a {width} px screen"
        for control in ("#text-form button", "#camera-button", ".file-label"):
            box = page.locator(control).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, control
        _shot(page, f"counter-{width}.png")
    finally:
        context.close()
