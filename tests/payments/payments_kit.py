"""Test kit for payments: an authority served by uvicorn on 127.0.0.1 (a real HTTP server
in a thread, so concurrent terminals are concurrent requests), over a throwaway SQLite
or PostgreSQL database, with a fixed clock; helpers that play cashier, supervisor,
registrar and the holder's phone (pay codes with distinct proof times).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from kit.clock import NOW, Clock, RealClock
from kit.names import in_letters
from kit.net import serving
from kit.postgres import PG_ADMIN, pg_create, pg_drop, pg_url
from kit.processes import CardsvcServer
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardsvc.api import create_app
from cardsvc.db import Database
from cardsvc.payments.ledger import LedgerCheck, check_ledger
from cardsvc.payments.merchants import register_terminal
from cardsvc.services.audit import Actor
from cardsvc.services.bootstrap import initialise
from cardsvc.settings import Settings, get_settings
from keys import Ed25519Signer, sign_presentation
from schemas import b64url_encode
from schemas.provisioning import provisioning_proof_message
from verifier import TrustedSet

INIT_TIME = NOW - timedelta(days=1)
PASSPHRASE = "payments-test-pass"
_serial = itertools.count(1)
# For tests whose subject does not depend on the database (request validation, the
# terminal's own command line): one backend keeps the suite inside its time budget.
SQLITE_ONLY = pytest.mark.parametrize("_world", ["sqlite"], indirect=True)


# --- databases ---------------------------------------------------------------------------

@contextmanager
def database_url(backend: str, directory: Path, purpose: str, *,
                 durable: bool = True) -> Iterator[str]:
    """A new empty database: SQLite in ``directory`` or a uniquely named PostgreSQL one."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'cardsvc.db'}"
        return
    name = f"fmc_{purpose}_{secrets.token_hex(6)}"
    pg_create(name)
    if not durable:
        # Commits visible at once but not flushed to disk before the answer: the server
        # process is never killed in these tests (the crash tests keep this on).
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')  # type: ignore[arg-type]
    try:
        yield pg_url(name)
    finally:
        pg_drop(name)


def initialised(data_dir: Path, url: str, now: datetime = INIT_TIME) -> tuple[Settings, str, str]:
    """Init an authority; returns (settings, admin token, root fingerprint)."""
    settings = get_settings(data_dir=data_dir, database_url=url, key_passphrase=PASSPHRASE)
    result = initialise(settings, now=now)
    assert result.admin_token is not None
    return settings, result.admin_token, result.root_fingerprint


# --- a server in a thread ------------------------------------------------------------------

class SlowReplies:
    """ASGI wrapper: holds chosen answers back after the app has finished (a slow network
    on the way back), so a client times out on a request the server has completed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.delay_seconds = 0.0
        self.completed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        delay = self.delay_seconds

        async def delayed_send(message: Message) -> None:
            if message["type"] == "http.response.start" and delay:
                await asyncio.sleep(delay)
            await send(message)

        await self.app(scope, receive, delayed_send if delay else send)
        self.completed += 1


# --- the actors ------------------------------------------------------------------------------

def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class PayCard:
    """A provisioned card: its number, the phone's device key and the pay credential."""

    card_number: str
    device: Ed25519Signer
    pay_credential: str
    bundle: dict[str, Any]
    _offsets: Iterator[int] = field(default_factory=itertools.count)

    def pay_code(self, proof_time: int) -> str:
        return sign_presentation(self.pay_credential, self.device, proof_time=proof_time,
                                 purpose="pay")


