"""The payment story with real processes (docs/DESIGN.md sections 9 and 10).

cardsvc serves; a registrar issues a card with payment, a cashier tops it up, a
supervisor registers two shops' terminals. The phone (wallet-sim) shows pay codes; shop
A charges one online from its text, shop B one from a PNG, each with a receipt checked
offline. Then the authority goes away: both shops take the same pay code (a screenshot
shown twice) and each says ACCEPTED OFFLINE. The authority comes back; A's upload
settles, B's is a double spend: the card is charged once and suspended, the next online
charge is refused SUSPENDED, the account and the settlement report add up.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from e2e_kit import PIN, Authority
from kit.processes import clean_env, run_cli

pytestmark = pytest.mark.e2e

PASSPHRASE = "payment-story-passphrase"


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[Authority]:
    data_dir = tmp_path / "authority"
    authority = Authority.init(data_dir, passphrase=PASSPHRASE)
    authority.start()
    try:
        yield authority
    finally:
        authority.stop()


class Shop:
    def __init__(self, authority: Authority, cache: Path, token: str) -> None:
        self.authority, self.cache, self.token = authority, cache, token

    def verifier(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("verifier", "--cache", str(self.cache), *args,
                    env=clean_env(FMC_TERMINAL_TOKEN=self.token))

    def charge(self, amount: int, *source: str) -> tuple[int, dict[str, Any]]:
        run = self.verifier("terminal", "charge", *source, "--amount", str(amount), "--json")
        assert run.returncode in (0, 1), run.stdout + run.stderr
        return run.returncode, json.loads(run.stdout)

    def upload(self) -> dict[str, Any]:
        run = self.verifier("terminal", "upload", "--json")
        assert run.returncode == 0, run.stdout + run.stderr
        return dict(json.loads(run.stdout))


class Phone:
    def __init__(self, wallet: Path) -> None:
        self.wallet = wallet
        self.last_shown = 0.0

    def show(self, *args: str) -> str:
        # One proof per second: a new pay code needs the next second.
        time.sleep(max(0.0, self.last_shown + 1.05 - time.monotonic()))
        shown = run_cli("wallet-sim", "--wallet", str(self.wallet), "show", "--purpose", "pay",
                     *args, env=clean_env(FMC_WALLET_PIN=PIN))
        self.last_shown = time.monotonic()
        assert shown.returncode == 0, shown.stderr
        return shown.stdout.strip()


def test_the_payment_story(authority: Authority, tmp_path: Path) -> None:
    person = authority.post("/v1/persons", {
        "surname": "MENSAH", "given_names": "AKOSUA", "nationality": "GHA",
        "birth_date": "1990-07-21", "sex": "F", "confirm_new": True,
        "passport": {"number": "G1234567", "country": "GHA", "expires": "2031-06-30"}})
    issued = authority.post("/v1/cards", {"foreigner_code": person["foreigner_code"],
                                          "entitlements": ["payment"],
                                          "valid_until": "2030-12-31",
                                          "offline_limit_fen": 5_000})
    card_number = issued["card_number"]
    authority.post(f"/v1/accounts/{card_number}/topups",
                   {"amount_fen": 10_000, "idempotency_key": "desk-0001"})
    merchant = authority.post("/v1/merchants", {"name": "Futian Market Stall 12"})
    other = authority.post("/v1/merchants", {"name": "Binwang Night Market"})
    shops = []
    for name, owner in (("a", merchant), ("b", other)):
        till = authority.post(f"/v1/merchants/{owner['merchant_id']}/terminals",
                              {"name": f"till {name}", "offline_floor_fen": 2_000})
        shop = Shop(authority, tmp_path / f"shop-{name}", till["token"])
        synced = shop.verifier("sync", "--server", authority.url, "--root",
                               authority.root_fingerprint)
        assert synced.returncode == 0, synced.stderr
        assert shop.verifier("terminal", "setup", "--server", authority.url).returncode == 0
        shops.append(shop)
    shop_a, shop_b = shops

    wallet = tmp_path / "phone.wallet"
    provisioned = run_cli("wallet-sim", "--wallet", str(wallet), "provision", "--server",
                       authority.url, "--code", issued["provisioning_code"],
                       env=clean_env(FMC_WALLET_PIN=PIN))
    assert provisioned.returncode == 0, provisioned.stderr
    phone = Phone(wallet)

    # Online: text at shop A, a picture at shop B; both receipts check out offline.
    # One-use pay codes (P13.3): the till is told no balance; the authority knows it.
    status, answer = shop_a.charge(1_250, "--text", phone.show("--text"))
    assert (status, answer["mode"], answer["receipt"], answer.get("balance_fen")) == (
        0, "online", "RECEIPT_OK", None)
    assert authority.get(f"/v1/accounts/{card_number}")["balance_fen"] == 8_750
    png = tmp_path / "pay.png"
    phone.show("--png", str(png))
    status, answer = shop_b.charge(300, "--image", str(png))
    assert (status, answer["receipt"]) == (0, "RECEIPT_OK")
    assert authority.get(f"/v1/accounts/{card_number}")["balance_fen"] == 8_450

    # The authority goes away; one pay code (a screenshot) is shown at both shops.
    authority.stop()
    screenshot = phone.show("--text")
    for shop in (shop_a, shop_b):  # these tills take unbound codes up to their floor
        status, answer = shop.charge(800, "--text", screenshot, "--unbound-floor", "2000")
        assert (status, answer["mode"], answer["code"]) == (0, "offline", "OK"), answer
    status, answer = shop_a.charge(2_001, "--text", phone.show("--text"))
    assert (status, answer["code"]) == (1, "OFFLINE_FLOOR_EXCEEDED")

    # Back online: A settles, B's copy is a double spend, the card is suspended.
    authority.start()
    settled_a = shop_a.upload()
    assert (settled_a["settled"], settled_a["double_spend"], settled_a["settled_fen"]) == (
        1, 0, 800)
    settled_b = shop_b.upload()
    assert (settled_b["settled"], settled_b["double_spend"]) == (0, 1)
    account = authority.get(f"/v1/accounts/{card_number}")
    assert (account["balance_fen"], account["card_state"]) == (10_000 - 1_250 - 300 - 800,
                                                               "suspended")
    status, answer = shop_a.charge(100, "--text", phone.show("--text"))
    assert (status, answer["mode"], answer["code"]) == (1, "online", "SUSPENDED")

    today = datetime.now(UTC).astimezone(timezone(timedelta(hours=8))).date().isoformat()
    report = authority.get(f"/v1/merchants/{merchant['merchant_id']}/settlement", date=today)
    assert report["charges"]["online"] == {"count": 1, "total_fen": 1_250}
    assert report["charges"]["offline"] == {"count": 1, "total_fen": 800}
    assert report["reconciled"] is True
    report_b = authority.get(f"/v1/merchants/{other['merchant_id']}/settlement", date=today)
    assert report_b["double_spends"] == {"count": 1, "total_fen": 800}
    assert report_b["net_fen"] == report_b["ledger_net_fen"] == 300

    # What the server wrote about all of it: one JSON line per request, and never a
    # token, passport number, provisioning code, pay code or personal data.
    authority.stop()
    logs = sorted(authority.data_dir.parent.glob("serve-*.log"))
    text = "\n".join(path.read_text(errors="replace") for path in logs)
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("logger") == "cardsvc.access"]
    assert len(requests) >= 15 and all(re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
                                       for line in requests)
    secrets = {authority.admin["Authorization"].removeprefix("Bearer "), shop_a.token,
               shop_b.token, issued["provisioning_code"], "G1234567", screenshot,
               person["foreigner_code"], card_number, "MENSAH", "AKOSUA"}
    assert [secret for secret in secrets if secret in text] == []


def test_a_challenge_sale_taken_offline_and_uploaded(authority: Authority,
                                                     tmp_path: Path) -> None:
    """The stronger offline mode: the till shows a challenge QR for 15.00 yuan, the phone
    scans it and answers with a pay code bound to that sale; offline, the till takes it
    for 15.00 (more than an unbound code may take) and for nothing else; the upload
    settles exactly 15.00."""
    person = authority.post("/v1/persons", {
        "surname": "OSEI", "given_names": "KWAME", "nationality": "GHA",
        "birth_date": "1988-02-11", "sex": "M", "confirm_new": True,
        "passport": {"number": "G7654321", "country": "GHA", "expires": "2031-06-30"}})
    issued = authority.post("/v1/cards", {"foreigner_code": person["foreigner_code"],
                                          "entitlements": ["payment"],
                                          "valid_until": "2030-12-31",
                                          "offline_limit_fen": 10_000})  # ol 2,000 (tier / 5)
    card_number = issued["card_number"]
    authority.post(f"/v1/accounts/{card_number}/topups",
                   {"amount_fen": 10_000, "idempotency_key": "desk-0002"})
    merchant = authority.post("/v1/merchants", {"name": "Yiwu Lantern Stall 3"})
    till = authority.post(f"/v1/merchants/{merchant['merchant_id']}/terminals",
                          {"name": "till c", "offline_floor_fen": 2_000})
    shop = Shop(authority, tmp_path / "shop-c", till["token"])
    assert shop.verifier("sync", "--server", authority.url, "--root",
                         authority.root_fingerprint).returncode == 0
    assert shop.verifier("terminal", "setup", "--server", authority.url).returncode == 0
    wallet = tmp_path / "phone.wallet"
    assert run_cli("wallet-sim", "--wallet", str(wallet), "provision", "--server",
                   authority.url, "--code", issued["provisioning_code"],
                   env=clean_env(FMC_WALLET_PIN=PIN)).returncode == 0

    authority.stop()
    picture = tmp_path / "challenge.png"
    shown = shop.verifier("terminal", "challenge", "--amount", "1500", "--png", str(picture),
                          "--json")
    assert shown.returncode == 0, shown.stderr
    challenge = json.loads(shown.stdout)
    assert (challenge["amount_fen"], challenge["terminal_id"]) == (1_500, till["terminal_id"])
    paid = run_cli("wallet-sim", "--wallet", str(wallet), "pay", "--challenge-image",
                   str(picture), "--text", env=clean_env(FMC_WALLET_PIN=PIN))
    assert paid.returncode == 0, paid.stderr
    code = paid.stdout.strip()
    assert code.startswith("FMC2:")
    status, answer = shop.charge(1_800, "--text", code)  # the till asks for more: refused
    assert (status, answer["code"]) == (1, "CHALLENGE_MISMATCH")
    status, answer = shop.charge(1_500, "--text", code)
    assert (status, answer["mode"], answer["code"]) == (0, "offline", "OK"), answer

    authority.start()
    settled = shop.upload()
    assert (settled["settled"], settled["settled_fen"], settled["refused"]) == (1, 1_500, 0)
    account = authority.get(f"/v1/accounts/{card_number}")
    assert account["balance_fen"] == 10_000 - 1_500
