"""P8.3: a pay code bound to one sale (challenge mode) is good for that sale only.

The till shows a challenge (merchant, terminal, amount, nonce, its time); the phone signs
it with its pay credential. A dishonest merchant (or anyone holding the code) tries to
take it for another amount, at another terminal or merchant, with another nonce, late,
or twice: each is refused with its code, at the till and at the authority. Offline, an
unbound code is only good for small sales (a tenth of the floor)."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from payments_kit import NOW, PayCard, PayWorld, TerminalHandle, pay_world
from typer.testing import CliRunner

import schemas.presentation
from keys import sign_presentation
from schemas import ResultCode
from schemas.challenge import CHALLENGE_CLOCK_SKEW_SECONDS, CHALLENGE_LIFETIME_SECONDS, Challenge
from support import SALE, bound_present, check_code
from verifier.cli import app
from verifier.terminal.queue import QUEUE_DB, OfflineQueue
from verifier.terminal.service import ChargeAnswer, Terminal

AT = "2027-01-15T08:00:00Z"  # payments_kit.NOW
EPOCH = int(NOW.timestamp())
FLOOR = 3_000
runner = CliRunner()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def _world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayWorld]:
    with pay_world("sqlite", tmp_path_factory.mktemp("challenge-attacks")) as served:
        yield served


@pytest.fixture
def world(_world: PayWorld) -> PayWorld:
    _world.clock.now = NOW
    return _world


class Till:
    """A synced, set-up terminal driven through its service with a fixed clock."""

    def __init__(self, world: PayWorld, directory: Path, handle: TerminalHandle) -> None:
        self.world, self.directory, self.handle = world, directory, handle
        self.now = EPOCH
        env = {"FMC_TERMINAL_TOKEN": handle.token}
        for args in (("sync", "--server", world.url, "--root", world.root_fingerprint,
                      "--at", AT), ("terminal", "setup", "--server", world.url)):
            assert runner.invoke(app, ["--cache", str(directory), *args],
                                 env=env).exit_code == 0

    def _terminal(self, http: httpx.Client) -> Terminal:
        return Terminal(self.directory, http=http, clock=lambda: self.now, pause=lambda _: None)

    def challenge(self, amount_fen: int) -> Challenge:
        with httpx.Client() as http:
            return self._terminal(http).challenge(amount_fen=amount_fen)

    def charge(self, code: str, amount_fen: int, *, online: bool = False) -> ChargeAnswer:
        server = self.world.url if online else _closed_port_url()
        with (self.world.client() if online else httpx.Client()) as http:
            http.headers.update(self.handle.headers)
            return self._terminal(http).charge(code, amount_fen=amount_fen, server=server)

    def upload(self) -> Any:
        with self.world.client() as http:
            http.headers.update(self.handle.headers)
            return self._terminal(http).upload(self.world.url)


@pytest.fixture
def till(world: PayWorld, tmp_path: Path) -> Till:
    return Till(world, tmp_path / "till", world.terminal(floor=FLOOR))


def _pay(card: PayCard, challenge: Challenge, proof_time: int = EPOCH) -> str:
    """The phone's answer to a challenge (what `wallet-sim pay --challenge` makes)."""
    return sign_presentation(card.pay_credential, card.device, proof_time=proof_time,
                             purpose="pay", challenge_digest=challenge.digest)


def _upload(world: PayWorld, handle: TerminalHandle, code: str, amount: int,
            challenge: str | None, accepted_at: datetime = NOW) -> dict[str, Any]:
    item = {"pay_code": code, "amount_fen": amount, "accepted_at": accepted_at.isoformat(),
            "idempotency_key": secrets.token_hex(8)}
    if challenge is not None:
        item["challenge"] = challenge
    answer = world.http.post("/v1/payments/offline-batch", headers=handle.headers,
                             json={"items": [item]})
    assert answer.status_code == 200, answer.text
    [result] = answer.json()["results"]
    return dict(result)


# -- at the till ----------------------------------------------------------------------------

def test_a_bound_code_for_another_amount_is_refused_by_the_till(world: PayWorld,
                                                                till: Till) -> None:
    card = world.card(topup=5_000)
    code = _pay(card, till.challenge(1_000))
    answer = till.charge(code, 2_500)
    assert (answer.ok, answer.code) == (False, "CHALLENGE_MISMATCH")
    assert OfflineQueue(till.directory / QUEUE_DB).items() == []


def test_a_bound_code_of_another_terminal_is_refused(world: PayWorld, till: Till,
                                                     tmp_path: Path) -> None:
    card = world.card(topup=5_000)
    other = Till(world, tmp_path / "other", world.terminal(till.handle.merchant_id,
                                                           floor=FLOOR))
    code = _pay(card, other.challenge(1_000))
    assert till.charge(code, 1_000).code == "CHALLENGE_MISMATCH"


def test_a_challenge_with_a_nonce_the_till_never_issued_is_refused(world: PayWorld,
                                                                   till: Till) -> None:
    card = world.card(topup=5_000)
    issued = till.challenge(1_000)
    made_up = replace(issued, nonce=secrets.token_bytes(16))  # same sale, another nonce
    assert till.charge(_pay(card, made_up), 1_000).code == "CHALLENGE_MISMATCH"


