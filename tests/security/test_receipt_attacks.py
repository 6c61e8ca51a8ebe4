"""P8.2: a receipt proves this sale. A man-in-the-middle authority forwards the charge to
the real one, then hands the till a receipt for some other sale, re-signed with a
trust-listed key (the worst case: the attacker holds a signing key). The till refuses each
with its own code and does not record the sale as paid (exit 1)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from payments_kit import PayWorld, pay_world
from typer.testing import CliRunner

from cardsvc.payments.receipts import Receipt, sign_receipt
from cardsvc.services.bootstrap import open_keyring
from verifier.cli import app
from verifier.receipts import Sale, receipt_matches_sale
from verifier.terminal import cli as terminal_cli

AT = "2027-01-15T08:00:00Z"  # payments_kit.NOW
runner = CliRunner()
Forge = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayWorld]:
    with pay_world("sqlite", tmp_path_factory.mktemp("receipts")) as served:
        yield served


def _payload(jwt: str) -> dict[str, Any]:
    body = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


def _kid(jwt: str) -> str:
    head = jwt.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def _forged_signature(jwt: str) -> str:
    head, body, signature = jwt.split(".")
    return ".".join((head, body, ("A" if signature[0] != "A" else "B") + signature[1:]))




@pytest.mark.parametrize(("forge", "code", "exit_code"), [
    (lambda claims: claims, "OK", 0),  # the honest path: proves the harness can pass
    (lambda claims: claims | {"tid": claims["tid"] + 1}, "RECEIPT_OTHER_TERMINAL", 1),
    (lambda claims: claims | {"mid": claims["mid"] + 1}, "RECEIPT_OTHER_MERCHANT", 1),
    (lambda claims: claims | {"knd": "refund"}, "RECEIPT_NOT_A_PAYMENT", 1),
    (lambda claims: claims | {"amt": claims["amt"] + 1}, "RECEIPT_OTHER_AMOUNT", 1),
    (lambda claims: claims | {"pc": "A" * 43},
     "RECEIPT_OTHER_PAY_CODE", 1),
    (None, "RECEIPT_BAD_SIGNATURE", 1),  # a forged signature
    ("drop", "RECEIPT_MISSING", 1),
], ids=["honest", "terminal", "merchant", "refund", "amount", "pay-code", "forged",
        "missing"])
def test_a_man_in_the_middle_cannot_pass_off_another_sale_s_receipt(
    world: PayWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    forge: Forge | str | None, code: str, exit_code: int,
) -> None:
    till = world.terminal(floor=3_000)
    card = world.card(topup=5_000)
    env = {"FMC_TERMINAL_TOKEN": till.token}
    cache = ["--cache", str(tmp_path)]
    assert runner.invoke(app, [*cache, "sync", "--server", world.url, "--root",
                               world.root_fingerprint, "--at", AT], env=env).exit_code == 0
    assert runner.invoke(app, [*cache, "terminal", "setup", "--server", world.url],
                         env=env).exit_code == 0
    keyring = open_keyring(world.settings)

    def man_in_the_middle(request: httpx.Request) -> httpx.Response:
        genuine = world.http.post(request.url.path, content=request.content,
                                  headers=till.headers)
        body = genuine.json()
        if forge == "drop":
            body.pop("receipt")
        elif forge is None:
            body["receipt"] = _forged_signature(body["receipt"])
        else:
            claims = forge(_payload(body["receipt"]))
            signer = keyring.signer(_kid(body["receipt"]))
            body["receipt"] = sign_receipt(Receipt.from_payload(claims), signer)
        return httpx.Response(genuine.status_code, json=body)

    monkeypatch.setattr(terminal_cli, "_client", lambda bearer, timeout: httpx.Client(
        transport=httpx.MockTransport(man_in_the_middle)))
    result = runner.invoke(app, [*cache, "terminal", "charge", "--text", world.pay_code(card),
                                 "--amount", "1250", "--server", world.url, "--at", AT,
                                 "--json"], env=env)
    answer = json.loads(result.output)
    assert (result.exit_code, answer["code"], answer["ok"]) == (exit_code, code, code == "OK")
    if code != "OK":
        assert "receipt verified" not in runner.invoke(app, [
            *cache, "terminal", "charge", "--text", world.pay_code(card), "--amount", "50",
            "--server", world.url, "--at", AT], env=env).output


_SALE = Sale(terminal_id=7, merchant_id=3, amount_fen=1_250, pay_code="pc")
_RECEIPT = Receipt("pay_1", "payment", "pay_1", "CN-YW", "3300012345678901", 3, 7, 1_250,
                   8_750, 0, "online", 0, 0, "pc")


@pytest.mark.parametrize(("changes", "code"), [
    ({}, "RECEIPT_OK"),
    ({"kind": "refund"}, "RECEIPT_NOT_A_PAYMENT"),
    ({"terminal_id": 8}, "RECEIPT_OTHER_TERMINAL"),
    ({"merchant_id": 4}, "RECEIPT_OTHER_MERCHANT"),
    ({"amount_fen": 1_249}, "RECEIPT_OTHER_AMOUNT"),
    ({"pay_code": "other"}, "RECEIPT_OTHER_PAY_CODE"),
    ({"kind": "refund", "terminal_id": 8}, "RECEIPT_NOT_A_PAYMENT"),  # the fixed order
])
def test_receipt_matches_sale(changes: dict[str, Any], code: str) -> None:
    from dataclasses import replace

    assert receipt_matches_sale(replace(_RECEIPT, **changes), _SALE) == code


def test_attack_a_receipt_the_till_cannot_check_proves_nothing() -> None:
    # A till that never synced has no trust list: whatever the "authority" answered, no
    # sale is recorded as paid (it used to be accepted as RECEIPT_UNCHECKED).
    from verifier.receipts import check_receipt

    assert check_receipt("eyJ.any.thing", trust_list=None, sale=_SALE).code == (
        "RECEIPT_NO_TRUST_LIST")
    assert not check_receipt(None, trust_list=None, sale=None).ok
