"""Store-and-forward: what terminals accepted offline is settled once; a pay code seen
before is a double spend (not charged, the card suspended); a balance too low becomes an
explicit overdraft (the card suspended, the next top-up repays it first)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from payments_kit import NOW, PayCard, PayWorld, TerminalHandle

from verifier.receipts import pay_code_key, verify_receipt


def _item(code: str, amount: int, key: str, accepted_at: datetime = NOW) -> dict[str, Any]:
    return {"pay_code": code, "amount_fen": amount, "accepted_at": accepted_at.isoformat(),
            "idempotency_key": key}


def _upload(world: PayWorld, till: TerminalHandle, *items: dict[str, Any]) -> list[Any]:
    answer = world.http.post("/v1/payments/offline-batch", headers=till.headers,
                             json={"items": list(items)})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["results"])


def _pay_online(world: PayWorld, code: str) -> httpx.Response:
    return world.charge(world.terminal(), code, 1)


def test_an_offline_payment_is_settled_with_a_receipt(world: PayWorld) -> None:
    card = world.card(topup=5_000)
    till = world.terminal(floor=3_000)
    code = world.pay_code(card)
    world.clock.advance(7200)  # uploaded two hours later: checked as of accepted_at
    [result] = _upload(world, till, _item(code, 2_000, "o-1"))
    assert result["outcome"] == "settled" and result["code"] is None
    assert (result["balance_fen"], result["overdraft_fen"]) == (3_000, 0)
    receipt = verify_receipt(result["receipt"], trust_list=world.trust_list())
    assert (receipt.mode, receipt.amount_fen, receipt.accepted_at) == (
        "offline", 2_000, int(NOW.timestamp()))
    assert receipt.pay_code == pay_code_key(code)
    assert world.card_state(card.card_number) == "active"
    assert world.balance(card.card_number) == 3_000


def test_the_same_code_from_two_offline_terminals_is_charged_once_and_suspends_the_card(
    world: PayWorld,
) -> None:
    card = world.card(topup=5_000)
    one, two = world.terminal(), world.terminal()
    code = world.pay_code(card)  # a screenshot shown at two shops
    [first] = _upload(world, one, _item(code, 1_500, "a-1"))
    [second] = _upload(world, two, _item(code, 1_500, "b-1"))
    assert first["outcome"] == "settled"
    assert second["outcome"] == "double_spend" and second["code"] == "DOUBLE_SPEND"
    assert second["original_payment_id"] == first["payment_id"]
    assert second["card_suspended"] is True
    assert world.balance(card.card_number) == 3_500  # charged once
    assert world.card_state(card.card_number) == "suspended"
    # The status list says so at once: the next online charge is refused.
    refused = _pay_online(world, world.pay_code(card))
    assert (refused.status_code, refused.json()["code"]) == (422, "SUSPENDED")
    report = world.http.get(f"/v1/merchants/{two.merchant_id}/settlement",
                            params={"date": "2027-01-15"}, headers=world.as_role("auditor"))
    assert report.json()["double_spends"] == {"count": 1, "total_fen": 1_500}


def test_a_code_charged_online_then_uploaded_by_another_terminal_is_a_double_spend(
    world: PayWorld,
) -> None:
    card = world.card(topup=5_000)
    code = world.pay_code(card)
    assert world.charge(world.terminal(), code, 700).status_code == 201
    [result] = _upload(world, world.terminal(), _item(code, 700, "c-1"))
    assert (result["outcome"], result["card_suspended"]) == ("double_spend", True)
    assert world.balance(card.card_number) == 4_300


def test_the_same_sale_sent_online_and_then_queued_by_one_terminal_is_not_a_double_spend(
    world: PayWorld,
) -> None:
    """The online answer was lost (timeout), the terminal queued the code and uploads it."""
    card = world.card(topup=5_000)
    till = world.terminal()
    code = world.pay_code(card)
    online = world.charge(till, code, 900)
    assert online.status_code == 201
    [result] = _upload(world, till, _item(code, 900, "d-1"))
    assert result["outcome"] == "settled" and result["same_sale"] is True
    assert result["payment_id"] == online.json()["payment_id"]
    assert world.balance(card.card_number) == 4_100
    assert world.card_state(card.card_number) == "active"


def test_one_terminal_sending_one_code_twice_for_other_amounts_is_its_own_double_spend(
    world: PayWorld,
) -> None:
    """The holder showed the code once; the terminal's double use is not the card's fault."""
    card = world.card(topup=5_000)
    till = world.terminal()
    code = world.pay_code(card)
    [first] = _upload(world, till, _item(code, 400, "s-1"))
    [second] = _upload(world, till, _item(code, 900, "s-2"))
    assert (first["outcome"], second["outcome"], second["card_suspended"]) == (
        "settled", "double_spend", False)
    assert world.balance(card.card_number) == 4_600
    assert world.card_state(card.card_number) == "active"


def test_an_offline_overdraft_is_recorded_suspends_the_card_and_is_repaid_first(
    world: PayWorld,
) -> None:
    card = world.card(topup=1_000)
    till = world.terminal(floor=5_000)
    [result] = _upload(world, till, _item(world.pay_code(card), 3_000, "e-1"))
    assert result["outcome"] == "settled"
    assert (result["balance_fen"], result["overdraft_fen"], result["card_suspended"]) == (
        0, 2_000, True)
    account = world.account(card.card_number)
    assert (account["balance_fen"], account["overdraft_fen"]) == (0, 2_000)
    assert account["transactions"][0] | {"amount_fen": -3_000, "balance_change_fen": -1_000,
                                         "overdraft_change_fen": 2_000} == account[
        "transactions"][0]
    assert world.card_state(card.card_number) == "suspended"
    topped = world.topup(card.card_number, 2_500)
    assert (topped["overdraft_repaid_fen"], topped["balance_fen"], topped["overdraft_fen"]) == (
        2_000, 500, 0)


@pytest.mark.parametrize(("case", "code"), [
    ("over the terminal floor", "OFFLINE_LIMIT_EXCEEDED"),
    ("over the card limit", "OFFLINE_LIMIT_EXCEEDED"),
    ("stale at acceptance", "HOLDER_PROOF_STALE"),
    ("accepted in the future", "ACCEPTED_AT_OUT_OF_RANGE"),
    ("accepted too long ago", "ACCEPTED_AT_OUT_OF_RANGE"),
    ("not a pay code", "MALFORMED"),
])
def test_refused_offline_items_say_why_and_change_nothing(
    world: PayWorld, case: str, code: str,
) -> None:
    card = world.card(topup=9_000, offline_limit_fen=4_000)
    till = world.terminal(floor=5_000)
    fresh = world.pay_code(card)
    item = {
        "over the terminal floor": _item(fresh, 5_001, "f"),
        "over the card limit": _item(fresh, 4_001, "f"),
        "stale at acceptance": _item(fresh, 100, "f", NOW + timedelta(minutes=5)),
        "accepted in the future": _item(fresh, 100, "f", NOW + timedelta(hours=1)),
        "accepted too long ago": _item(fresh, 100, "f", NOW - timedelta(days=31)),
        "not a pay code": _item("FMC1:99", 100, "f"),
    }[case]
    before = world.ledger().transactions
    [result] = _upload(world, till, item)
    assert (result["outcome"], result["code"]) == ("refused", code)
    assert world.ledger().transactions == before
    assert world.balance(card.card_number) == 9_000


def test_offline_settlement_honours_what_the_terminal_trusted_when_it_accepted(
    world: PayWorld,
) -> None:
    """Revoked after the sale: the offline acceptance stands (the offline risk)."""
    card = world.card(topup=2_000)
    code = world.pay_code(card)
    world.http.post(f"/v1/cards/{card.card_number}/revoke", headers=world.admin,
                    json={"reason": "lost phone"})
    [result] = _upload(world, world.terminal(), _item(code, 500, "g-1"))
    assert result["outcome"] == "settled"
    assert world.balance(card.card_number) == 1_500


def test_an_upload_sent_again_gets_the_same_results(world: PayWorld) -> None:
    card = world.card(topup=5_000)
    one, two = world.terminal(), world.terminal()
    code = world.pay_code(card)
    items = [_item(code, 100, "h-1"), _item(world.pay_code(card), 200, "h-2"),
             _item("FMC1:1", 50, "h-3")]
    _upload(world, one, _item(code, 100, "x-1"))
    first = _upload(world, two, *items)
    again = _upload(world, two, *items)
    assert [r["outcome"] for r in first] == ["double_spend", "settled", "refused"]
    assert again == first
    assert world.balance(card.card_number) == 4_700


def test_a_batch_is_validated_whole(world: PayWorld) -> None:
    till = world.terminal()
    for body in ({"items": []}, {"items": [{"pay_code": "FMC1:1"}]},
                 {"items": [_item("FMC1:1", 1, "k") | {"accepted_at": "2027-01-15T08:00:00"}]},
                 {"items": [_item("FMC1:1", 1, "k")] * 201}):
        answer = world.http.post("/v1/payments/offline-batch", headers=till.headers, json=body)
        assert (answer.status_code, answer.json()["code"]) == (422, "VALIDATION_FAILED")


def test_several_cards_in_one_batch(world: PayWorld) -> None:
    cards: list[PayCard] = [world.card(topup=1_000) for _ in range(3)]
    till = world.terminal()
    results = _upload(world, till, *(_item(world.pay_code(c), 300, f"m-{i}")
                                      for i, c in enumerate(cards)))
    assert [r["outcome"] for r in results] == ["settled"] * 3
    assert [world.balance(c.card_number) for c in cards] == [700] * 3
