"""P11.1: the accepted charge made on the event loop in two statements (PostgreSQL), and
what it must not break. It holds no lock between its read and its write, so each thing
another process can change in between is changed there, and the charge must then end as
the general path would have ended it: charged once, or refused with the general path's
code, never a lost update, never a charge past a revocation or a deactivated token."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from one_use_kit import OneUse, refill
from payments_kit import PayCard, PayWorld, TerminalHandle, pay_world, statements_sent
from prometheus_client import REGISTRY
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.models import Officer, PayHandle, StatusEntry, StatusListRecord
from cardsvc.payments._loop_charge import LoopCharges
from cardsvc.payments.charges import PaymentContext, charge_online, top_up
from cardsvc.payments.models import Terminal
from cardsvc.services.audit import Actor
from cardsvc.services.bootstrap import open_keyring
from cardsvc.services.cards import change_card_state
from cardsvc.services.officers import deactivate_officer
from schemas import b64url_decode
from verifier.receipts import pay_code_key, verify_receipt

pytestmark = pytest.mark.postgres


def _on_loop() -> float:
    return REGISTRY.get_sample_value("fmc_charges_on_loop_total") or 0.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayWorld]:
    with pay_world("postgresql", tmp_path_factory.mktemp("loop")) as world:
        yield world


@pytest.fixture(autouse=True)
def _ledger_checked(world: PayWorld) -> Iterator[None]:
    yield
    check = world.ledger()
    assert check.ok, check


def test_an_accepted_charge_is_made_on_the_loop_with_no_orm_statement(world: PayWorld) -> None:
    card = world.card(topup=10_000)
    till = world.terminal()
    assert world.charge(till, world.pay_code(card), 100).status_code == 201  # warm
    before = _on_loop()
    pay_code = world.pay_code(card)
    with statements_sent(world.database) as sent:
        answer = world.charge(till, pay_code, 250, key="loop-1")
    assert answer.status_code == 201, answer.text
    assert _on_loop() == before + 1
    assert sent == []  # no pooled session, no pre-ping, no BEGIN/COMMIT
    scraped = world.http.get("/metrics").text
    assert f"fmc_charges_on_loop_total {before + 1}" in scraped
    body = answer.json()
    assert (body["status"], body["amount_fen"], body["balance_fen"]) == ("accepted", 250, 9_650)
    assert (body["terminal_id"], body["merchant_id"]) == (till.terminal_id, till.merchant_id)
    receipt = verify_receipt(body["receipt"], trust_list=world.trust_list())
    assert (receipt.payment_id, receipt.amount_fen, receipt.balance_fen) == (
        body["payment_id"], 250, 9_650)
    assert receipt.pay_code == pay_code_key(pay_code)
    replay = world.charge(till, pay_code, 250, key="loop-1")
    assert replay.status_code == 201 and replay.headers.get("idempotent-replayed") == "true"
    assert replay.json() == body  # the stored answer, written in the same statement
    assert world.balance(card.card_number) == 9_650


Meanwhile = Callable[[Callable[[], None]], list[bool]]


@pytest.fixture
def meanwhile(world: PayWorld, monkeypatch: pytest.MonkeyPatch) -> Meanwhile:
    """Run a change of another process between the loop's read and its write (once);
    the list it returns holds True once the change has run."""
    warm = world.card(topup=100)  # the trust list held: the next charge is made on the loop
    assert world.charge(world.terminal(), world.pay_code(warm), 100).status_code == 201

    def between(change: Callable[[], None]) -> list[bool]:
        accepted = LoopCharges._accepted
        done: list[bool] = []

        def changed_first(self: LoopCharges, *args: Any, **kwargs: Any) -> Any:
            if not done:
                done.append(True)
                change()
            return accepted(self, *args, **kwargs)

        monkeypatch.setattr(LoopCharges, "_accepted", changed_first)
        return done

    return between


def _elsewhere(world: PayWorld, work: Callable[[Session], Any]) -> Any:
    database = Database.from_settings(world.settings, pool_size=1)  # "another process"
    try:
        return database.transact(work)
    finally:
        database.dispose()


def _other_charge(world: PayWorld, till: TerminalHandle, pay_code: str, key: str) -> None:
    keyring = open_keyring(world.settings)
    _elsewhere(world, lambda session: charge_online(
        session, pay_code=pay_code, amount_fen=100, idempotency_key=key,
        terminal=session.get_one(Terminal, till.terminal_id),
        ctx=PaymentContext(keyring, world.settings.issuer), now=world.clock()))


def _first_officer(session: Session) -> Officer:
    officer = session.scalar(select(Officer).order_by(Officer.id).limit(1))
    assert officer is not None
    return officer


# (what another process does between the read and the write, the answer's status, its
# code, the balance after: the card starts with 10,000 and this charge is 1,000)
RACES: list[tuple[str, Callable[[PayWorld, PayCard, TerminalHandle, str], None], int,
                  str | None, int]] = [
    ("a top-up of the same card",
     lambda world, card, _till, _code: _elsewhere(world, lambda session: top_up(
         session, card_number=card.card_number, amount_fen=500,
         idempotency_key=secrets.token_hex(6), cashier=_first_officer(session), now=world.clock())),
     201, None, 9_500),
    ("the card revoked",
     lambda world, card, _till, _code: _elsewhere(world, lambda session: change_card_state(
         session, card_number=card.card_number, action="revoke", reason="stolen",
         actor=Actor.cli(), now=world.clock())),
     422, "REVOKED", 10_000),
    ("the terminal's token deactivated",
     lambda world, _card, till, _code: _elsewhere(world, lambda session: deactivate_officer(
         session, officer_id=till.officer_id, actor=Actor.cli(), now=world.clock())),
     401, "UNAUTHENTICATED", 10_000),
    ("the trust state's version moved on (a rotation elsewhere)",
     lambda world, _card, _till, _code: _elsewhere(world, lambda session: session.execute(
         text("UPDATE trust_state SET version = version + 1 WHERE id = 1"))),
     201, None, 9_000),
    ("the same pay code charged by another process",
     lambda world, _card, till, code: _other_charge(world, till, code, "other-key"),
     409, "PAY_CODE_USED", 9_900),
]


@pytest.mark.parametrize(("what", "change", "status", "code", "balance_after"), RACES,
                         ids=[race[0] for race in RACES])
def test_a_change_between_the_read_and_the_write_ends_as_the_general_path_would(
    world: PayWorld, meanwhile: Meanwhile, what: str,
    change: Callable[[PayWorld, PayCard, TerminalHandle, str], None], status: int,
    code: str | None, balance_after: int,
) -> None:
    card = world.card(topup=10_000)
    till = world.terminal()
    pay_code = world.pay_code(card)
    changed = meanwhile(lambda: change(world, card, till, pay_code))
    before = _on_loop()
    answer = world.charge(till, pay_code, 1_000)
    assert changed == [True]
    assert answer.status_code == status, (what, answer.text)
    if code is not None:
        assert answer.json()["code"] == code
    assert _on_loop() == before  # the loop wrote nothing; the general path answered
    assert world.balance(card.card_number) == balance_after


def test_the_same_key_taken_meanwhile_for_another_card_is_refused(
    world: PayWorld, meanwhile: Meanwhile,
) -> None:
    """The balance compare passes (another card's), the idempotency record's key does not:
    the whole statement fails and the general path refuses the reused key."""
    card, other = world.card(topup=10_000), world.card(topup=10_000)
    till = world.terminal()
    changed = meanwhile(lambda: _other_charge(world, till, world.pay_code(other), "shared-key"))
    answer = world.charge(till, world.pay_code(card), 1_000, key="shared-key")
    assert changed == [True]
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert world.balance(card.card_number) == 10_000
    assert world.balance(other.card_number) == 9_900


def test_a_pooled_connection_killed_is_replaced_and_the_charge_made_on_the_loop(
    world: PayWorld,
) -> None:
    """After a database restart or failover the idle connections are dead: the read (it
    changes nothing) runs again on a new connection, and the charge is not lost."""
    card = world.card(topup=10_000)
    till = world.terminal()
    assert world.charge(till, world.pay_code(card), 100).status_code == 201  # pooled now
    url = world.database.engine.url.set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    assert killed is not None and killed[0] >= 1
    before = _on_loop()
    answer = world.charge(till, world.pay_code(card), 100)
    assert answer.status_code == 201, answer.text
    assert _on_loop() == before + 1
    assert world.balance(card.card_number) == 9_800


def test_an_unreachable_database_leaves_the_charge_to_the_general_path_and_rests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No connection: the general path answers (here it can reach the database; when it
    cannot, it answers 503), and the loop does not try again for every charge. (A world
    of its own: the loop's rest would reach into the next test.)"""
    with pay_world("postgresql", tmp_path) as world:
        _unreachable(world, monkeypatch)


def _unreachable(world: PayWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    card = world.card(topup=10_000)
    till = world.terminal()
    assert world.charge(till, world.pay_code(card), 100).status_code == 201
    attempts: list[dict[str, Any]] = []

    async def refused(**kwargs: Any) -> Any:
        attempts.append(kwargs)
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", refused)
    # Every idle connection dead: the loop's next read needs a new one.
    url = world.database.engine.url.set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = current_database() AND pid <> pg_backend_pid()")
    before = _on_loop()
    for _ in range(3):
        answer = world.charge(till, world.pay_code(card), 100)
        assert answer.status_code == 201, answer.text
    assert _on_loop() == before
    assert len(attempts) == 1  # then it rests
    assert world.balance(card.card_number) == 9_600


def test_a_refused_code_is_left_to_the_general_path(world: PayWorld) -> None:
    """Refusals keep the general path's codes (and its "seen online" record)."""
    card = world.card(topup=500)
    till = world.terminal()
    cashier = world.as_role("cashier")
    before = _on_loop()
    cases = [
        (till.headers, world.pay_code(card), 1_000, 402, "INSUFFICIENT_FUNDS"),
        (cashier, world.pay_code(card), 100, 403, "FORBIDDEN"),
        ({"Authorization": "Bearer " + secrets.token_urlsafe(32)}, world.pay_code(card), 100,
         401, "UNAUTHENTICATED"),
        (till.headers, world.pay_code(card)[:-4] + "AAAA", 100, 422, None),
    ]
    for headers, pay_code, amount, status, code in cases:
        answer = world.http.post("/v1/payments", headers=headers, json={
            "pay_code": pay_code, "amount_fen": amount,
            "idempotency_key": secrets.token_hex(8)})
        assert answer.status_code == status, (status, answer.text)
        if code is not None:
            assert answer.json()["code"] == code
    assert _on_loop() == before
    assert world.balance(card.card_number) == 500


# -- one-use codes (P13.3) ------------------------------------------------------------------

def _handle_row(world: PayWorld, one: OneUse) -> tuple[Any, int, int]:
    """(the handle's row, its status entry's status, its list's revision)."""
    handle = b64url_decode(one.claims["ph"]).hex()

    def read(session: Session) -> tuple[Any, int, int]:
        row = session.get_one(PayHandle, handle)
        status = session.scalar(select(StatusEntry.status).where(
            StatusEntry.list_id == row.status_list_id, StatusEntry.idx == row.status_index))
        revision = session.scalar(select(StatusListRecord.revision).where(
            StatusListRecord.id == row.status_list_id))
        assert status is not None and revision is not None
        return row, status, revision

    return world.database.transact(read, readonly=True)  # type: ignore[no-any-return]


def test_a_one_use_code_is_charged_on_the_loop_its_handle_used_and_its_entry_invalid(
    world: PayWorld,
) -> None:
    card = world.card(topup=10_000)
    till = world.terminal()
    assert world.charge(till, world.pay_code(card), 100).status_code == 201  # warm
    [one] = refill(world, card, 1)
    _, status_before, revision_before = _handle_row(world, one)
    before = _on_loop()
    paid = world.charge(till, one.code(world.clock.epoch), 1_250)
    assert paid.status_code == 201, paid.text
    assert _on_loop() == before + 1
    body = paid.json()
    assert not {"card_number", "balance_fen", "overdraft_fen"} & body.keys()
    assert body["pay_handle"] == one.claims["ph"]
    receipt = verify_receipt(body["receipt"], trust_list=world.trust_list())
    assert (receipt.card_number, receipt.balance_fen, receipt.pay_handle) == (
        None, None, one.claims["ph"])
    row, status, revision = _handle_row(world, one)
    assert row.payment_id == body["payment_id"] and row.used_at is not None
    assert (status_before, status) == (0, 1)  # a till that syncs refuses it offline
    assert revision == revision_before + 1
    again = world.charge(till, one.code(world.clock.epoch - 1), 100)  # another proof time
    assert (again.status_code, again.json()["code"]) == (409, "PAY_CODE_USED")
    assert world.balance(card.card_number) == 10_000 - 100 - 1_250


def test_a_one_use_handle_used_meanwhile_by_another_code_is_charged_once(
    world: PayWorld, meanwhile: Meanwhile,
) -> None:
    """Two codes of one credential (two proof times: two replay keys) at two tills: the
    other till's charge lands between the read and the write. One charge, one 409."""
    card = world.card(topup=10_000)
    till, other_till = world.terminal(), world.terminal()
    [one] = refill(world, card, 1)
    changed = meanwhile(lambda: _other_charge(world, other_till, one.code(world.clock.epoch - 2),
                                              "other-till"))
    answer = world.charge(till, one.code(world.clock.epoch), 1_000)
    assert changed == [True]
    assert (answer.status_code, answer.json()["code"]) == (409, "PAY_CODE_USED")
    assert world.balance(card.card_number) == 9_900  # the other till's 100 only


def test_a_one_use_code_of_a_card_revoked_meanwhile_is_refused(
    world: PayWorld, meanwhile: Meanwhile,
) -> None:
    card = world.card(topup=10_000)
    till = world.terminal()
    [one] = refill(world, card, 1)
    changed = meanwhile(lambda: _elsewhere(world, lambda session: change_card_state(
        session, card_number=card.card_number, action="revoke", reason="stolen",
        actor=Actor.cli(), now=world.clock())))
    answer = world.charge(till, one.code(world.clock.epoch), 1_000)
    assert changed == [True]
    assert (answer.status_code, answer.json()["code"]) == (422, "REVOKED")
    assert world.balance(card.card_number) == 10_000


def test_more_charges_than_connections_wait_for_one_on_the_loop(tmp_path: Path) -> None:
    """One connection, six terminals at once: each charge waits for the connection on the
    loop instead of taking the costlier general path (which 32 terminals did: 0.17x
    health, against 0.37x waiting, in the bench)."""
    with pay_world("postgresql", tmp_path, db_pool_size=1) as world:
        cards = [world.card(topup=10_000) for _ in range(6)]
        tills = [world.terminal() for _ in range(6)]
        assert world.charge(tills[0], world.pay_code(cards[0]), 100).status_code == 201
        codes = [world.pay_code(card) for card in cards]
        before = _on_loop()
        barrier = threading.Barrier(6)

        def pay(n: int) -> int:
            with world.client() as client:
                barrier.wait()
                return world.charge(tills[n], codes[n], 100, client=client).status_code

        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(pay, range(6))) == [201] * 6
        assert _on_loop() == before + 6
        assert world.balance(cards[0].card_number) == 9_800


# Whatever a caller controls, at its worst: each is refused with a code, never a 5xx,
# nothing is written and nothing is charged on the loop.
def _hostile_bodies(code: str) -> list[tuple[str, dict[str, object]]]:
    return [
        ("amount zero", {"pay_code": code, "amount_fen": 0}),
        ("amount negative", {"pay_code": code, "amount_fen": -100}),
        ("amount past the maximum", {"pay_code": code, "amount_fen": 10**12}),
        ("amount a boolean", {"pay_code": code, "amount_fen": True}),
        ("amount a float", {"pay_code": code, "amount_fen": 1.5}),
        ("amount a string", {"pay_code": code, "amount_fen": "100"}),
        ("code empty", {"pay_code": "", "amount_fen": 100}),
        ("code truncated", {"pay_code": code[:-10], "amount_fen": 100}),
        ("code with its signature flipped", {"pay_code": code[:-2] + ("AA" if code[-2:] != "AA"
                                                                      else "BB"),
                                             "amount_fen": 100}),
        ("code far too long", {"pay_code": code * 20, "amount_fen": 100}),
        ("code as SQL", {"pay_code": "FMC1:' OR 1=1; --", "amount_fen": 100}),
        ("code not text", {"pay_code": {"card_number": "x"}, "amount_fen": 100}),
        ("challenge garbage", {"pay_code": code, "amount_fen": 100, "challenge": "x" * 64}),
        ("challenge as SQL", {"pay_code": code, "amount_fen": 100,
                              "challenge": "'; DROP TABLE payments; --"}),
    ]


_HOSTILE_TOKENS = ["x", "' OR '1'='1", "a" * 201, "é" * 50, "Bearer Bearer"]


def test_hostile_bodies_and_tokens_are_refused_and_write_nothing(world: PayWorld) -> None:
    card = world.card(topup=10_000)
    till = world.terminal()
    assert world.charge(till, world.pay_code(card), 100).status_code == 201  # warm
    before = _on_loop()
    for what, body in _hostile_bodies(world.pay_code(card)):
        answer = world.http.post("/v1/payments", headers=till.headers,
                                 json=body | {"idempotency_key": secrets.token_hex(8)})
        assert 400 <= answer.status_code < 500, (what, answer.text)
        assert answer.json()["code"], what
    code = world.pay_code(card)
    for token in _HOSTILE_TOKENS:
        answer = world.http.post(
            "/v1/payments", headers={"Authorization": f"Bearer {token}".encode()},
            json={"pay_code": code, "amount_fen": 100, "idempotency_key": secrets.token_hex(8)})
        assert answer.status_code == 401, (token, answer.text)
    assert _on_loop() == before
    assert world.balance(card.card_number) == 9_900
    # The code none of them could charge is still good for its own sale.
    assert world.charge(till, code, 100).status_code == 201
