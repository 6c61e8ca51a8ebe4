"""Idempotency keys: a retry gets the same answer and never charges twice, also after the
client timed out on a request the server completed; another body under the same key is
refused; keys belong to one terminal or officer."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from payments_kit import PayWorld


def test_a_retry_with_the_same_key_returns_the_same_answer_and_charges_once(
    world: PayWorld,
) -> None:
    card = world.card(topup=1_000)
    till = world.terminal()
    code = world.pay_code(card)
    first = world.charge(till, code, 400, key="sale-1")
    again = world.charge(till, code, 400, key="sale-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert world.balance(card.card_number) == 600


def test_the_retry_is_answered_even_when_the_pay_code_has_gone_stale(world: PayWorld) -> None:
    card = world.card(topup=1_000)
    till = world.terminal()
    code = world.pay_code(card)
    first = world.charge(till, code, 400, key="sale-2")
    world.clock.advance(3600)  # the code is long stale, the answer is stored
    again = world.charge(till, code, 400, key="sale-2")
    assert (again.status_code, again.json()) == (201, first.json())
    assert world.balance(card.card_number) == 600


def test_the_same_key_with_another_body_is_refused(world: PayWorld) -> None:
    card = world.card(topup=1_000)
    till = world.terminal()
    code = world.pay_code(card)
    assert world.charge(till, code, 400, key="sale-3").status_code == 201
    for other_code, amount in ((code, 401), (world.pay_code(card), 400)):
        answer = world.charge(till, other_code, amount, key="sale-3")
        assert (answer.status_code, answer.json()["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert world.balance(card.card_number) == 600


def test_a_refused_request_is_judged_again_on_retry(world: PayWorld) -> None:
    card = world.card(topup=100)
    till = world.terminal()
    code = world.pay_code(card)
    assert world.charge(till, code, 400, key="sale-4").status_code == 402
    world.topup(card.card_number, 300)
    assert world.charge(till, code, 400, key="sale-4").status_code == 201
    assert world.balance(card.card_number) == 0


def test_keys_are_per_terminal(world: PayWorld) -> None:
    card = world.card(topup=1_000)
    merchant = world.merchant()
    one, two = world.terminal(merchant), world.terminal(merchant)
    assert world.charge(one, world.pay_code(card), 100, key="shared").status_code == 201
    assert world.charge(two, world.pay_code(card), 200, key="shared").status_code == 201
    assert world.balance(card.card_number) == 700


def test_a_client_that_timed_out_retries_and_is_charged_once(world: PayWorld) -> None:
    card = world.card(topup=1_000)
    till = world.terminal()
    code = world.pay_code(card)
    slow = world.slow
    assert slow is not None
    slow.delay_seconds = 1.0  # the server completes, the answer comes too late
    done_before = slow.completed
    with (httpx.Client(base_url=world.url, timeout=0.3) as impatient,
          pytest.raises(httpx.ReadTimeout)):
        world.charge(till, code, 250, key="sale-5", client=impatient)
    deadline = time.monotonic() + 10
    while slow.completed == done_before and time.monotonic() < deadline:
        time.sleep(0.02)  # wait until the server has sent the late answer
    slow.delay_seconds = 0.0
    retry = world.charge(till, code, 250, key="sale-5")
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert world.balance(card.card_number) == 750
    assert [t["kind"] for t in world.account(card.card_number)["transactions"]] == [
        "charge", "topup"]


def test_a_retry_racing_the_original_is_charged_once(world: PayWorld) -> None:
    card = world.card(topup=1_000)
    till = world.terminal()
    code = world.pay_code(card)
    barrier = threading.Barrier(4)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        with world.client() as client:
            barrier.wait()
            answer = world.charge(till, code, 300, key="sale-6", client=client)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [a.status_code for a in answers] == [201] * 4
    assert len({a.json()["payment_id"] for a in answers}) == 1
    assert world.balance(card.card_number) == 700


def test_top_ups_are_idempotent_too(world: PayWorld) -> None:
    card = world.card()
    first = world.topup(card.card_number, 500, key="desk-1")
    assert world.topup(card.card_number, 500, key="desk-1") == first
    refused = world.http.post(f"/v1/accounts/{card.card_number}/topups",
                              headers=world.as_role("cashier"),
                              json={"amount_fen": 600, "idempotency_key": "desk-1"})
    assert (refused.status_code, refused.json()["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert world.balance(card.card_number) == 500
