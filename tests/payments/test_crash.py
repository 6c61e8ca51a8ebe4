"""The authority killed with SIGKILL under a payment load (a real ``cardsvc serve`` process,
durable database settings, the wall clock). After a restart: every charge a terminal
got a receipt for is in the ledger, no pay code is charged twice, the ledger sums to
zero, and retrying the requests left without an answer charges each at most once."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from payments_kit import (
    PASSPHRASE,
    PayCard,
    PayWorld,
    RealClock,
    TerminalHandle,
    database_url,
    initialised,
)
from sqlalchemy import func, select

from cardsvc.db import Database
from cardsvc.payments.models import IdempotencyRecord, LedgerTransaction, Payment
from verifier.terminal import verify_receipt

pytestmark = pytest.mark.e2e

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
LOAD_TERMINALS = 6
CARDS_PER_TERMINAL = 2
RECEIPTS_BEFORE_KILL = 40
TOPUP = 1_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``cardsvc serve`` in its own process."""

    def __init__(self, data_dir: Path, database: str) -> None:
        self.data_dir, self.port = data_dir, _free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
        self.env.update(CARDSVC_DATABASE_URL=database, CARDSVC_KEY_PASSPHRASE=PASSPHRASE)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cardsvc", "serve", "--data-dir", str(self.data_dir),
             "--port", str(self.port)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the server exited"
            try:
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("the server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


@contextmanager
def crashable(backend: str, directory: Path) -> Iterator[tuple[Server, PayWorld]]:
    with database_url(backend, directory, "paycrash") as url:
        settings, admin, fingerprint = initialised(
            directory / "data", url, now=datetime.now(UTC) - timedelta(minutes=1))
        server = Server(directory / "data", url)
        database = Database(url, pool_size=2)
        try:
            server.start()
            with httpx.Client(base_url=server.url, timeout=30) as http:
                yield server, PayWorld(backend, settings, database, server.url, RealClock(),
                                       admin, fingerprint, None, http)
        finally:
            server.stop()
            database.dispose()


class FreshCodes:
    """Pay codes with distinct proof times near the wall clock, rotating over cards."""

    def __init__(self, cards: list[PayCard]) -> None:
        self.cards = cards
        self.used: set[tuple[str, int]] = set()
        self.turn = 0

    def next(self) -> tuple[PayCard, str]:
        now = int(time.time())
        for _ in range(len(self.cards)):
            card = self.cards[self.turn % len(self.cards)]
            self.turn += 1
            for proof_time in range(now, now - 45, -1):
                if (card.card_number, proof_time) not in self.used:
                    self.used.add((card.card_number, proof_time))
                    return card, card.pay_code(proof_time)
        raise AssertionError("out of fresh pay codes")


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
    with crashable(backend, tmp_path) as (server, world):
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
