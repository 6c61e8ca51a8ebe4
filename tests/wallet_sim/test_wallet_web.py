"""The phone page (``wallet-sim serve``) in process: content, languages, routes, safety."""

from __future__ import annotations

import base64
import dataclasses
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from wallet_testkit import PIN, FakeAuthority, decode_qr, portrait_png, verify

from schemas import Purpose, b64url_encode
from schemas.codes import ResultCode
from support import DAY, NOW, SALE, World
from verifier import POLICIES, verify_presentation
from wallet_sim import Card, KdfLimits, Wallet, create_wallet, open_wallet, provision
from wallet_sim._i18n import translations
from wallet_sim.web import create_app


def client_for(wallet: Wallet, now: int = NOW) -> TestClient:
    return TestClient(create_app(wallet, clock=lambda: now), base_url="http://127.0.0.1:8765")


def test_page_shows_the_card(provisioned: tuple[Wallet, Card]) -> None:
    wallet, card = provisioned
    page = client_for(wallet).get("/")
    assert page.status_code == 200
    html = page.text
    for shown in ("933566199001010017", "3300012345678901", "CHIDI EMMANUEL OKAFOR",
                  f"/portrait/{card.card_number}", "/static/wallet.js",
                  'data-renew="30"', f"/qr/{card.card_number}/id.png"):
        assert shown in html
    assert 'name="viewport"' in html and "<script>" not in html  # external JS only (CSP)


def test_page_never_shows_the_device_key(provisioned: tuple[Wallet, Card]) -> None:
    wallet, card = provisioned
    client = client_for(wallet)
    served = b"".join(client.get(path).content for path in (
        "/", "/?purpose=pay", "/?purpose=svc&lang=ar", "/static/wallet.js",
        f"/qr/{card.card_number}/pay.png"))
    for secret in (card.device_seed, b64url_encode(card.device_seed).encode(),
                   base64.b64encode(card.device_seed), card.device_seed.hex().encode()):
        assert secret not in served


@pytest.mark.parametrize(
    ("query", "accept", "lang", "direction", "word"),
    [("", None, "en", "ltr", "Foreigner code"),
     ("?lang=zh", None, "zh", "ltr", "外国人识别码"),
     ("?lang=ar", None, "ar", "rtl", "رمز الأجنبي"),
     ("?lang=ru", None, "ru", "ltr", "Код иностранца"),
     ("", "ru-RU,ru;q=0.9,en;q=0.5", "ru", "ltr", "Код иностранца"),
     ("", "fr-FR, ar;q=0.8, zh;q=0.9", "zh", "ltr", "外国人识别码"),
     ("", "ar-EG", "ar", "rtl", "رمز الأجنبي"),
     ("?lang=zh", "ar", "zh", "ltr", "外国人识别码"),
     ("?lang=xx", "de, fr;q=0.5", "en", "ltr", "Foreigner code"),
     ("", "garbage;;q=zz,,", "en", "ltr", "Foreigner code")],
)
def test_languages(provisioned: tuple[Wallet, Card], query: str, accept: str | None,
                   lang: str, direction: str, word: str) -> None:
    wallet, _ = provisioned
    headers = {"Accept-Language": accept} if accept else {}
    html = client_for(wallet).get("/" + query, headers=headers).text
    assert f'<html lang="{lang}" dir="{direction}">' in html
    assert word in html
    assert "<bdi>933566199001010017</bdi>" in html  # codes keep their order in Arabic


@pytest.mark.parametrize("purpose", list(Purpose))
def test_qr_route_verifies(provisioned: tuple[Wallet, Card], purpose: Purpose) -> None:
    wallet, card = provisioned
    response = client_for(wallet).get(f"/qr/{card.card_number}/{purpose.value}.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "no-store"
    (text,) = decode_qr(Image.open(io.BytesIO(response.content)))
    assert verify(text, purpose, now=NOW).code is ResultCode.OK


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [("/qr/3300012345678901/cash.png", 404, "UNKNOWN_PURPOSE"),
     ("/qr/9999999999999999/pay.png", 404, "CARD_NOT_FOUND"),
     ("/portrait/9999999999999999", 404, "NO_PORTRAIT")],
)
def test_bad_routes_give_problem_codes(provisioned: tuple[Wallet, Card], path: str,
                                       status: int, code: str) -> None:
    wallet, _ = provisioned
    response = client_for(wallet).get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


