"""P8.3: a pay code cannot be turned into money by someone it was not given to. A code
the online path refused (402 no funds, 422 stale, ...) is re-sent by the same terminal
as "accepted offline": refused with PAY_CODE_SEEN_ONLINE, no money moves, no overdraft,
the card is not suspended."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from payments_kit import NOW, PayWorld, pay_world

from cardsvc.payments.charges import OFFLINE_UPLOAD_DEADLINE_SECONDS


@pytest.fixture(scope="module")
def _world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayWorld]:
    with pay_world("sqlite", tmp_path_factory.mktemp("offline-attacks")) as served:
        yield served


@pytest.fixture
def world(_world: PayWorld) -> PayWorld:
    _world.clock.now = NOW
    return _world


def _upload(world: PayWorld, till: Any, code: str, amount: int,
            accepted_at: datetime) -> dict[str, Any]:
    answer = world.http.post("/v1/payments/offline-batch", headers=till.headers, json={
        "items": [{"pay_code": code, "amount_fen": amount, "accepted_at": accepted_at.isoformat(),
                   "idempotency_key": secrets.token_hex(8)}]})
    assert answer.status_code == 200, answer.text
    [result] = answer.json()["results"]
    return dict(result)


def test_a_code_refused_online_for_funds_never_settles_offline(world: PayWorld) -> None:
    card = world.card(topup=500)
    till = world.terminal(floor=3_000)
    code = world.pay_code(card)
    refused = world.charge(till, code, 2_000)
    assert (refused.status_code, refused.json()["code"]) == (402, "INSUFFICIENT_FUNDS")
    result = _upload(world, till, code, 2_000, NOW)
    assert (result["outcome"], result["code"]) == ("refused", "PAY_CODE_SEEN_ONLINE")
    assert world.balance(card.card_number) == 500
    assert world.account(card.card_number)["overdraft_fen"] == 0
    assert world.card_state(card.card_number) == "active"


def test_a_code_refused_online_as_stale_never_settles_with_a_forged_accepted_at(
    world: PayWorld,
) -> None:
    card = world.card(topup=5_000)
    till = world.terminal(floor=3_000)
    code = world.pay_code(card)
    world.clock.advance(3_600)  # the code is an hour old when it reaches the authority
    refused = world.charge(till, code, 1_000)
    assert (refused.status_code, refused.json()["code"]) == (422, "HOLDER_PROOF_STALE")
    result = _upload(world, till, code, 1_000, NOW)  # "accepted" inside the proof window
    assert (result["outcome"], result["code"]) == ("refused", "PAY_CODE_SEEN_ONLINE")
    assert world.balance(card.card_number) == 5_000


def test_accepted_at_outside_the_proof_window_is_refused(world: PayWorld) -> None:
    card = world.card(topup=5_000)
    till = world.terminal(floor=3_000)
    code = world.pay_code(card)  # never sent online
    world.clock.advance(3_600)
    result = _upload(world, till, code, 1_000, NOW + timedelta(seconds=3_600))
    assert (result["outcome"], result["code"]) == ("refused", "HOLDER_PROOF_STALE")
    assert world.balance(card.card_number) == 5_000


def test_a_refusal_records_only_the_seen_code(world: PayWorld) -> None:
    card = world.card(topup=500)
    till = world.terminal(floor=3_000)
    code = world.pay_code(card)
    before = world.account(card.card_number)
    assert world.charge(till, code, 2_000).status_code == 402
    assert world.account(card.card_number) == before


def test_an_upload_after_the_deadline_is_refused(world: PayWorld) -> None:
    card = world.card(topup=5_000)
    till = world.terminal(floor=3_000)
    code = world.pay_code(card)
    world.clock.advance(OFFLINE_UPLOAD_DEADLINE_SECONDS + 60)
    result = _upload(world, till, code, 1_000, NOW)
    assert (result["outcome"], result["code"]) == ("refused", "OFFLINE_UPLOAD_TOO_LATE")
    assert world.balance(card.card_number) == 5_000


def test_a_card_s_offline_exposure_is_capped_across_terminals(world: PayWorld) -> None:
    card = world.card(topup=10_000, offline_limit_fen=3_000)
    tills = [world.terminal(floor=3_000) for _ in range(3)]
    results = [_upload(world, till, world.pay_code(card), 1_200, NOW) for till in tills]
    assert [(r["outcome"], r["code"]) for r in results] == [
        ("settled", None), ("settled", None), ("refused", "OFFLINE_EXPOSURE_CAP_EXCEEDED")]
    assert world.balance(card.card_number) == 10_000 - 2_400
    assert world.card_state(card.card_number) == "active"


def test_two_honest_sales_in_one_renewal_period_are_not_a_double_spend(
    world: PayWorld,
) -> None:
    card = world.card(topup=5_000)
    one, two = world.terminal(floor=3_000), world.terminal(floor=3_000)
    first, second = world.pay_code(card), world.pay_code(card)  # a fresh code per sale
    assert first != second
    results = [_upload(world, one, first, 1_000, NOW), _upload(world, two, second, 900, NOW)]
    assert [(r["outcome"], r["code"]) for r in results] == [("settled", None)] * 2
    assert world.card_state(card.card_number) == "active"
