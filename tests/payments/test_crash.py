"""The authority killed with SIGKILL under a payment load (a real ``cardsvc serve`` process,
durable database settings, the wall clock). After a restart: every charge a terminal
got a receipt for is in the ledger, no pay code is charged twice, the ledger sums to
zero, and retrying the requests left without an answer charges each at most once."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from payments_kit import FreshCodes, PayWorld, TerminalHandle, served_by_a_process
from sqlalchemy import func, select

from cardsvc.payments.models import IdempotencyRecord, LedgerTransaction, Payment
from verifier.receipts import verify_receipt

pytestmark = pytest.mark.e2e

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
LOAD_TERMINALS = 6
CARDS_PER_TERMINAL = 2
RECEIPTS_BEFORE_KILL = 40
TOPUP = 1_000_000


@dataclass
class Load:
    """What the terminals saw: receipts received, requests left without an answer."""

    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    unanswered: list[tuple[TerminalHandle, str, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


def _terminal_loop(world: PayWorld, till: TerminalHandle, codes: FreshCodes, load: Load,
                   amount: int) -> None:
    with httpx.Client(base_url=world.url, timeout=10) as client:
        while not load.stop.is_set():
            _, code = codes.next()
            key = secrets.token_hex(8)
            try:
                answer = world.charge(till, code, amount, key=key, client=client)
            except httpx.HTTPError:
                with load.lock:  # sent, never answered: the server died meanwhile
                    load.unanswered.append((till, code, amount, key))
                return
            if answer.status_code == 201:
                with load.lock:
                    load.receipts[answer.json()["payment_id"]] = answer.json()
            else:
                assert answer.status_code < 500, answer.text


def _payments_by_card(world: PayWorld) -> dict[str, int]:
    def work(session: Any) -> dict[str, int]:
        from cardsvc.models import Card

        rows = session.execute(select(Card.card_number, func.sum(Payment.amount_fen))
                               .join(Payment, Payment.card_id == Card.id)
                               .group_by(Card.card_number))
        return {number: int(total) for number, total in rows}

    return world.database.transact(work, readonly=True)


def _stored_payments(world: PayWorld) -> dict[str, int]:
    return world.database.transact(lambda session: {
        payment_id: int(amount) for payment_id, amount in
        session.execute(select(Payment.id, Payment.amount_fen))}, readonly=True)


def _ledger_facts(world: PayWorld) -> tuple[int, int, int, int]:
    def work(session: Any) -> tuple[int, int, int, int]:
        payments = session.scalar(select(func.count()).select_from(Payment))
        codes = session.scalar(select(func.count(func.distinct(Payment.replay_key))))
        charges = session.scalar(select(func.count(func.distinct(LedgerTransaction.reference)))
                                 .where(LedgerTransaction.kind == "charge"))
        charge_txns = session.scalar(select(func.count()).select_from(LedgerTransaction)
                                     .where(LedgerTransaction.kind == "charge"))
        assert charges == charge_txns  # one ledger transaction per payment
        return int(payments), int(codes), int(charges), int(
            session.scalar(select(func.count()).select_from(IdempotencyRecord)))

    return world.database.transact(work, readonly=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_under_load_loses_no_receipted_charge_and_charges_nothing_twice(
    backend: str, tmp_path: Path,
) -> None:
    with served_by_a_process(backend, tmp_path, durable=True) as (server, world):
        merchant = world.merchant("Crash Test Wholesale")
        tills = [world.terminal(merchant, name=f"till {i}") for i in range(LOAD_TERMINALS)]
        cards = [world.card(topup=TOPUP) for _ in range(LOAD_TERMINALS * CARDS_PER_TERMINAL)]
        load = Load()
        threads = [
            threading.Thread(target=_terminal_loop, args=(
                world, till, FreshCodes(cards[i::LOAD_TERMINALS]), load, 100 + i))
            for i, till in enumerate(tills)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(load.receipts) < RECEIPTS_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # in the middle of the load
        for thread in threads:
            thread.join(timeout=30)
        load.stop.set()
        assert len(load.receipts) >= RECEIPTS_BEFORE_KILL

        server.start()
        trust_list = world.trust_list()
        stored = _stored_payments(world)
        for payment_id, answer in load.receipts.items():
            assert stored.get(payment_id) == answer["amount_fen"], payment_id
            assert verify_receipt(answer["receipt"],
                                  trust_list=trust_list).payment_id == payment_id
        check = world.ledger()
        assert check.ok, check
        payments, codes, charges, _ = _ledger_facts(world)
        assert payments == codes == charges >= len(load.receipts)

        # The requests the crash left unanswered: retried with their keys, at most once.
        for till, code, amount, key in load.unanswered:
            first = world.charge(till, code, amount, key=key)
            again = world.charge(till, code, amount, key=key)
            assert first.status_code in (201, 402, 409, 422), first.text
            if first.status_code == 201:
                assert again.json()["payment_id"] == first.json()["payment_id"]
        check = world.ledger()
        assert check.ok, check
        payments, codes, charges, _ = _ledger_facts(world)
        assert payments == codes == charges
        charged = _payments_by_card(world)
        for card in cards:
            assert world.balance(card.card_number) == TOPUP - charged.get(card.card_number, 0)