def test_a_bound_code_after_its_challenge_expired_is_refused(world: PayWorld,
                                                             till: Till) -> None:
    card = world.card(topup=5_000)
    code = _pay(card, till.challenge(1_000))
    till.now += CHALLENGE_LIFETIME_SECONDS + 1
    assert till.charge(code, 1_000).code == "CHALLENGE_EXPIRED"


def test_a_paid_challenge_cannot_be_paid_twice(world: PayWorld, till: Till) -> None:
    card = world.card(topup=5_000)
    challenge = till.challenge(1_000)
    code = _pay(card, challenge)
    assert till.charge(code, 1_000).code == "OK"
    assert till.charge(code, 1_000).code == "REPLAYED"  # the same code again
    # A second code for the same challenge (a phone asked twice): the sale is paid already.
    assert till.charge(_pay(card, challenge, EPOCH - 1), 1_000).code == "REPLAYED"
    assert len(OfflineQueue(till.directory / QUEUE_DB).items()) == 1


def test_an_unbound_code_offline_above_the_unbound_floor_is_refused(world: PayWorld,
                                                                    till: Till) -> None:
    card = world.card(topup=5_000)
    answer = till.charge(world.pay_code(card), FLOOR // 10 + 1)
    assert (answer.ok, answer.code, answer.unbound_floor_fen) == (
        False, "CHALLENGE_REQUIRED", FLOOR // 10)
    assert till.charge(world.pay_code(card), FLOOR // 10).code == "OK"
    # Bound to the sale, the same till takes the whole floor.
    assert till.charge(_pay(card, till.challenge(FLOOR), EPOCH - 5), FLOOR).code == "OK"


def test_an_honest_bound_offline_sale_settles_with_its_exact_amount(world: PayWorld,
                                                                    till: Till) -> None:
    card = world.card(topup=5_000)
    challenge = till.challenge(2_345)
    assert till.charge(_pay(card, challenge), 2_345).code == "OK"
    [queued] = OfflineQueue(till.directory / QUEUE_DB).items()
    assert queued.challenge == challenge.text  # the queue keeps the challenge
    listed = runner.invoke(app, ["--cache", str(till.directory), "terminal", "queue", "--json"])
    assert [item["bound"] for item in json.loads(listed.output)["items"]] == [True]
    world.clock.now = NOW + timedelta(minutes=30)
    summary = till.upload()
    assert (summary.settled, summary.settled_fen, summary.refused) == (1, 2_345, 0)
    assert world.balance(card.card_number) == 5_000 - 2_345


# -- at the authority -------------------------------------------------------------------------

def _bound_sale(world: PayWorld, handle: TerminalHandle, amount: int,
                card: PayCard) -> tuple[str, Challenge]:
    challenge = Challenge(handle.merchant_id, handle.terminal_id, amount,
                          secrets.token_bytes(16), EPOCH)
    return _pay(card, challenge), challenge


def test_a_till_cannot_inflate_a_bound_sale_at_upload(world: PayWorld) -> None:
    card, handle = world.card(topup=5_000), world.terminal(floor=FLOOR)
    code, challenge = _bound_sale(world, handle, 1_000, card)
    # The amount changed, then the challenge changed to match it: both refused.
    inflated = _upload(world, handle, code, 3_000, challenge.text)
    assert (inflated["outcome"], inflated["code"]) == ("refused", "CHALLENGE_MISMATCH")
    forged = replace(challenge, amount_fen=3_000).text
    refused = _upload(world, handle, code, 3_000, forged)
    assert (refused["outcome"], refused["code"]) == ("refused", "CHALLENGE_MISMATCH")
    # Without its challenge a bound code is not an unbound one.
    bare = _upload(world, handle, code, 1_000, None)
    assert (bare["outcome"], bare["code"]) == ("refused", "CHALLENGE_MISMATCH")
    assert world.balance(card.card_number) == 5_000
    settled = _upload(world, handle, code, 1_000, challenge.text)
    assert (settled["outcome"], settled["amount_fen"]) == ("settled", 1_000)


def test_a_bound_code_uploaded_by_another_terminal_or_merchant_is_refused(
    world: PayWorld,
) -> None:
    card, handle = world.card(topup=5_000), world.terminal(floor=FLOOR)
    same_merchant = world.terminal(handle.merchant_id, floor=FLOOR)
    other_merchant = world.terminal(floor=FLOOR)
    code, challenge = _bound_sale(world, handle, 1_000, card)
    for thief in (same_merchant, other_merchant):
        result = _upload(world, thief, code, 1_000, challenge.text)
        assert (result["outcome"], result["code"]) == ("refused", "CHALLENGE_MISMATCH")
        # Naming itself in the challenge does not help: the code signed the original.
        renamed = replace(challenge, merchant_id=thief.merchant_id,
                          terminal_id=thief.terminal_id).text
        result = _upload(world, thief, code, 1_000, renamed)
        assert (result["outcome"], result["code"]) == ("refused", "CHALLENGE_MISMATCH")
    assert world.balance(card.card_number) == 5_000


def test_a_bound_code_accepted_after_its_challenge_expired_does_not_settle(
    world: PayWorld,
) -> None:
    card, handle = world.card(topup=5_000), world.terminal(floor=FLOOR)
    code, challenge = _bound_sale(world, handle, 1_000, card)
    late = NOW + timedelta(seconds=CHALLENGE_LIFETIME_SECONDS + 1)
    world.clock.now = late
    result = _upload(world, handle, code, 1_000, challenge.text, accepted_at=late)
    assert (result["outcome"], result["code"]) == ("refused", "CHALLENGE_EXPIRED")


def test_a_bound_code_settles_once(world: PayWorld) -> None:
    card, handle = world.card(topup=5_000), world.terminal(floor=FLOOR)
    code, challenge = _bound_sale(world, handle, 1_000, card)
    assert _upload(world, handle, code, 1_000, challenge.text)["outcome"] == "settled"
    online = world.http.post("/v1/payments", headers=handle.headers, json={
        "pay_code": code, "amount_fen": 1_000, "challenge": challenge.text,
        "idempotency_key": secrets.token_hex(8)})
    assert (online.status_code, online.json()["code"]) == (409, "PAY_CODE_USED")
    assert world.balance(card.card_number) == 4_000


def test_online_a_bound_code_needs_its_own_challenge(world: PayWorld) -> None:
    card, handle = world.card(topup=5_000), world.terminal(floor=FLOOR)
    code, challenge = _bound_sale(world, handle, 1_000, card)
    for amount, text in ((2_000, challenge.text), (1_000, None)):
        body: dict[str, Any] = {"pay_code": code, "amount_fen": amount,
                                "idempotency_key": secrets.token_hex(8)}
        if text is not None:
            body["challenge"] = text
        refused = world.http.post("/v1/payments", headers=handle.headers, json=body)
        assert (refused.status_code, refused.json()["code"]) == (422, "CHALLENGE_MISMATCH")
    assert world.balance(card.card_number) == 5_000


# -- the format -------------------------------------------------------------------------------

def test_a_verifier_that_predates_bound_codes_answers_unsupported_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = bound_present(SALE)
    assert check_code(code, service="payment") is ResultCode.CHALLENGE_MISMATCH  # today
    monkeypatch.setattr(schemas.presentation, "_PREFIXES", {schemas.presentation.PREFIX: 0})
    assert check_code(code, service="payment") is ResultCode.UNSUPPORTED_VERSION


def test_online_a_bound_sale_from_a_till_whose_clock_runs_ahead_is_charged(
    world: PayWorld,
) -> None:
    card, handle = world.card(topup=5_000), world.terminal(floor=FLOOR)
    # (the till's clock ahead by, the phone's proof time, the authority's answer)
    for ahead, proof_time, expected in ((120, EPOCH, 201),
                                        (CHALLENGE_CLOCK_SKEW_SECONDS + 1, EPOCH - 1, 422)):
        challenge = Challenge(handle.merchant_id, handle.terminal_id, 1_000,
                              secrets.token_bytes(16), EPOCH + ahead)
        answer = world.http.post("/v1/payments", headers=handle.headers, json={
            "pay_code": _pay(card, challenge, proof_time),
            "amount_fen": 1_000, "challenge": challenge.text,
            "idempotency_key": secrets.token_hex(8)})
        assert answer.status_code == expected, answer.text
        if expected == 422:
            assert answer.json()["code"] == "CHALLENGE_EXPIRED"
    assert world.balance(card.card_number) == 4_000


def test_a_bystander_sending_a_bound_code_online_cannot_stop_the_honest_upload(
    world: PayWorld,
) -> None:
    card, handle = world.card(topup=5_000), world.terminal(floor=FLOOR)
    bystander = world.terminal(floor=FLOOR)
    code, challenge = _bound_sale(world, handle, 1_000, card)
    for text in (challenge.text, replace(challenge, merchant_id=bystander.merchant_id,
                                         terminal_id=bystander.terminal_id).text):
        refused = world.http.post("/v1/payments", headers=bystander.headers, json={
            "pay_code": code, "amount_fen": 1_000, "challenge": text,
            "idempotency_key": secrets.token_hex(8)})
        assert (refused.status_code, refused.json()["code"]) == (422, "CHALLENGE_MISMATCH")
    settled = _upload(world, handle, code, 1_000, challenge.text)
    assert (settled["outcome"], settled["amount_fen"]) == ("settled", 1_000)
    assert world.balance(card.card_number) == 4_000


def test_online_the_till_sends_the_challenge_and_checks_the_receipt(world: PayWorld,
                                                                     till: Till) -> None:
    card = world.card(topup=5_000)
    code = _pay(card, till.challenge(1_000))
    assert till.charge(code, 1_200, online=True).code == "CHALLENGE_MISMATCH"  # never sent
    answer = till.charge(code, 1_000, online=True)
    assert (answer.ok, answer.mode, answer.receipt, answer.balance_fen) == (
        True, "online", "RECEIPT_OK", 4_000)
