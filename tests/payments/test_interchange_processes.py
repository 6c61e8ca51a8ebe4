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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from federation_kit import NATIONAL_FINGERPRINT, federation, federation_jwt, hangzhou, yiwu
from kit.clock import RealClock
from kit.postgres import conninfo, pg_create, pg_drop, pg_url, unique_name
from kit.processes import CardsvcServer
from payments_kit import PASSPHRASE, PayCard, PayWorld
from sqlalchemy import select

from cardsvc.db import Database
from cardsvc.federation import accept_federation_list
from cardsvc.models import InterchangeKeyRecord
from cardsvc.payments._paycode import authority_trust
from cardsvc.payments.interchange_models import ForwardedCharge, InterchangeCharge
from cardsvc.services.bootstrap import initialise, open_keyring
from cardsvc.settings import get_settings
from schemas import IssuerKey, KeyState
from schemas.federation import SequenceBlock

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

YW, HZ = "CN-YW", "CN-HZ"
DAY = 86_400


@dataclass
class City:
    code: str
    db_name: str
    env: dict[str, str]
    data_dir: Path
    server: CardsvcServer
    world: PayWorld

    def restart(self) -> None:
        self.server = CardsvcServer(self.data_dir, self.env, port=self.server.port).start()


def _wait(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _start(tmp: Path, code: str, prefix: str) -> tuple[City, bytes, IssuerKey]:
    name = unique_name(f"ic_{prefix}")
    pg_create(name)
    url = pg_url(name)
    data_dir = tmp / code / "data"
    settings = get_settings(data_dir=data_dir, database_url=url, key_passphrase=PASSPHRASE,
                            issuer=code, kid_prefix=prefix)
    started = datetime.now(UTC) - timedelta(minutes=1)
    result = initialise(settings, now=started)
    assert result.admin_token is not None
    keyring = open_keyring(settings)
    link_key = keyring.generate(f"{prefix}i1")
    database = Database(url, pool_size=2)
    database.transact(lambda session: session.add(InterchangeKeyRecord(
        kid=link_key.kid, seq=1, public_key=link_key.public_key, state="active",
        valid_from=int(started.timestamp()), valid_until=None, created_at=started)))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CARDSVC_")}
    env.update(CARDSVC_DATABASE_URL=url, CARDSVC_KEY_PASSPHRASE=PASSPHRASE,
               CARDSVC_ISSUER=code, CARDSVC_KID_PREFIX=prefix,
               CARDSVC_FEDERATION_ROOT=NATIONAL_FINGERPRINT,
               CARDSVC_INTERCHANGE_TIMEOUT_SECONDS="2", CARDSVC_INTERCHANGE_ATTEMPTS="2",
               CARDSVC_INTERCHANGE_RECOVERY_SECONDS="1")
    server = CardsvcServer(data_dir, env).start()
    http = httpx.Client(base_url=server.url, timeout=30)
    world = PayWorld("postgresql", settings, database, server.url, RealClock(),
                     result.admin_token, result.root_fingerprint, None, http)
    ik = IssuerKey(link_key.kid, link_key.public_key, KeyState.ACTIVE,
                   int(started.timestamp()))
    return City(code, name, env, data_dir, server, world), keyring.root().public_key, ik


@pytest.fixture
def cities(tmp_path: Path) -> Iterator[tuple[City, City]]:
    started: list[City] = []
    try:
        yw, yw_root, yw_ik = _start(tmp_path, YW, "k")
        started.append(yw)
        hz, hz_root, hz_ik = _start(tmp_path, HZ, "h")
        started.append(hz)
        now = int(time.time())

        def keys(city: City) -> tuple[IssuerKey, ...]:
            return city.world.database.transact(lambda session: authority_trust(
                session, issuer=city.code, now=now).keys, readonly=True)

        claims = federation(
            replace(yiwu(), root_key=yw_root, keys=keys(yw), interchange_keys=(yw_ik,),
                    api_url=yw.server.url, status_url=yw.server.url + "/v1/status-lists",
                    sequence_blocks=(SequenceBlock(1, 100),)),
            replace(hangzhou(), root_key=hz_root, keys=keys(hz), interchange_keys=(hz_ik,),
                    api_url=hz.server.url, status_url=hz.server.url + "/v1/status-lists",
                    sequence_blocks=(SequenceBlock(101, 200),)),
            issued_at=now - 60, expires_at=now + DAY)
        jwt = federation_jwt(claims)
        for city in (yw, hz):
            city.world.database.transact(lambda session: accept_federation_list(
                session, unverified_jwt=jwt, pinned_root=NATIONAL_FINGERPRINT, now=now))
        yield yw, hz
        for city in (yw, hz):
            check = city.world.ledger()
            assert check.ok, (city.code, check)
    finally:
        for city in started:
            city.server.stop()
            city.world.http.close()
            city.world.database.dispose()
            pg_drop(city.db_name)


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
        except Exception as error:  # noqa: BLE001 - the caller looks at what came back
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