@dataclass
class TerminalHandle:
    terminal_id: int
    merchant_id: int
    token: str
    officer_id: int

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class PayWorld:
    """One authority over one database, shared by the tests of a session."""

    backend: str
    settings: Settings
    database: Database
    url: str
    clock: Clock
    admin_token: str
    root_fingerprint: str
    slow: SlowReplies | None
    http: httpx.Client
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.admin_token)

    def as_role(self, role: str) -> dict[str, str]:
        """An officer holding only ``role`` (one per session)."""
        if role not in self.tokens:
            answer = self.http.post("/v1/officers", headers=self.admin,
                                    json={"name": f"{role} officer", "roles": [role]})
            assert answer.status_code == 201, answer.text
            self.tokens[role] = answer.json()["token"]
        return bearer(self.tokens[role])

    # -- merchants and terminals

    def merchant(self, name: str = "Yiwu Beads Co.") -> int:
        answer = self.http.post("/v1/merchants", headers=self.admin, json={"name": name})
        assert answer.status_code == 201, answer.text
        return int(answer.json()["merchant_id"])

    def terminal(self, merchant_id: int | None = None, *, floor: int = 20_000,
                 name: str = "till") -> TerminalHandle:
        merchant_id = merchant_id or self.merchant()
        answer = self.http.post(f"/v1/merchants/{merchant_id}/terminals", headers=self.admin,
                                json={"name": name, "offline_floor_fen": floor})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        return TerminalHandle(body["terminal_id"], merchant_id, body["token"],
                              body["officer_id"])

    def terminals(self, merchant_id: int, count: int) -> list[TerminalHandle]:
        """Many terminals in one transaction (through the service, not one call each)."""

        def work(session: Session) -> list[TerminalHandle]:
            made = []
            for i in range(count):
                terminal, token = register_terminal(
                    session, merchant_id=merchant_id, name=f"till {i}",
                    offline_floor_fen=20_000, actor=Actor.cli(), now=self.clock())
                made.append(TerminalHandle(terminal.id, merchant_id, token,
                                           terminal.officer_id))
            return made

        return self.database.transact(work)

    # -- cards

    def card(self, *, offline_limit_fen: int = 50_000, topup: int = 0,
             entitlements: tuple[str, ...] = ("payment",)) -> PayCard:
        n = next(_serial)
        person = self.http.post("/v1/persons", headers=self.admin, json={
            "surname": f"BUYER{in_letters(n)}", "given_names": "Ade", "nationality": "NGA",
            "birth_date": "1984-05-06", "sex": "F", "confirm_new": True,
            "passport": {"number": f"PY{secrets.token_hex(4).upper()}", "country": "NGA",
                         "expires": "2032-01-01"}})
        assert person.status_code == 201, person.text
        issued = self.http.post("/v1/cards", headers=self.admin, json={
            "foreigner_code": person.json()["foreigner_code"],
            "entitlements": list(entitlements), "valid_until": "2030-12-31",
            "offline_limit_fen": offline_limit_fen})
        assert issued.status_code == 201, issued.text
        code = issued.json()["provisioning_code"]
        device = Ed25519Signer(secrets.token_bytes(32), kid="device")
        proof = device.sign(provisioning_proof_message(code, device.public_key))
        bundle = self.http.post("/v1/provision", json={
            "provisioning_code": code, "device_key": b64url_encode(device.public_key),
            "proof": b64url_encode(proof)})
        assert bundle.status_code == 200, bundle.text
        body = bundle.json()
        card = PayCard(body["card_number"], device, body["credentials"].get("pay", ""), body)
        if topup:
            self.topup(card.card_number, topup)
        return card

    def pay_code(self, card: PayCard) -> str:
        """A fresh pay code: each call a new proof time at or before the clock."""
        return card.pay_code(self.clock.epoch - next(card._offsets))

    def topup(self, card_number: str, amount_fen: int, key: str | None = None,
              expect: int = 201) -> dict[str, Any]:
        answer = self.http.post(f"/v1/accounts/{card_number}/topups",
                                headers=self.as_role("cashier"),
                                json={"amount_fen": amount_fen,
                                      "idempotency_key": key or secrets.token_hex(8)})
        assert answer.status_code == expect, answer.text
        return dict(answer.json())

    def account(self, card_number: str) -> dict[str, Any]:
        answer = self.http.get(f"/v1/accounts/{card_number}", headers=self.as_role("auditor"),
                               params={"limit": 500})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def balance(self, card_number: str) -> int:
        return int(self.account(card_number)["balance_fen"])

    def charge(self, terminal: TerminalHandle, pay_code: str, amount_fen: int,
               key: str | None = None, client: httpx.Client | None = None) -> httpx.Response:
        return (client or self.http).post(
            "/v1/payments", headers=terminal.headers,
            json={"pay_code": pay_code, "amount_fen": amount_fen,
                  "idempotency_key": key or secrets.token_hex(8)})

    def card_state(self, card_number: str) -> str:
        answer = self.http.get(f"/v1/cards/{card_number}", headers=self.admin)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["state"])

    def trust_list(self) -> Any:
        trusted = TrustedSet(root_fingerprint=self.root_fingerprint)
        return trusted.update_trust_list(self.http.get("/v1/trust-list").text,
                                         now=self.clock.epoch)

    def ledger(self) -> LedgerCheck:
        return self.database.transact(check_ledger, readonly=True)

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)


