"""The counter page in real headless Chromium shows, large, a portrait opened offline from
the sealed portrait bundle (P15) for the code just presented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.net import serving
from playwright.sync_api import Page, expect, sync_playwright
from test_counter import PORTRAIT, qr_png
from test_counter_browser import CHROMIUM_ARGS, OUTPUT
from test_portrait_bundle import BundleAuthority, Holder, holder, sync
from test_sync_authority import running

from cardsvc.services.portrait_bundle import face_check_rendition
from support import NOW, ROOT_FINGERPRINT
from verifier.cache import VerifierCache
from verifier.checkpoint import Checkpoint
from verifier.sync import sync_cache
from verifier.web import create_app

pytestmark = pytest.mark.browser


@pytest.fixture
def counter(tmp_path: Path) -> Iterator[tuple[str, Holder]]:
    with running(BundleAuthority()) as authority:
        cache = VerifierCache(tmp_path / "cache")
        sync_cache(cache, server=authority.url, root_fingerprint=ROOT_FINGERPRINT, now=NOW)
        shown = holder(1, face_check_rendition(PORTRAIT)[0])
        authority.publisher.add(shown, holder(2))
        sync(cache, authority)
    with serving(create_app(Checkpoint(cache), clock=lambda: NOW)) as url:
        yield url, shown


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        browser.close()


def test_the_offline_portrait_is_shown_large(page: Page, counter: tuple[str, Holder],
                                             tmp_path: Path) -> None:
    url, shown = counter
    page.goto(f"{url}/?service=counter")
    picture = tmp_path / "code.png"
    picture.write_bytes(qr_png(shown.code(), box_size=6))
    page.set_input_files("#file-input", str(picture))
    expect(page.locator("#answer")).to_have_attribute("data-state", "accepted")
    portrait = page.locator("#portrait")
    expect(portrait).to_be_visible()
    expect(portrait).to_have_attribute("data-source", "offline")
    expect(page.locator("#no-portrait")).to_be_hidden()
    assert portrait.evaluate("img => img.complete && img.naturalWidth") == 240  # decoded
    assert portrait.evaluate("img => img.getBoundingClientRect().width") >= 300  # large
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "counter-offline-portrait.png"), full_page=True)
