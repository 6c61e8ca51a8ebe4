"""The console in real headless Chromium (Debian's) against a real ``cardsvc serve``.

The story is walked through clicks only: sign in, enrol, resolve a duplicate, issue a
card, read the provisioning code from the page, provision a wallet with ``wallet-sim``,
revoke as supervisor, and find the revocation in the audit log as auditor. A screenshot
of every page goes to test-output/console/ for review.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from console_kit import SCREENSHOTS, add_officers, cardsvc_init, portrait, served
from kit.processes import BIN
from playwright.sync_api import Browser, Page, expect, sync_playwright

from cardsvc.settings import get_settings

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A data dir made by ``cardsvc init``, an officer per role, and the server on it."""
    data_dir = tmp_path_factory.mktemp("console-browser") / "data"
    cardsvc_init(data_dir)
    tokens = add_officers(get_settings(data_dir=data_dir), datetime.now(UTC))
    with served(data_dir) as base:
        yield base, tokens


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


class Officer:
    """One officer's browser tab; every page visited can be kept as a screenshot."""

    def __init__(self, browser: Browser, base: str, *, locale: str = "en-US") -> None:
        self.base = base
        self.context = browser.new_context(locale=locale, viewport={"width": 1280,
                                                                    "height": 900})
        self.context.set_default_timeout(15_000)
        self.page: Page = self.context.new_page()
        # CSP violations, failed loads and script errors all show up here.
        self.problems: list[str] = []
        # (A page answered with 403 or 409 on purpose is logged too: not a problem.)
        self.page.on("console", lambda message: self.problems.append(message.text)
                     if message.type == "error" and not message.text.startswith(
                         "Failed to load resource: the server responded with a status of 4")
                     else None)
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))
        self.page.on("requestfailed", lambda request: self.problems.append(request.url))

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def sign_in(self, token: str) -> None:
        self.page.goto(self.base + "/")
        expect(self.page).to_have_url(re.compile(r"/sign-in\?next=%2F$"))
        self.page.fill("#token", token)
        self.page.click("[data-testid=sign-in]")

    def sign_out(self) -> None:
        self.page.click("[data-testid=sign-out]")
        expect(self.page.locator("[data-notice=signed_out]")).to_be_visible()

    def close(self) -> None:
        self.context.close()
        assert self.problems == []


def fill_enrolment(page: Page, *, surname: str, passport: str, photo: bytes) -> None:
    page.fill("#surname", surname)
    page.fill("#given_names", "Ahmed Ali")
    page.select_option("#nationality", "EGY")
    page.fill("#birth_date", "1985-03-02")
    page.check("input[name=sex][value=M]")
    page.fill("#passport_number", passport)
    page.select_option("#passport_country", "EGY")
    # The server runs on the real clock: a passport valid for five more years.
    page.fill("#passport_expires", (date.today() + timedelta(days=5 * 365)).isoformat())
    page.set_input_files("#portrait", files=[{"name": "photo.jpg", "mimeType": "image/jpeg",
                                              "buffer": photo}])


