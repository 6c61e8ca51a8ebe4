"""The terminal a shop runs (``verifier terminal``): online charges with a checked receipt,
offline acceptance within the floor and the card's offline limit, a durable queue,
upload and settlement; and the pure pieces (receipt check, offline decision, queue)."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from payments_kit import NOW, SQLITE_ONLY, PayWorld
from shop_kit import AT, Shop, closed_port_url, runner

from cardsvc.payments.receipts import sign_receipt
from keys import Ed25519Signer, sign_compact
from schemas import IssuerKey, KeyState, Purpose, TrustListClaims
from schemas._jose import dump_json
from schemas.challenge import decode_challenge
from schemas.qr import presentation_qr
from schemas.receipt import Receipt
from support import ISSUER_KEY, NEXT_KEY, World, present
from verifier import POLICIES, VerificationResult, verify_presentation
from verifier.cli import app
from verifier.qr import decode_qr
from verifier.receipts import pay_code_key, verify_receipt
from verifier.terminal import (
    QUEUE_DB,
    OfflineQueue,
    QueuedPayment,
    format_fen,
    offline_decision,
)
from verifier.terminal.challenges import CHALLENGE_DB


@pytest.fixture
def shop(world: PayWorld, tmp_path: Path) -> Shop:
    return Shop(world, tmp_path / "shop", world.terminal(floor=3_000))


@SQLITE_ONLY
def test_setup_keeps_the_terminal_s_merchant_and_floor(shop: Shop) -> None:
    config = json.loads((shop.directory / "terminal.json").read_text())
    assert config["terminal_id"] == shop.terminal.terminal_id
    assert config["offline_floor_fen"] == 3_000
    assert config["server"] == shop.world.url


@SQLITE_ONLY
def test_an_online_charge_is_accepted_with_a_verified_receipt(shop: Shop) -> None:
    card = shop.world.card(topup=5_000)
    exit_code, answer = shop.charge(shop.world.pay_code(card), 1_250)
    assert exit_code == 0, answer
    assert answer | {"ok": True, "mode": "online", "code": "OK", "receipt": "RECEIPT_OK",
                     "balance_fen": 3_750} == answer
    assert shop.world.balance(card.card_number) == 3_750
    exit_code, output = shop.run("terminal", "charge", "--text", shop.world.pay_code(card),
                                 "--amount", "50", "--at", AT)
    assert exit_code == 0 and "ACCEPTED ONLINE" in output and "receipt verified" in output


@SQLITE_ONLY
def test_a_picture_of_the_pay_code_is_charged(shop: Shop) -> None:
    card = shop.world.card(topup=5_000)
    picture = io.BytesIO()
    presentation_qr(shop.world.pay_code(card), box_size=4).make_image().save(picture)
    path = shop.directory / "scan.png"
    path.write_bytes(picture.getvalue())
    exit_code, output = shop.run("terminal", "charge", "--image", str(path), "--amount", "99",
                                 "--at", AT)
    assert exit_code == 0 and "ACCEPTED ONLINE" in output
    assert shop.world.balance(card.card_number) == 4_901


@SQLITE_ONLY
def test_online_refusals_exit_1_with_the_authority_s_code(shop: Shop) -> None:
    card = shop.world.card(topup=100)
    exit_code, answer = shop.charge(shop.world.pay_code(card), 500)
    assert (exit_code, answer["code"], answer["mode"]) == (1, "INSUFFICIENT_FUNDS", "online")
    code = shop.world.pay_code(card)
    assert shop.charge(code, 50)[0] == 0
    exit_code, answer = shop.charge(code, 50)  # this terminal has seen it: no network needed
    assert (exit_code, answer["code"]) == (1, "REPLAYED")


@SQLITE_ONLY
def test_a_bad_token_is_a_configuration_error(shop: Shop, world: PayWorld) -> None:
    card = world.card(topup=100)
    result = runner.invoke(app, ["--cache", str(shop.directory), "terminal", "charge",
                                 "--text", world.pay_code(card), "--amount", "5", "--json"],
                           env={"FMC_TERMINAL_TOKEN": "wrong"})
    assert result.exit_code == 2 and json.loads(result.output)["code"] == "UNAUTHENTICATED"
    missing = runner.invoke(app, ["--cache", str(shop.directory), "terminal", "charge",
                                  "--text", "x", "--amount", "5"], env={})
    assert missing.exit_code == 2


@SQLITE_ONLY
def test_offline_acceptance_queue_and_upload(shop: Shop) -> None:
    card = shop.world.card(topup=5_000, offline_limit_fen=4_000)
    assert shop.charge(shop.world.pay_code(card), 301, offline=True)[1]["code"] == (
        "CHALLENGE_REQUIRED")  # unbound codes: a tenth of the floor by default
    unbound = ("--unbound-floor", "3000")  # here the till takes unbound codes to its floor
    exit_code, answer = shop.charge(shop.world.pay_code(card), 2_500, *unbound, offline=True)
    assert exit_code == 0, answer
    assert answer | {"mode": "offline", "code": "OK", "queued": 1,
                     "offline_limit_left_fen": 1_500} == answer
    refusals = [
        (shop.world.pay_code(card), 3_001, "OFFLINE_FLOOR_EXCEEDED"),  # floor 3,000
        (shop.world.pay_code(card), 1_501, "OFFLINE_LIMIT_EXCEEDED"),  # 4,000 - 2,500 left
        ("FMC1:123", 10, "MALFORMED"),
    ]
    for code, amount, expected in refusals:
        exit_code, refused = shop.charge(code, amount, *unbound, offline=True)
        assert (exit_code, refused["code"]) == (1, expected)
    assert shop.charge(shop.world.pay_code(card), 1_500, *unbound, offline=True)[0] == 0
    assert [item.state for item in shop.queue()] == ["queued", "queued"]
    assert shop.world.balance(card.card_number) == 5_000  # nothing settled yet
    exit_code, summary = shop.upload()
    assert exit_code == 0, summary
    assert summary | {"settled": 2, "double_spend": 0, "refused": 0, "settled_fen": 4_000,
                      "still_queued": 0} == summary
    assert shop.world.balance(card.card_number) == 1_000
    assert {item.state for item in shop.queue()} == {"settled"}
    assert all(item.payment_id and item.receipt for item in shop.queue())
    assert shop.upload()[1]["uploaded"] == 0
    # Settled, the card's offline limit is whole again on this terminal.
    assert shop.charge(shop.world.pay_code(card), 2_000, *unbound, offline=True)[0] == 0


@SQLITE_ONLY
def test_the_same_code_at_two_offline_shops_is_one_charge_and_a_double_spend(
    world: PayWorld, tmp_path: Path,
) -> None:
    first = Shop(world, tmp_path / "first", world.terminal())
    second = Shop(world, tmp_path / "second", world.terminal())
    card = world.card(topup=5_000)
    code = world.pay_code(card)
    assert first.charge(code, 800, offline=True)[0] == 0
    assert second.charge(code, 800, offline=True)[0] == 0  # each shop only knows its own
    assert first.upload()[1]["settled"] == 1
    exit_code, summary = second.upload()
    assert (exit_code, summary["double_spend"], summary["codes"]) == (0, 1,
                                                                      {"DOUBLE_SPEND": 1})
    assert [item.state for item in second.queue()] == ["double_spend"]
    assert world.balance(card.card_number) == 4_200
    assert world.card_state(card.card_number) == "suspended"


@SQLITE_ONLY
def test_an_unreachable_authority_keeps_the_queue(shop: Shop) -> None:
    card = shop.world.card(topup=5_000)
    assert shop.charge(shop.world.pay_code(card), 100, offline=True)[0] == 0
    exit_code, output = shop.run("terminal", "upload", "--server", closed_port_url(), "--json")
    assert (exit_code, json.loads(output)["code"]) == (1, "AUTHORITY_UNREACHABLE")
    assert [item.state for item in shop.queue()] == ["queued"]
    exit_code, output = shop.run("terminal", "queue")
    assert exit_code == 0 and "queued" in output and card.card_number in output


@SQLITE_ONLY
def test_offline_without_a_synced_cache_is_refused(world: PayWorld, tmp_path: Path) -> None:
    till = world.terminal()
    card = world.card(topup=100)
    result = runner.invoke(app, ["--cache", str(tmp_path / "empty"), "terminal", "charge",
                                 "--text", world.pay_code(card), "--amount", "5", "--server",
                                 closed_port_url(), "--at", AT, "--json"],
                           env={"FMC_TERMINAL_TOKEN": till.token})
    assert result.exit_code == 1 and json.loads(result.output)["code"] == "NO_CACHE"


# -- the pure pieces ----------------------------------------------------------------------------

def _receipt(**overrides: Any) -> Receipt:
    base = Receipt("pay_1", "payment", "pay_1", "CN-YW", "3300012345678901", 3, 7, 1_250,
                   8_750, 0, "online", int(NOW.timestamp()), int(NOW.timestamp()), "pc")
    return replace(base, **overrides)


def _trust(*keys: IssuerKey) -> TrustListClaims:
    return TrustListClaims("CN-YW", 1, 0, 2**40, keys or World().keys)


def _tampered(jwt: str) -> str:
    head, body, signature = jwt.split(".")
    return ".".join((head, body, ("A" if signature[0] != "A" else "B") + signature[1:]))


def _signed(header: dict[str, Any], payload: dict[str, Any],
            signer: Ed25519Signer = ISSUER_KEY) -> str:
    return sign_compact(header, dump_json(payload), signer)


_HEADER = {"alg": "EdDSA", "kid": "k1", "typ": "fmc-receipt+jwt"}
_NOW = int(NOW.timestamp())
_RETIRED = IssuerKey("k1", ISSUER_KEY.public_key, KeyState.RETIRED, 0, _NOW + 1)


@pytest.mark.parametrize(("make", "trust", "code"), [
    (lambda: sign_receipt(_receipt(), ISSUER_KEY), _trust(), "OK"),
    (lambda: sign_receipt(_receipt(), NEXT_KEY), _trust(), "OK"),
    (lambda: sign_receipt(_receipt(), ISSUER_KEY), _trust(_RETIRED), "OK"),
    (lambda: sign_receipt(_receipt(issued_at=_NOW + 1), ISSUER_KEY), _trust(_RETIRED),
     "KEY_NOT_VALID_AT_ISSUE"),
    (lambda: _tampered(sign_receipt(_receipt(), ISSUER_KEY)), _trust(), "BAD_SIGNATURE"),
    (lambda: sign_receipt(_receipt(), Ed25519Signer(bytes(32), kid="k1")), _trust(),
     "BAD_SIGNATURE"),
    (lambda: sign_receipt(_receipt(), Ed25519Signer(bytes(32), kid="k9")), _trust(),
     "UNKNOWN_KEY"),
    (lambda: sign_receipt(_receipt(), ISSUER_KEY),
     _trust(IssuerKey("k1", ISSUER_KEY.public_key, KeyState.COMPROMISED, 0)),
     "KEY_COMPROMISED"),
    (lambda: sign_receipt(_receipt(issuer="XX"), ISSUER_KEY), _trust(), "UNKNOWN_KEY"),
    (lambda: _signed(_HEADER | {"typ": "JWT"}, _receipt().to_payload()), _trust(),
     "MALFORMED"),
    (lambda: _signed(_HEADER | {"jwk": {}}, _receipt().to_payload()), _trust(), "MALFORMED"),
    (lambda: _signed(_HEADER, _receipt().to_payload() | {"amt": "1250"}), _trust(),
     "MALFORMED"),
    (lambda: _signed(_HEADER, _receipt().to_payload() | {"amt": -1}), _trust(), "MALFORMED"),
    (lambda: _signed(_HEADER, _receipt().to_payload() | {"knd": "gift"}), _trust(),
     "MALFORMED"),
    (lambda: "a.b", _trust(), "MALFORMED"),
    (lambda: "eyJhbGciOiJub25lIn0.e30.", _trust(), "ALGORITHM_NOT_ALLOWED"),
])
def test_receipts_are_checked_offline_against_the_trust_list(
    make: Any, trust: TrustListClaims, code: str,
) -> None:
    from schemas import FmcError

    try:
        receipt = verify_receipt(make(), trust_list=trust)
    except FmcError as error:
        assert error.code.value == code
    else:
        assert code == "OK"
        assert receipt.amount_fen == 1_250


def _result(text: str) -> VerificationResult:
    return verify_presentation(text, state=World().state(), policy=POLICIES["payment"],
                               now=int(NOW.timestamp()), replay_cache=None)


@pytest.mark.parametrize(("amount", "floor", "queued", "bound", "code"), [
    (100, 3_000, 0, True, "OK"),
    (3_000, 3_000, 0, True, "OK"),
    (3_001, 3_000, 0, True, "OFFLINE_FLOOR_EXCEEDED"),
    (1, 0, 0, True, "OFFLINE_FLOOR_EXCEEDED"),
    (20_000, 50_000, 30_000, True, "OK"),  # support's pay credential: ol 50,000
    (20_001, 50_000, 30_000, True, "OFFLINE_LIMIT_EXCEEDED"),
    (300, 3_000, 0, False, "OK"),  # unbound: a tenth of the floor
    (301, 3_000, 0, False, "CHALLENGE_REQUIRED"),
    (3_001, 3_000, 0, False, "OFFLINE_FLOOR_EXCEEDED"),
])
def test_offline_decision(amount: int, floor: int, queued: int, bound: bool,
                          code: str) -> None:
    result = _result(present(Purpose.PAY))
    assert offline_decision(result, amount_fen=amount, floor_fen=floor, queued_fen=queued,
                            bound=bound) == code


def test_offline_decision_passes_on_the_verifier_s_refusal() -> None:
    result = _result(present(Purpose.SVC))
    assert offline_decision(result, amount_fen=1, floor_fen=10, queued_fen=0) == "WRONG_PURPOSE"


def test_the_queue_keeps_one_entry_per_pay_code_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_DB
    code = present(Purpose.PAY)
    item = QueuedPayment("k1", code, pay_code_key(code), "3300012345678901", 700, 1)
    with OfflineQueue(path) as queue:
        assert queue.enqueue(item) is True
        assert queue.enqueue(replace(item, idempotency_key="k2")) is False
    with OfflineQueue(path) as queue:  # what was accepted is on disk
        assert [i.idempotency_key for i in queue.items()] == ["k1"]
        assert queue.queued_fen("3300012345678901") == 700
        queue.record_outcome("k1", state="settled", code=None, payment_id="pay_x",
                             receipt="r", now=2)
        assert queue.queued_fen("3300012345678901") == 0


def test_fen_are_shown_as_yuan() -> None:
    assert [format_fen(f) for f in (0, 5, 100, 123_456, -250)] == [
        "0.00", "0.05", "1.00", "1234.56", "-2.50"]




# -- what the till says (P16.6) -------------------------------------------------------------

@SQLITE_ONLY
def test_a_refusal_says_what_to_do_with_its_figures_in_both_languages(shop: Shop) -> None:
    card = shop.world.card(topup=5_000, offline_limit_fen=4_000)
    exit_code, output = shop.run("terminal", "charge", "--text", shop.world.pay_code(card),
                                 "--amount", "9000", "--server", closed_port_url(), "--at", AT)
    assert exit_code == 1 and "OFFLINE_FLOOR_EXCEEDED" in output
    assert "at most 30.00 yuan offline" in output and "离线收款上限为 30.00 元" in output
    exit_code, output = shop.run("terminal", "charge", "--text", shop.world.pay_code(card),
                                 "--amount", "9000", "--at", AT)
    assert exit_code == 1 and "INSUFFICIENT_FUNDS" in output
    assert "balance (50.00 yuan) is less than 90.00 yuan" in output and "余额" in output


@SQLITE_ONLY
def test_setup_shows_the_authority_s_detail(world: PayWorld, tmp_path: Path) -> None:
    cashier = world.as_role("cashier")["Authorization"].removeprefix("Bearer ")
    result = runner.invoke(app, ["--cache", str(tmp_path / "till"), "terminal", "setup",
                                 "--server", world.url], env={"FMC_TERMINAL_TOKEN": cashier})
    assert result.exit_code == 2
    assert "FORBIDDEN" in result.output or "NOT_A_TERMINAL" in result.output
    assert "the authority refused" not in result.output  # the server's own words instead


@SQLITE_ONLY
def test_a_refusal_about_the_terminal_does_not_burn_the_pay_code(
        shop: Shop, world: PayWorld, tmp_path: Path) -> None:
    card = world.card(topup=5_000)
    code = world.pay_code(card)
    stray = world.as_role("cashier")["Authorization"].removeprefix("Bearer ")
    refused = runner.invoke(app, ["--cache", str(shop.directory), "terminal", "charge",
                                  "--text", code, "--amount", "100", "--at", AT, "--json"],
                            env={"FMC_TERMINAL_TOKEN": stray})
    assert refused.exit_code == 2
    assert json.loads(refused.output)["code"] in ("NOT_A_TERMINAL", "FORBIDDEN")
    exit_code, answer = shop.charge(code, 100)  # the right token: the same code still pays
    assert (exit_code, answer["code"]) == (0, "OK")

@SQLITE_ONLY
def test_challenge_shows_this_till_s_sale(shop: Shop, tmp_path: Path) -> None:
    picture = tmp_path / "challenge.png"
    exit_code, output = shop.run("terminal", "challenge", "--amount", "1500", "--png",
                                 str(picture), "--at", AT, "--json")
    assert exit_code == 0, output
    shown = json.loads(output)
    challenge = decode_challenge(shown["challenge"])
    assert (challenge.merchant_id, challenge.terminal_id, challenge.amount_fen,
            challenge.issued_at) == (shop.terminal.merchant_id, shop.terminal.terminal_id,
                                     1_500, int(NOW.timestamp()))
    assert decode_qr(picture.read_bytes()) == challenge.text
    exit_code, output = shop.run("terminal", "challenge", "--amount", "1500", "--at", AT)
    assert exit_code == 0 and challenge.text not in output  # a new nonce each time
    not_set_up = runner.invoke(app, ["--cache", str(tmp_path / "new"), "terminal",
                                     "challenge", "--amount", "1", "--json"])
    assert (not_set_up.exit_code, json.loads(not_set_up.output)["code"]) == (2, "NOT_SET_UP")
    (shop.directory / CHALLENGE_DB).unlink()
    (shop.directory / CHALLENGE_DB).mkdir()  # a database that cannot be opened
    exit_code, output = shop.run("terminal", "challenge", "--amount", "1", "--json")
    assert (exit_code, json.loads(output)["code"]) == (2, "CHALLENGE_STORE")
