"""Refunds up to the original amount, by a cashier or a terminal of the same merchant;
merchants and terminals; the settlement report per merchant per day reconciles to the
ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from payments_kit import NOW, PayWorld, TerminalHandle

from verifier.receipts import verify_receipt


def _refund(world: PayWorld, payment_id: str, amount: int, headers: dict[str, str],
            key: str = "r", reason: str = "returned goods") -> Any:
    return world.http.post(f"/v1/payments/{payment_id}/refund", headers=headers,
                           json={"amount_fen": amount, "idempotency_key": key,
                                 "reason": reason})


def _paid(world: PayWorld, till: TerminalHandle, amount: int, topup: int = 10_000) -> Any:
    card = world.card(topup=topup)
    answer = world.charge(till, world.pay_code(card), amount)
    assert answer.status_code == 201, answer.text
    return card, answer.json()["payment_id"]


def test_refunds_in_parts_up_to_the_original_amount(world: PayWorld) -> None:
    till = world.terminal()
    card, payment_id = _paid(world, till, 3_000)
    first = _refund(world, payment_id, 1_000, till.headers, key="r1")
    assert first.status_code == 201, first.text
    assert (first.json()["refunded_total_fen"], first.json()["balance_fen"]) == (1_000, 8_000)
    receipt = verify_receipt(first.json()["receipt"], trust_list=world.trust_list())
    assert (receipt.kind, receipt.payment_id, receipt.amount_fen) == ("refund", payment_id,
                                                                       1_000)
    too_much = _refund(world, payment_id, 2_001, world.as_role("cashier"), key="r2")
    assert (too_much.status_code, too_much.json()["code"]) == (409, "REFUND_EXCEEDS_PAYMENT")
    assert too_much.json()["refundable_fen"] == 2_000
    rest = _refund(world, payment_id, 2_000, world.as_role("cashier"), key="r3")
    assert rest.status_code == 201
    assert world.balance(card.card_number) == 10_000
    again = _refund(world, payment_id, 1, till.headers, key="r4")
    assert again.status_code == 409
    view = world.http.get(f"/v1/payments/{payment_id}", headers=till.headers).json()
    assert view["refunded_fen"] == 3_000


def test_a_refund_retried_with_its_key_refunds_once(world: PayWorld) -> None:
    till = world.terminal()
    card, payment_id = _paid(world, till, 1_000)
    first = _refund(world, payment_id, 400, till.headers, key="same")
    again = _refund(world, payment_id, 400, till.headers, key="same")
    assert (again.status_code, again.json()) == (201, first.json())
    assert world.balance(card.card_number) == 9_400


def test_only_the_merchant_s_own_terminals_refund(world: PayWorld) -> None:
    till = world.terminal()
    card, payment_id = _paid(world, till, 1_000)
    stranger = world.terminal()
    answer = _refund(world, payment_id, 100, stranger.headers)
    assert (answer.status_code, answer.json()["code"]) == (404, "PAYMENT_NOT_FOUND")
    assert world.http.get(f"/v1/payments/{payment_id}",
                          headers=stranger.headers).status_code == 404
    assert _refund(world, payment_id, 100, world.as_role("auditor")).status_code == 403
    missing = _refund(world, "pay_" + "0" * 20, 100, world.as_role("cashier"))
    assert (missing.status_code, missing.json()["code"]) == (404, "PAYMENT_NOT_FOUND")
    assert world.balance(card.card_number) == 9_000


def test_a_refund_repays_an_offline_overdraft_first(world: PayWorld) -> None:
    card = world.card(topup=1_000)
    till = world.terminal(floor=5_000)
    answer = world.http.post("/v1/payments/offline-batch", headers=till.headers, json={
        "items": [{"pay_code": world.pay_code(card), "amount_fen": 3_000,
                   "accepted_at": NOW.isoformat(), "idempotency_key": "od"}]})
    [result] = answer.json()["results"]
    refund = _refund(world, result["payment_id"], 2_500, till.headers)
    assert (refund.json()["overdraft_fen"], refund.json()["balance_fen"]) == (0, 500)


def test_merchants_and_terminals_are_managed_by_supervisors(world: PayWorld) -> None:
    cashier = world.as_role("cashier")
    assert world.http.post("/v1/merchants", headers=cashier,
                           json={"name": "X"}).status_code == 403
    merchant = world.merchant("Silk Road Trading")
    till = world.terminal(merchant, floor=12_345, name="front desk")
    me = world.http.get("/v1/terminal", headers=till.headers).json()
    assert me == me | {"terminal_id": till.terminal_id, "merchant_id": merchant,
                       "merchant_name": "Silk Road Trading", "offline_floor_fen": 12_345,
                       "name": "front desk"}
    listed = world.http.get(f"/v1/merchants/{merchant}", headers=cashier).json()
    assert [t["terminal_id"] for t in listed["terminals"]] == [till.terminal_id]
    assert "token" not in listed["terminals"][0]
    for body in ({"name": ""}, {"name": "x", "offline_floor_fen": -1},
                 {"name": "x", "offline_floor_fen": 1_000_001}, {"name": "x\x00"}):
        answer = world.http.post(f"/v1/merchants/{merchant}/terminals", headers=world.admin,
                                 json=body)
        assert answer.status_code == 422, body
    missing = world.http.post("/v1/merchants/999999/terminals", headers=world.admin,
                              json={"name": "x"})
    assert (missing.status_code, missing.json()["code"]) == (404, "MERCHANT_NOT_FOUND")


def _settlement(world: PayWorld, merchant_id: int, day: str,
                headers: dict[str, str] | None = None) -> Any:
    return world.http.get(f"/v1/merchants/{merchant_id}/settlement", params={"date": day},
                          headers=headers or world.as_role("auditor"))


def test_the_settlement_report_reconciles_to_the_ledger(world: PayWorld) -> None:
    merchant = world.merchant("Night Market")
    one, two = world.terminal(merchant), world.terminal(merchant, floor=9_000)
    # 2027-01-15 in Yiwu runs from 2027-01-14T16:00Z to 2027-01-15T16:00Z.
    world.clock.now = datetime(2027, 1, 14, 15, 59, 59, tzinfo=NOW.tzinfo)
    card = world.card(topup=50_000)
    assert world.charge(one, world.pay_code(card), 111).status_code == 201  # the day before
    world.clock.now = NOW
    paid = [world.charge(one, world.pay_code(card), amount).json()["payment_id"]
            for amount in (1_000, 2_000)]
    paid.append(world.charge(two, world.pay_code(card), 4_000).json()["payment_id"])
    offline = world.http.post("/v1/payments/offline-batch", headers=two.headers, json={
        "items": [{"pay_code": world.pay_code(card), "amount_fen": 500,
                   "accepted_at": NOW.isoformat(),
                   "idempotency_key": "n-1"}]})
    assert offline.json()["results"][0]["outcome"] == "settled"
    assert _refund(world, paid[1], 700, one.headers).status_code == 201
    report = _settlement(world, merchant, "2027-01-15").json()
    assert report["charges"] == {"count": 4, "total_fen": 7_500,
                                 "online": {"count": 3, "total_fen": 7_000},
                                 "offline": {"count": 1, "total_fen": 500}}
    assert report["refunds"] == {"count": 1, "total_fen": 700}
    assert report["net_fen"] == report["ledger_net_fen"] == 6_800
    assert report["reconciled"] is True
    assert report["owed_to_merchant_fen"] == 6_800 + 111
    assert report["terminals"] == [
        {"terminal_id": one.terminal_id, "count": 2, "total_fen": 3_000},
        {"terminal_id": two.terminal_id, "count": 2, "total_fen": 4_500}]
    before = _settlement(world, merchant, "2027-01-14").json()
    assert (before["net_fen"], before["reconciled"]) == (111, True)
    empty = _settlement(world, merchant, "2027-01-16").json()
    assert (empty["charges"]["count"], empty["net_fen"], empty["reconciled"]) == (0, 0, True)


def test_settlement_is_read_by_the_merchant_s_terminals_and_back_office(
    world: PayWorld,
) -> None:
    merchant = world.merchant()
    till = world.terminal(merchant)
    assert _settlement(world, merchant, "2027-01-15", till.headers).status_code == 200
    stranger = world.terminal()
    answer = _settlement(world, merchant, "2027-01-15", stranger.headers)
    assert (answer.status_code, answer.json()["code"]) == (403, "FORBIDDEN")
    assert _settlement(world, merchant, "2027-01-15",
                       world.as_role("registrar")).status_code == 403
    assert _settlement(world, 987_654, "2027-01-15").status_code == 404


@pytest.mark.parametrize("day", ["2027-13-01", "yesterday", "", "1999-12-31"])
def test_settlement_dates_are_checked(world: PayWorld, day: str) -> None:
    answer = _settlement(world, world.merchant(), day)
    assert (answer.status_code, answer.json()["code"]) == (422, "VALIDATION_FAILED")