def _no_fsync_per_commit(database: Database) -> None:
    """WAL with synchronous NORMAL for the in-process test server (after cardsvc's own
    connect hook): commits survive a crashed process, only not a power cut."""

    @event.listens_for(database.engine, "connect")
    def _relax(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")


@contextmanager
def pay_world(backend: str, directory: Path, *, charges_on_loop: bool = True,
              db_pool_size: int | None = None) -> Iterator[PayWorld]:
    """``charges_on_loop=False``: every charge takes the general path (on PostgreSQL an
    accepted one is otherwise made on the event loop, cardsvc/payments/_loop_charge.py,
    on at most ``db_pool_size`` connections)."""
    with database_url(backend, directory, "payments", durable=False) as url:
        settings, admin_token, fingerprint = initialised(directory / "data", url)
        settings = get_settings(data_dir=directory / "data", database_url=url,
                                key_passphrase=PASSPHRASE, public_url="http://testserver",
                                charges_on_loop=charges_on_loop, db_pool_size=db_pool_size)
        database = Database.from_settings(settings, pool_size=16)
        if backend == "sqlite":
            _no_fsync_per_commit(database)
        clock = Clock()
        slow = SlowReplies(create_app(settings, database=database, clock=clock))
        try:
            with serving(slow) as url_served, httpx.Client(base_url=url_served,
                                                          timeout=30) as http:
                yield PayWorld(backend, settings, database, url_served, clock, admin_token,
                               fingerprint, slow, http)
        finally:
            database.dispose()


@contextmanager
def statements_sent(database: Database) -> Iterator[list[str]]:
    """The SQL texts the engine's connections send meanwhile (SQLAlchemy's, not a driver
    connection's of its own)."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(database.engine, "before_cursor_execute", count)


# --- a real server process -----------------------------------------------------------

class AuthorityProcess(CardsvcServer):
    """``cardsvc serve`` in its own process, on the given database."""

    def __init__(self, data_dir: Path, database: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
        env.update(CARDSVC_DATABASE_URL=database, CARDSVC_KEY_PASSPHRASE=PASSPHRASE)
        super().__init__(data_dir, env)


@contextmanager
def served_by_a_process(
    backend: str, directory: Path, *, durable: bool
) -> Iterator[tuple[AuthorityProcess, PayWorld]]:
    """``cardsvc serve`` over a new database, with a PayWorld talking to it (wall clock)."""
    with database_url(backend, directory, "payproc", durable=durable) as url:
        settings, admin, fingerprint = initialised(
            directory / "data", url, now=datetime.now(UTC) - timedelta(minutes=1))
        server = AuthorityProcess(directory / "data", url)
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
    """Pay codes with distinct proof times near the wall clock, rotating over cards.

    ``used`` may be shared between instances that never hold the same card at once."""

    def __init__(self, cards: list[PayCard], used: set[tuple[str, int]] | None = None) -> None:
        self.cards = cards
        self.used: set[tuple[str, int]] = set() if used is None else used
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