def decode_qr(png: bytes) -> list[str]:
    import zxingcpp
    from PIL import Image

    return [result.text for result in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def test_the_whole_story_through_clicks(
    authority: tuple[str, dict[str, str]], browser: Browser, tmp_path: Path
) -> None:
    base, tokens = authority
    registrar = Officer(browser, base)
    page = registrar.page
    registrar.page.goto(base + "/")
    registrar.shot("01-sign-in")
    registrar.sign_in(tokens["registrar"])
    expect(page.locator("h1")).to_have_text("Find a person")
    # The app's own stylesheet applied (no CDN, nothing from outside).
    expect(page.locator(".topbar")).to_have_css("background-color", "rgb(11, 79, 138)")
    registrar.shot("02-search-empty")

    # Enrol: first an empty form (errors next to the fields), then the real one.
    page.click("[data-nav=enrol]")
    page.click("[data-testid=enrol-submit]")
    expect(page.locator("[data-field-error=surname]")).to_be_visible()
    expect(page.locator("[data-field-error=portrait]")).to_be_visible()
    registrar.shot("03-enrol-errors")
    fill_enrolment(page, surname="MOHAMMED", passport="A1234567",
                   photo=portrait((40, 70, 120)))
    registrar.shot("04-enrol-form")
    page.click("[data-testid=enrol-submit]")
    expect(page.locator("[data-notice=enrolled]")).to_be_visible()
    code = page.locator("[data-testid=foreigner-code]").inner_text().strip()
    assert re.fullmatch(r"9\d{16}[\dX]", code)
    registrar.shot("05-person-enrolled")

    # A new passport under another spelling: the likely duplicate, resolved by a link.
    page.click("[data-nav=enrol]")
    fill_enrolment(page, surname="MUHAMMAD", passport="B7654321",
                   photo=portrait((120, 60, 40)))
    page.click("[data-testid=enrol-submit]")
    candidates = page.locator("[data-testid=candidate]")
    expect(candidates).to_have_count(1)
    expect(candidates.first).to_have_attribute("data-code", code)
    expect(candidates.first.locator("img.portrait")).to_be_visible()
    registrar.shot("06-duplicate-side-by-side")
    candidates.first.locator("[data-testid=link]").click()
    expect(page.locator("[data-notice=linked]")).to_be_visible()
    expect(page.locator("[data-testid=foreigner-code]")).to_have_text(code)
    expect(page.locator("[data-testid=passports] tbody tr")).to_have_count(2)
    registrar.shot("07-person-two-passports")

    # Issue a card; the provisioning code is read off the page, as text and as a QR.
    page.click("[data-testid=issue-card]")
    registrar.shot("08-issue-form")
    page.uncheck("[data-testid=ent-education]")
    page.fill("#offline_limit", "300")
    page.click("[data-testid=issue-submit]")
    provisioning_code = page.locator("[data-testid=provisioning-code]").inner_text().strip()
    assert re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){3}", provisioning_code)
    qr_png = page.locator("[data-testid=provisioning-qr] svg").screenshot()
    assert decode_qr(qr_png) == [provisioning_code]
    card_number = page.locator("[data-testid=provisioning] [data-testid=card-link]").inner_text()
    registrar.shot("09-provisioning-code")

    # The holder's phone redeems the code.
    wallet = tmp_path / "phone.wallet"
    done = subprocess.run(
        [str(BIN / "wallet-sim"), "--wallet", str(wallet), "provision", "--server", base,
         "--code", provisioning_code],
        env={**os.environ, "FMC_WALLET_PIN": "482913"}, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stderr
    assert card_number in done.stderr + done.stdout
    page.click("[data-testid=provisioning] [data-testid=card-link]")
    expect(page.locator("[data-testid=card]")).to_have_attribute("data-state", "active")
    expect(page.locator("[data-testid=card]")).not_to_contain_text("not yet on a phone")
    expect(page.locator("[data-testid=action-revoke]")).to_have_count(0)  # not a registrar's
    registrar.shot("10-card-on-phone")
    registrar.sign_out()
    registrar.shot("11-signed-out")
    registrar.close()

    # The supervisor finds the person by the OLD passport number and revokes the card.
    supervisor = Officer(browser, base)
    page = supervisor.page
    supervisor.sign_in(tokens["supervisor"])
    expect(page.locator("[data-nav=enrol]")).to_have_count(0)
    page.fill("[data-testid=search-box]", "a1234567")
    page.click("[data-testid=search]")
    expect(page.locator("[data-testid=result-link]")).to_have_count(1)
    supervisor.shot("12-search-old-passport")
    page.click("[data-testid=result-link]")
    expect(page.locator("[data-testid=foreigner-code]")).to_have_text(code)
    page.click(f"[data-testid=card-link]:has-text('{card_number}')")
    page.click("[data-testid=action-revoke]")
    page.click("[data-testid=change-review]")  # no reason yet: refused next to the field
    expect(page.locator("[data-field-error=reason]")).to_be_visible()
    page.fill("#reason", "Phone stolen, reported at the counter")
    supervisor.shot("13-revoke-reason")
    page.click("[data-testid=change-review]")
    expect(page.locator("[data-testid=confirm]")).to_be_visible()
    supervisor.shot("14-revoke-confirm")
    page.click("[data-testid=confirm-submit]")
    expect(page.locator("[data-notice=revoked]")).to_be_visible()
    expect(page.locator("[data-testid=card]")).to_have_attribute("data-state", "revoked")
    supervisor.shot("15-card-revoked")
    page.click("[data-nav=keys]")
    expect(page.locator("[data-kid=k1]")).to_have_attribute("data-key-state", "active")
    supervisor.shot("16-issuer-keys")
    page.click("[data-nav=officers]")
    expect(page.locator("[data-testid=officers] tbody tr")).to_have_count(6)
    supervisor.shot("17-officers")
    supervisor.close()

    # The auditor sees the revocation at the top of a verified chain.
    auditor = Officer(browser, base)
    page = auditor.page
    auditor.sign_in(tokens["auditor"])
    expect(page).to_have_url(base + "/audit")
    expect(page.locator("[data-testid=chain]")).to_have_attribute("data-ok", "true")
    first = page.locator("[data-testid=audit-entries] tbody tr").first
    expect(first).to_have_attribute("data-action", "card.revoked")
    expect(first).to_have_attribute("data-subject", card_number)
    expect(first).to_contain_text("Phone stolen")
    auditor.shot("18-audit-log")
    auditor.close()


def test_registrar_cannot_revoke_and_auditor_cannot_enrol(
    authority: tuple[str, dict[str, str]], browser: Browser
) -> None:
    base, tokens = authority
    registrar = Officer(browser, base)
    registrar.sign_in(tokens["registrar"])
    registrar.page.goto(base + "/cards/3312345678901234/revoke")
    error = registrar.page.locator("[data-testid=error]")
    expect(error).to_have_attribute("data-status", "403")
    expect(error).to_have_attribute("data-code", "FORBIDDEN")
    registrar.shot("20-403-registrar-revoke")
    registrar.close()

    auditor = Officer(browser, base)
    auditor.sign_in(tokens["auditor"])
    expect(auditor.page.locator("[data-nav=enrol]")).to_have_count(0)
    auditor.page.goto(base + "/persons/new")
    expect(auditor.page.locator("[data-testid=error]")).to_have_attribute("data-status", "403")
    auditor.shot("21-403-auditor-enrol")
    auditor.close()


def test_language_switch_shows_chinese(
    authority: tuple[str, dict[str, str]], browser: Browser
) -> None:
    base, tokens = authority
    officer = Officer(browser, base)
    officer.sign_in(tokens["registrar"])
    expect(officer.page.locator("h1")).to_have_text("Find a person")
    officer.page.click("[data-lang=zh]")
    expect(officer.page.locator("h1")).to_have_text("查找人员")
    expect(officer.page.locator("html")).to_have_attribute("lang", "zh-CN")
    officer.page.click("[data-nav=enrol]")  # the choice sticks across pages
    expect(officer.page.locator("h1")).to_have_text("登记外国人")
    expect(officer.page.locator("#nationality option[value=EGY]").first).to_have_text("EGY — 埃及")
    officer.shot("30-zh-enrol-form")
    officer.page.goto(base + "/audit")
    expect(officer.page.locator("[data-testid=error] h1")).to_contain_text("无权操作")
    officer.shot("31-zh-403")
    officer.close()

    browser_in_chinese = Officer(browser, base, locale="zh-CN")
    browser_in_chinese.page.goto(base + "/")
    expect(browser_in_chinese.page.locator("h1")).to_have_text("登录")
    browser_in_chinese.shot("32-zh-sign-in")
    browser_in_chinese.close()
