"""Payments between cities with real processes: Yiwu and Hangzhou each run ``cardsvc
serve`` on their own PostgreSQL database, holding one national federation list; their
signed requests go over real HTTP. A process is SIGKILLed in the middle of a cross-city
charge (its leg B held inside Hangzhou's transaction by a row lock the test takes):

- Hangzhou killed mid-transaction: nothing was committed there; Yiwu answers 503
  ISSUER_UNREACHABLE and, once Hangzhou is back, its recovery loop voids the forward;
- Yiwu killed with leg B in flight: Hangzhou commits the charge; the restarted Yiwu's
  recovery loop resumes the outbox row (same G, Hangzhou replays) and the terminal's
  retry gets Hangzhou's receipt; charged exactly once.

Both ledgers sum to zero afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from interchange_processes_kit import HZ, YW, City, two_city_processes
from kit.postgres import conninfo
from payments_kit import PayCard
from sqlalchemy import select

from cardsvc.payments.interchange_models import ForwardedCharge, InterchangeCharge

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]



def _wait(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


@pytest.fixture
def cities(tmp_path: Path) -> Iterator[tuple[City, City]]:
    with two_city_processes(tmp_path) as both:
        yield both


class RowLock:
    """Holds the card's balance row at Hangzhou (SELECT ... FOR UPDATE), so a charge of
    it waits inside Hangzhou's transaction until released."""

    def __init__(self, city: City, card: PayCard) -> None:
        self.conn = psycopg.connect(conninfo(city.db_name))
        self.conn.execute(
            "SELECT 1 FROM card_balances WHERE card_id = "
            "(SELECT id FROM cards WHERE card_number = %s) FOR UPDATE", (card.card_number,))

    def someone_waits(self) -> bool:
        with psycopg.connect(self.conn.info.dsn, autocommit=True) as other:
            row = other.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                "wait_event_type = 'Lock' AND datname = current_database()"
                                ).fetchone()
        return bool(row and row[0])

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def _in_background(work: Callable[[], object]) -> list[object]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(work())
        except Exception as error:
            out.append(error)

    threading.Thread(target=run, daemon=True).start()
    return out


def _forward_state(city: City, g: str) -> str | None:
    return city.world.database.transact(lambda session: session.scalar(
        select(ForwardedCharge.state).where(ForwardedCharge.g == g)), readonly=True)


def test_hangzhou_killed_mid_transaction_nothing_charged_and_the_forward_is_voided(
        cities: tuple[City, City]) -> None:
    yw, hz = cities
    card = hz.world.card(topup=10_000)
    till = yw.world.terminal()
    lock = RowLock(hz, card)
    answer = _in_background(lambda: yw.world.charge(till, hz.world.pay_code(card), 1_000,
                                                    key="k-kill-hz"))
    try:
        _wait(lock.someone_waits)
        hz.server.kill()  # inside Hangzhou's transaction, before it could commit
    finally:
        lock.release()
    _wait(lambda: bool(answer))
    response = answer[0]
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 503, response.text
    assert (response.json()["code"], response.json()["offline_allowed"]) == (
        "ISSUER_UNREACHABLE", True)
    g = f"{YW}:{till.terminal_id}:k-kill-hz"
    hz.restart()
    _wait(lambda: _forward_state(yw, g) == "void")  # Yiwu's recovery loop
    assert hz.world.database.transact(lambda session: session.get_one(
        InterchangeCharge, (YW, g)).state, readonly=True) == "void"
    assert hz.world.balance(card.card_number) == 10_000
    again = yw.world.charge(till, hz.world.pay_code(card), 1_000)
    assert again.status_code == 201, again.text
    assert hz.world.balance(card.card_number) == 9_000


def test_yiwu_killed_with_leg_b_in_flight_recovery_completes_it_exactly_once(
        cities: tuple[City, City]) -> None:
    yw, hz = cities
    card = hz.world.card(topup=10_000)
    till = yw.world.terminal()
    code = hz.world.pay_code(card)
    lock = RowLock(hz, card)
    answer = _in_background(lambda: yw.world.charge(till, code, 1_500, key="k-kill-yw"))
    try:
        _wait(lock.someone_waits)
        yw.server.kill()  # the outbox row is committed, leg B is inside Hangzhou
    finally:
        lock.release()
    _wait(lambda: bool(answer))
    assert not isinstance(answer[0], httpx.Response)  # the till got no answer
    g = f"{YW}:{till.terminal_id}:k-kill-yw"
    assert _forward_state(yw, g) == "pending"
    _wait(lambda: hz.world.balance(card.card_number) == 8_500)  # Hangzhou committed
    yw.restart()
    _wait(lambda: _forward_state(yw, g) == "done")  # resumed: same G, Hangzhou replays
    retry = yw.world.charge(till, code, 1_500, key="k-kill-yw")
    assert retry.status_code == 201, retry.text
    assert retry.json()["issuer"] == HZ
    assert hz.world.balance(card.card_number) == 8_500  # exactly once