@pytest.mark.parametrize("query", ["?card=9999999999999999", "?purpose=%00%ff",
                                   "?lang=" + "x" * 2000, "?card=" + "<script>" * 3])
def test_odd_queries_never_fail(provisioned: tuple[Wallet, Card], query: str) -> None:
    wallet, _ = provisioned
    response = client_for(wallet).get("/" + query)
    assert response.status_code in (200, 404, 422)
    assert "<script>" not in response.text.replace('<script src="/static/wallet.js" defer>', "")


def test_portrait_is_served_with_its_type(provisioned: tuple[Wallet, Card]) -> None:
    wallet, card = provisioned
    response = client_for(wallet).get(f"/portrait/{card.card_number}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == portrait_png()


def test_no_portrait_says_so(authority: FakeAuthority, wallet_path: Path) -> None:
    wallet = create_wallet(wallet_path, PIN, limits=KdfLimits.minimum())
    wallet.put(provision(authority.url, authority.issue_code(), now=NOW))
    html = client_for(wallet).get("/").text
    assert "No photo on this phone" in html and "/portrait/" not in html


def test_security_headers_and_host_check(provisioned: tuple[Wallet, Card]) -> None:
    wallet, _ = provisioned
    client = client_for(wallet)
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    # DNS rebinding: a page from another origin cannot read the card through its own name.
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200


def test_expired_and_expiring_cards(authority: FakeAuthority, wallet_path: Path) -> None:
    wallet = create_wallet(wallet_path, PIN, limits=KdfLimits.minimum())
    card = provision(authority.url, authority.issue_code(lifetime=10 * DAY), now=NOW)
    wallet.put(card)
    soon = client_for(wallet, NOW + 5 * DAY).get("/").text
    assert 'id="expiring"' in soon and 'id="qr"' in soon
    late = client_for(wallet, NOW + 11 * DAY)
    html = late.get("/").text
    assert 'id="expired"' in html and 'id="qr"' not in html and "wallet-sim refresh" in html
    response = late.get(f"/qr/{card.card_number}/pay.png")
    assert response.status_code == 409 and response.json()["code"] == "CREDENTIALS_EXPIRED"


def test_page_follows_the_file_when_refresh_rewrites_it(
    authority: FakeAuthority, provisioned: tuple[Wallet, Card]
) -> None:
    wallet, _ = provisioned
    client = client_for(wallet)
    assert '<nav class="cards"' not in client.get("/").text  # one card: no card switcher
    other = open_wallet(wallet.path, PIN)  # another process (the CLI) adds a card
    other.put(provision(authority.url, authority.issue_code("3300000000000025"), now=NOW))
    html = client.get("/").text
    assert '<nav class="cards"' in html and "3300000000000025" in html
    assert client.get("/?card=3300000000000025&purpose=pay").status_code == 200


def test_empty_wallet_page(wallet_path: Path) -> None:
    wallet = create_wallet(wallet_path, PIN, limits=KdfLimits.minimum())
    page = client_for(wallet).get("/?lang=zh")
    assert page.status_code == 200 and 'id="no-card"' in page.text


def test_each_pay_display_is_a_fresh_code(provisioned: tuple[Wallet, Card]) -> None:
    """Two sales in one second (one renewal period) get two codes, never one code twice."""
    wallet, card = provisioned
    client = client_for(wallet)
    codes = [decode_qr(Image.open(io.BytesIO(
        client.get(f"/qr/{card.card_number}/pay.png").content)))[0] for _ in range(2)]
    assert codes[0] != codes[1]
    assert [verify(code, Purpose.PAY, now=NOW).code for code in codes] == [ResultCode.OK] * 2


@pytest.mark.parametrize(("change", "state", "code"), [
    ({"revoked_at": NOW - 60}, "revoked", "CARD_REVOKED"),
    ({"suspended": True}, "suspended", "CARD_SUSPENDED"),
])
@pytest.mark.parametrize("lang", ["en", "zh", "ar", "ru"])
def test_revoked_and_suspended_cards_show_a_banner_and_no_code(
    authority: FakeAuthority, wallet_path: Path, change: dict[str, object], state: str,
    code: str, lang: str,
) -> None:
    wallet = create_wallet(wallet_path, PIN, limits=KdfLimits.minimum())
    card = dataclasses.replace(provision(authority.url, authority.issue_code(), now=NOW),
                               **change)  # type: ignore[arg-type]
    wallet.put(card)
    client = client_for(wallet, NOW)
    html = client.get(f"/?lang={lang}").text
    assert f'id="{state}"' in html and 'id="qr"' not in html
    assert translations(lang)[state].split("“")[0] in html
    response = client.get(f"/qr/{card.card_number}/id.png")
    assert response.status_code == 409 and response.json()["code"] == code


def test_the_pay_page_answers_a_till_s_challenge(provisioned: tuple[Wallet, Card]) -> None:
    wallet, card = provisioned
    client = client_for(wallet)
    page = client.get("/", params={"card": card.card_number, "purpose": "pay",
                                   "challenge": SALE.text})
    assert page.status_code == 200 and 'id="sale"' in page.text
    qr = client.get(f"/qr/{card.card_number}/pay.png", params={"challenge": SALE.text})
    assert qr.status_code == 200
    (text,) = decode_qr(Image.open(io.BytesIO(qr.content)))
    assert text.startswith("FMC2:")
    for challenge, code in ((SALE, ResultCode.OK),
                            (dataclasses.replace(SALE, amount_fen=99_999),
                             ResultCode.CHALLENGE_MISMATCH)):
        result = verify_presentation(text, state=World().state(NOW),
                                     policy=POLICIES["payment"], now=NOW, replay_cache=None,
                                     challenge=challenge)
        assert result.code is code


@pytest.mark.parametrize("challenge", ["FMC1:123", "FMCC1:0", "hello"])
def test_the_pay_page_shows_no_code_for_what_is_not_a_challenge(
    provisioned: tuple[Wallet, Card], challenge: str,
) -> None:
    wallet, card = provisioned
    client = client_for(wallet)
    page = client.get("/", params={"card": card.card_number, "purpose": "pay",
                                   "challenge": challenge})
    assert 'id="bad-challenge"' in page.text and "challenge=" not in page.text
    qr = client.get(f"/qr/{card.card_number}/pay.png", params={"challenge": challenge})
    assert (qr.status_code, qr.json()["code"]) == (422, "BAD_CHALLENGE")


def test_the_pay_screen_takes_one_one_use_credential_per_showing(
        provisioned: tuple[Wallet, Card]) -> None:
    """P13.3: the page's 30 s renewals keep the showing's one-use credential; a new
    showing (after a pause) takes the next; none left: PAY_BATCH_EMPTY, no old pay code."""
    import secrets

    from keys import Ed25519Signer, sign_credential
    from schemas.presentation import decode_presentation
    from support import ISSUER_KEY, one_use_credential
    from wallet_sim.card import OneUsePay, read_unverified_credential

    wallet, card = provisioned
    seeds = [secrets.token_bytes(32) for _ in range(2)]
    batch = tuple(OneUsePay(sign_credential(one_use_credential(
        holder_key=Ed25519Signer(seed).public_key, pay_handle=secrets.token_bytes(16)),
        ISSUER_KEY), seed) for seed in seeds)
    wallet.put(dataclasses.replace(card, pay_batch=batch, one_use_pay=True))
    now = {"t": NOW}
    client = TestClient(create_app(wallet, clock=lambda: now["t"]),
                        base_url="http://127.0.0.1:8765")

    def shown_handle() -> bytes | None:
        response = client.get(f"/qr/{card.card_number}/pay.png")
        if response.status_code != 200:
            assert response.json()["code"] == "PAY_BATCH_EMPTY"
            return None
        (text,) = decode_qr(Image.open(io.BytesIO(response.content)))
        assert verify(text, Purpose.PAY, now=now["t"]).code is ResultCode.OK
        return read_unverified_credential(decode_presentation(text).credential_jws).pay_handle

    first = shown_handle()
    now["t"] += 30
    assert shown_handle() == first  # a renewal of the same showing
    assert len(open_wallet(wallet.path, PIN).cards[0].pay_batch) == 1
    now["t"] += 600
    second = shown_handle()
    assert second not in (None, first)
    now["t"] += 600
    assert shown_handle() is None
