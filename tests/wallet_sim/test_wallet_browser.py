"""The wallet page in real headless Chromium (Debian's, through Playwright).

Open the page, take a screenshot, decode the QR from the screenshot with zxing-cpp and
check it with the verifier library: OK at the proof time, HOLDER_PROOF_STALE later.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.net import serving
from PIL import Image
from playwright.sync_api import Browser, sync_playwright
from wallet_testkit import assert_fresh_then_stale, decode_qr, verify

from schemas import Purpose
from schemas.codes import ResultCode
from support import NOW
from wallet_sim import Card, Wallet
from wallet_sim.web import create_app

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian chromium is required at {CHROMIUM} (make browser)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page_url(provisioned: tuple[Wallet, Card]) -> Iterator[str]:
    wallet, _ = provisioned
    # The page's clock is an input: every QR it draws carries proof time NOW.
    with serving(create_app(wallet, clock=lambda: NOW)) as url:
        yield url


def screenshot(browser: Browser, url: str, out: Path, *, scale: float = 2) -> Image.Image:
    context = browser.new_context(viewport=PHONE, device_scale_factor=scale,
                                  locale="en-US")
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function(
            "() => { const q = document.getElementById('qr');"
            " return q && q.complete && q.naturalWidth > 0; }")
        page.screenshot(path=str(out), full_page=True)
        countdown = page.text_content("#countdown") or ""
        assert any(ch.isdigit() for ch in countdown)  # the JS countdown runs
    finally:
        context.close()
    return Image.open(out)


@pytest.mark.parametrize("purpose", list(Purpose))
def test_screenshot_verifies_then_goes_stale(browser: Browser, page_url: str,
                                             output_dir: Path, purpose: Purpose) -> None:
    shot = screenshot(browser, f"{page_url}/?purpose={purpose.value}",
                      output_dir / f"wallet-page-{purpose.value}.png")
    (text,) = decode_qr(shot)
    # OK at the proof time; the same screenshot checked 61 s later is stale.
    assert_fresh_then_stale(text, purpose, proof_time=NOW)


@pytest.mark.parametrize("lang", ["zh", "ar", "ru"])
def test_other_languages_still_scan(browser: Browser, page_url: str, output_dir: Path,
                                    lang: str) -> None:
    shot = screenshot(browser, f"{page_url}/?purpose=id&lang={lang}",
                      output_dir / f"wallet-page-id-{lang}.png", scale=1)
    (text,) = decode_qr(shot)
    assert verify(text, Purpose.ID, now=NOW).code is ResultCode.OK


def test_page_renews_the_code_every_30_seconds(browser: Browser, page_url: str) -> None:
    context = browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        page.clock.install()  # the page's timers run on a clock the test moves
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{page_url}/?purpose=pay")
        page.wait_for_function("() => document.getElementById('qr').naturalWidth > 0")
        first = [url for url in requested if "/qr/" in url]
        page.clock.run_for(10_000)
        # The installed clock also flows with real time, so a slow page load can take a
        # second or two off: 20 s left after 10 s, give or take that.
        left = int("".join(c for c in page.text_content("#countdown") or "" if c.isdigit()))
        assert 18 <= left <= 20
        page.clock.run_for(21_000)
        page.wait_for_function("() => document.getElementById('qr').src.includes('?t=')")
        page.wait_for_function("() => document.getElementById('qr').naturalWidth > 0")
        renewed = [url for url in requested if "/qr/" in url]
        assert len(first) == 1 and len(renewed) == 2 and "?t=" in renewed[-1]
    finally:
        context.close()
