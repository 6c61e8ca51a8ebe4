"""``/docs`` (Swagger UI) is served whole by the app: no CDN, nothing outside (P16.3).

The plain test reads the page and fetches every asset it references from the app; the
browser test renders it in Debian's Chromium with every request off 127.0.0.1 aborted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_kit import Authority, cardsvc_init, served
from playwright.sync_api import Route, expect, sync_playwright

_REFERENCE = re.compile(r"""(?:href|src|url)\s*[:=]\s*['"]([^'"]+)['"]""")
_OUTSIDE = re.compile(r"""['"(]\s*(?:https?:)?//""")
_SCREENSHOT = Path("test-output/api-docs.png")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_docs_and_every_asset_it_references_come_from_the_app(authority: Authority) -> None:
    client = authority.client()
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert not _OUTSIDE.search(page.text), "the page names a URL outside the app"
    references = set(_REFERENCE.findall(page.text))
    assert {"/static/swagger/swagger-ui-bundle.js", "/static/swagger/swagger-ui.css",
            "/static/swagger/favicon-32x32.png", "/openapi.json"} <= references
    assert "'/docs/oauth2-redirect'" in page.text
    for reference in sorted(references):
        assert reference.startswith("/"), reference
        assert client.get(reference).status_code == 200, reference


@pytest.mark.parametrize("path", [
    "/redoc",                                    # ReDoc needs a CDN: not offered
    "/static/swagger/no-such-file.js",
    "/static/swagger/swagger-editor-bundle.js",  # in the package, not used: not served
    "/static/swagger/../../__init__.py",         # no way out of the bundle's folder
])
def test_no_other_docs_page_and_no_other_file(authority: Authority, path: str) -> None:
    answer = authority.client().get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "NOT_FOUND"


@pytest.fixture(scope="module")
def served_authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("api-docs") / "data"
    cardsvc_init(data_dir)
    with served(data_dir) as base:
        yield base


@pytest.mark.browser
@pytest.mark.e2e
def test_docs_render_in_chromium_with_no_network_but_the_app(served_authority: str) -> None:
    outside: list[str] = []

    def only_the_app(route: Route) -> None:
        if route.request.url.startswith(served_authority + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    _SCREENSHOT.parent.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", only_the_app)
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("requestfailed", lambda request: problems.append(request.url))
            page.goto(served_authority + "/docs")
            # (Swagger UI breaks a shown path with zero-width spaces: match data-path.)
            expect(page.locator(".opblock-post [data-path='/v1/persons']")).to_be_visible(
                timeout=15_000)
            expect(page.locator(".opblock-get [data-path='/v1/health']")).to_be_visible()
            page.screenshot(path=str(_SCREENSHOT), full_page=False)
        finally:
            browser.close()
    assert outside == []
    assert problems == []
