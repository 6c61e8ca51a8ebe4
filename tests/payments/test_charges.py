"""Online charges: a verified pay code is charged once, atomically, with a signed receipt;
every refusal has its code and changes nothing."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from payments_kit import SQLITE_ONLY, PayCard, PayWorld, TerminalHandle, bearer

from keys import sign_presentation
from schemas import b64url_encode
from verifier.receipts import pay_code_key, verify_receipt
from verifier.replay import replay_key


def _snapshot(world: PayWorld, card: PayCard) -> tuple[int, int]:
    return world.balance(card.card_number), world.ledger().transactions


def test_a_charge_debits_the_card_and_returns_a_receipt_the_terminal_can_check(
    world: PayWorld,
) -> None:
    card = world.card(topup=10_000)
    till = world.terminal()
    code = world.pay_code(card)
    answer = world.charge(till, code, 1_250)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "accepted" and body["balance_fen"] == 8_750
    assert body["payment_id"].startswith("pay_")
    receipt = verify_receipt(body["receipt"], trust_list=world.trust_list())
    assert (receipt.kind, receipt.payment_id, receipt.card_number) == (
        "payment", body["payment_id"], card.card_number)
    assert (receipt.amount_fen, receipt.balance_fen, receipt.mode) == (1_250, 8_750, "online")
    assert (receipt.merchant_id, receipt.terminal_id) == (till.merchant_id, till.terminal_id)
    assert receipt.pay_code == pay_code_key(code)
    assert world.balance(card.card_number) == 8_750
    history = world.account(card.card_number)["transactions"]
    assert [(t["kind"], t["amount_fen"]) for t in history] == [("charge", -1_250),
                                                               ("topup", 10_000)]
    assert history[0]["merchant_id"] == till.merchant_id


def test_the_balance_may_reach_exactly_zero_but_not_below(world: PayWorld) -> None:
    card = world.card(topup=500)
    till = world.terminal()
    assert world.charge(till, world.pay_code(card), 500).status_code == 201
    refused = world.charge(till, world.pay_code(card), 1)
    assert refused.status_code == 402
    assert refused.json()["code"] == "INSUFFICIENT_FUNDS"
    assert world.balance(card.card_number) == 0


def test_a_card_never_topped_up_has_insufficient_funds(world: PayWorld) -> None:
    card = world.card()
    answer = world.charge(world.terminal(), world.pay_code(card), 100)
    assert (answer.status_code, answer.json()["code"]) == (402, "INSUFFICIENT_FUNDS")


def test_a_pay_code_is_charged_once(world: PayWorld) -> None:
    card = world.card(topup=1_000)
    code = world.pay_code(card)
    assert world.charge(world.terminal(), code, 100).status_code == 201
    again = world.charge(world.terminal(), code, 100)  # another shop, another key
    assert (again.status_code, again.json()["code"]) == (409, "PAY_CODE_USED")
    assert world.balance(card.card_number) == 900


def _refuse(world: PayWorld, card: PayCard, till: TerminalHandle, case: str) -> Any:
    if case == "stale":
        code = world.pay_code(card)
        world.clock.advance(120)
        return world.charge(till, code, 100)
    if case == "future":
        return world.charge(till, card.pay_code(world.clock.epoch + 60), 100)
    if case == "id credential":
        text = sign_presentation(card.bundle["credentials"]["id"], card.device,
                                 proof_time=world.clock.epoch, purpose="id")
        return world.charge(till, text, 100)
    if case == "garbage":
        return world.charge(till, "FMC1:12345", 100)
    if case == "not a code":
        return world.charge(till, "hello", 100)
    if case == "other device":
        from keys import Ed25519Signer

        thief = Ed25519Signer(secrets.token_bytes(32))
        return world.charge(till, sign_presentation(card.pay_credential, thief,
                                                    proof_time=world.clock.epoch,
                                                    purpose="pay"), 100)
    action = {"revoked": "revoke", "suspended": "suspend"}[case]
    answer = world.http.post(f"/v1/cards/{card.card_number}/{action}", headers=world.admin,
                             json={"reason": "test"})
    assert answer.status_code == 200, answer.text
    return world.charge(till, world.pay_code(card), 100)


@pytest.mark.parametrize(("case", "code"), [
    ("stale", "HOLDER_PROOF_STALE"),
    ("future", "HOLDER_PROOF_STALE"),
    ("id credential", "WRONG_PURPOSE"),
    ("garbage", "MALFORMED"),
    ("not a code", "MALFORMED"),
    ("other device", "HOLDER_PROOF_INVALID"),
    ("revoked", "REVOKED"),
    ("suspended", "SUSPENDED"),
])
def test_the_verifier_refusals_come_back_as_422_with_its_code_and_change_nothing(
    world: PayWorld, case: str, code: str,
) -> None:
    card = world.card(topup=1_000)
    till = world.terminal()
    before = _snapshot(world, card)
    answer = _refuse(world, card, till, case)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code
    assert _snapshot(world, card) == before


def test_a_card_without_the_payment_entitlement_gets_no_pay_credential(world: PayWorld) -> None:
    card = world.card(entitlements=("healthcare",))
    assert card.pay_credential == ""


@SQLITE_ONLY
@pytest.mark.parametrize("amount", [0, -5, 12.5, "100", True, None, 10_000_001, 2**70])
def test_amounts_are_strict_positive_integers_of_fen(world: PayWorld, amount: object) -> None:
    answer = world.http.post("/v1/payments", headers=world.terminal().headers, json={
        "pay_code": "FMC1:1", "amount_fen": amount, "idempotency_key": "k"})
    assert (answer.status_code, answer.json()["code"]) == (422, "VALIDATION_FAILED")
    topup = world.http.post("/v1/accounts/3300000000000000/topups",
                            headers=world.as_role("cashier"),
                            json={"amount_fen": amount, "idempotency_key": "k"})
    assert (topup.status_code, topup.json()["code"]) == (422, "VALIDATION_FAILED")


@SQLITE_ONLY
@pytest.mark.parametrize("body", [
    {},
    {"pay_code": "FMC1:1", "amount_fen": 1},
    {"pay_code": "FMC1:1", "amount_fen": 1, "idempotency_key": ""},
    {"pay_code": "FMC1:1", "amount_fen": 1, "idempotency_key": "a b"},
    {"pay_code": "FMC1:1", "amount_fen": 1, "idempotency_key": "k" * 65},
    {"pay_code": "x" * 3000, "amount_fen": 1, "idempotency_key": "k"},
    {"pay_code": "FMC1:1", "amount_fen": 1, "idempotency_key": "k", "tip": 5},
])
def test_malformed_bodies_are_422(world: PayWorld, body: dict[str, Any]) -> None:
    answer = world.http.post("/v1/payments", headers=world.terminal().headers, json=body)
    assert (answer.status_code, answer.json()["code"]) == (422, "VALIDATION_FAILED")


def test_only_registered_terminals_charge(world: PayWorld) -> None:
    card = world.card(topup=1_000)
    body = {"pay_code": world.pay_code(card), "amount_fen": 100, "idempotency_key": "k"}
    cases = [({}, 401, "UNAUTHENTICATED"),
             (bearer("not-a-token"), 401, "UNAUTHENTICATED"),
             (world.as_role("cashier"), 403, "FORBIDDEN"),
             (world.as_role("terminal"), 403, "NOT_A_TERMINAL")]  # role, but no merchant
    for headers, status, code in cases:
        answer = world.http.post("/v1/payments", headers=headers, json=body)
        assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert world.balance(card.card_number) == 1_000


def test_the_replay_key_in_the_receipt_is_the_verifier_library_s(world: PayWorld) -> None:
    from schemas import decode_presentation

    card = world.card(topup=1_000)
    code = world.pay_code(card)
    body = world.charge(world.terminal(), code, 100).json()
    parts = decode_presentation(code)
    expected = b64url_encode(replay_key(parts.signature, parts.proof_time))
    assert verify_receipt(body["receipt"], trust_list=world.trust_list()).pay_code == expected


def test_top_ups_need_a_cashier_and_a_usable_card(world: PayWorld) -> None:
    card = world.card()
    body = {"amount_fen": 500, "idempotency_key": "t1"}
    path = f"/v1/accounts/{card.card_number}/topups"
    assert world.http.post(path, json=body, headers=world.terminal().headers).status_code == 403
    missing = world.http.post("/v1/accounts/3399999999999999/topups", json=body,
                              headers=world.as_role("cashier"))
    assert (missing.status_code, missing.json()["code"]) == (404, "CARD_NOT_FOUND")
    world.http.post(f"/v1/cards/{card.card_number}/revoke", headers=world.admin,
                    json={"reason": "lost"})
    revoked = world.http.post(path, json=body, headers=world.as_role("cashier"))
    assert (revoked.status_code, revoked.json()["code"]) == (409, "CARD_REVOKED")
    assert world.balance(card.card_number) == 0


def test_accounts_are_read_by_cashiers_auditors_and_supervisors_only(world: PayWorld) -> None:
    card = world.card(topup=300)
    path = f"/v1/accounts/{card.card_number}"
    for role in ("cashier", "auditor", "supervisor"):
        assert world.http.get(path, headers=world.as_role(role)).json()["balance_fen"] == 300
    assert world.http.get(path, headers=world.terminal().headers).status_code == 403
    assert world.http.get(path, headers=world.as_role("registrar")).status_code == 403
    assert world.http.get("/v1/accounts/3399999999999999",
                          headers=world.as_role("auditor")).status_code == 404


def test_history_pages_newest_first(world: PayWorld) -> None:
    card = world.card()
    for amount in (100, 200, 300, 400, 500):
        world.topup(card.card_number, amount)
    path = f"/v1/accounts/{card.card_number}"
    first = world.http.get(path, headers=world.as_role("auditor"), params={"limit": 2}).json()
    assert [t["amount_fen"] for t in first["transactions"]] == [500, 400]
    second = world.http.get(path, headers=world.as_role("auditor"),
                            params={"limit": 2, "before": first["next_before"]}).json()
    assert [t["amount_fen"] for t in second["transactions"]] == [300, 200]
