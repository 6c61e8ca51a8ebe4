"""Concurrent terminals over real HTTP (one client and one token per terminal): the card's
balance never goes below zero and equals top-ups minus accepted charges; one pay code
sent by two terminals at once is charged exactly once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
from payments_kit import PayWorld, TerminalHandle

TERMINALS = 32


def _all_at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together by a barrier."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _terminals(world: PayWorld, count: int) -> list[TerminalHandle]:
    return world.terminals(world.merchant("Busy Market"), count)


def test_32_terminals_charging_one_card_never_overdraw_it(world: PayWorld) -> None:
    card = world.card(topup=1_000)
    world.topup(card.card_number, 50)
    tills = _terminals(world, TERMINALS)
    codes = [world.pay_code(card) for _ in range(TERMINALS)]  # distinct proof times
    clients = [world.client() for _ in range(TERMINALS)]
    try:
        answers = _all_at_once(TERMINALS, lambda i: world.charge(
            tills[i], codes[i], 70, client=clients[i]))
    finally:
        for client in clients:
            client.close()
    statuses = sorted(answer.status_code for answer in answers)
    accepted = [a.json() for a in answers if a.status_code == 201]
    assert len(accepted) == 1_050 // 70 == 15
    assert statuses == [201] * 15 + [402] * (TERMINALS - 15)
    assert {a.json()["code"] for a in answers if a.status_code == 402} == {"INSUFFICIENT_FUNDS"}
    # Each accepted charge saw the balance its predecessor left: all distinct, none negative.
    assert sorted(a["balance_fen"] for a in accepted) == [1_050 - 70 * n for n in range(15, 0, -1)]
    assert world.balance(card.card_number) == 1_050 - 70 * len(accepted) == 0
    assert len({a["payment_id"] for a in accepted}) == 15


def test_one_pay_code_sent_by_two_terminals_at_once_is_charged_once(world: PayWorld) -> None:
    card = world.card(topup=10_000)
    tills = _terminals(world, 2)
    clients = [world.client(), world.client()]
    rounds = 8
    try:
        for _ in range(rounds):
            code = world.pay_code(card)
            answers = _all_at_once(2, lambda i, code=code: world.charge(
                tills[i], code, 100, client=clients[i]))
            assert sorted(a.status_code for a in answers) == [201, 409]
            assert [a.json()["code"] for a in answers if a.status_code == 409] == [
                "PAY_CODE_USED"]
    finally:
        for client in clients:
            client.close()
    assert world.balance(card.card_number) == 10_000 - 100 * rounds


def test_charges_on_many_cards_and_top_ups_interleave_without_losing_a_fen(
    world: PayWorld,
) -> None:
    cards = [world.card(topup=500) for _ in range(4)]
    tills = _terminals(world, 8)
    jobs: list[tuple[str, Any]] = []
    for i in range(16):
        card = cards[i % 4]
        jobs.append(("charge", (tills[i % 8], world.pay_code(card), 60)))
        if i % 4 == 0:
            jobs.append(("topup", (card.card_number, 40)))
    cashier = world.as_role("cashier")

    def run(i: int) -> httpx.Response:
        kind, job = jobs[i]
        with world.client() as client:
            if kind == "charge":
                return world.charge(*job, client=client)
            return client.post(f"/v1/accounts/{job[0]}/topups", headers=cashier,
                               json={"amount_fen": job[1], "idempotency_key": f"c{i}"})

    answers = _all_at_once(len(jobs), run)
    assert all(a.status_code in (201, 402) for a in answers)
    charged = sum(60 for (kind, _), a in zip(jobs, answers, strict=True)
                  if kind == "charge" and a.status_code == 201)
    topped = sum(40 for (kind, _), a in zip(jobs, answers, strict=True)
                 if kind == "topup" and a.status_code == 201)
    total = sum(world.balance(card.card_number) for card in cards)
    assert total == 4 * 500 + topped - charged
