"""P13.3: one-use pay credentials at the authority: the refill, the online charge, the
offline settlement, the card's state reaching every handle, and what a till is told."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from one_use_kit import OneUse, pay_batch_request, refill, refill_answer
from payments_kit import NOW, SQLITE_ONLY, PayWorld, TerminalHandle

from cardsvc.payments.pay_batch import one_use_offline_limit
from keys import Ed25519Signer
from schemas import b64url_decode, b64url_encode
from schemas._jose import inflate_capped, parse_json_object, split_compact
from schemas.provisioning import pay_batch_proof_message
from schemas.receipt import Receipt
from verifier.receipts import verify_receipt

DAY = 86_400


def _claims(jws: str) -> dict[str, Any]:
    _, _, payload, _ = split_compact(jws)
    return parse_json_object(inflate_capped(payload, 4096))


def _receipt(world: PayWorld, jwt: str) -> Receipt:
    return verify_receipt(jwt, trust_list=world.trust_list())


def _upload(world: PayWorld, till: TerminalHandle, *items: dict[str, Any]) -> list[Any]:
    answer = world.http.post("/v1/payments/offline-batch", headers=till.headers,
                             json={"items": list(items)})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["results"])


def _item(code: str, amount: int, accepted_at: int) -> dict[str, Any]:
    return {"pay_code": code, "amount_fen": amount, "idempotency_key": secrets.token_hex(8),
            "accepted_at": (NOW + timedelta(seconds=accepted_at - int(NOW.timestamp())))
            .isoformat()}


def test_a_refill_issues_one_use_credentials_that_name_no_card(world: PayWorld) -> None:
    card = world.card(offline_limit_fen=50_000)
    answer, batch = refill_answer(world, card, 5)
    body = answer.json()
    assert answer.status_code == 200 and len(batch) == 5 and body["outstanding"] == 5
    claims = [_claims(one.credential) for one in batch]
    midnight = world.clock.epoch // DAY * DAY
    for one, claim in zip(batch, claims, strict=True):
        assert "cn" not in claim and claim["pur"] == "pay"
        assert claim["iat"] == midnight and claim["exp"] == midnight + DAY  # today only
        # The city's tier (not the card's own 50,000) over the N credentials of a day.
        assert claim["ol"] == 20_000 // world.settings.pay_offline_per_day
        assert b64url_decode(claim["hk"]) == one.holder.public_key
    assert len({c["ph"] for c in claims}) == len({tuple(c["st"]) for c in claims}) == 5
    assert body["days"] == [midnight] * 5


@given(st.integers(0, 10**7), st.integers(4, 10**7))
def test_offline_limit_tiers(card_limit: int, default: int) -> None:
    tier = one_use_offline_limit(card_limit, default)
    assert tier <= card_limit and tier in {0, default // 4, default // 2, default}


def test_refill_refusals(world: PayWorld) -> None:
    card = world.card()
    holders = [Ed25519Signer(secrets.token_bytes(32), kid="h") for _ in range(2)]
    stranger = Ed25519Signer(secrets.token_bytes(32), kid="s")
    cases = [
        (pay_batch_request(card, holders, world.clock.epoch, device=stranger), 403,
         "DEVICE_NOT_BOUND"),
        (pay_batch_request(card, holders, world.clock.epoch) | {"holder_keys": [
            pay_batch_request(card, holders, world.clock.epoch)["holder_keys"][0]]}, 403,
         "PROOF_INVALID"),  # a relay swapping the keys breaks the device's signature
        (pay_batch_request(card, [holders[0], holders[0]], world.clock.epoch), 422,
         "INVALID_HOLDER_KEYS"),  # one key twice would link two credentials
        (pay_batch_request(card, holders, world.clock.epoch - 3600), 422, "REFRESH_TIME_SKEW"),
    ]
    for request, status, code in cases:
        answer = world.http.post("/v1/wallet/pay-batch", json=request)
        assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    not_entitled = world.card(entitlements=("healthcare",))
    answer, _ = refill_answer(world, not_entitled, 1)
    assert (answer.status_code, answer.json()["code"]) == (409, "NOT_ENTITLED_TO_PAY")


# Every class of holder key a refill must refuse: wrong lengths, bytes that are no curve
# point, small-order points (the identity, the all-zero encoding), too many keys.
_IDENTITY = b"\x01" + bytes(31)
_NOT_A_POINT = b"\x02" + bytes(31)  # y = 2 has no x on the curve
_BAD_HOLDER_KEYS = [
    ("empty", [b""]),
    ("31 bytes", [bytes(range(1, 32))]),
    ("33 bytes", [bytes(range(1, 34))]),
    ("all zero (small order)", [bytes(32)]),
    ("the identity (small order)", [_IDENTITY]),
    ("not a curve point", [_NOT_A_POINT]),
    ("one bad among good", None),
    ("more than the batch allows", "too_many"),
]


@SQLITE_ONLY
@pytest.mark.parametrize(("case", "keys"), _BAD_HOLDER_KEYS, ids=[c for c, _ in _BAD_HOLDER_KEYS])
def test_a_refill_refuses_every_class_of_bad_holder_key(world: PayWorld, case: str,
                                                          keys: Any) -> None:
    card = world.card()
    good = [Ed25519Signer(secrets.token_bytes(32), kid="h").public_key for _ in range(2)]
    if keys is None:
        keys = [good[0], _IDENTITY, good[1]]
    elif keys == "too_many":
        keys = [Ed25519Signer(secrets.token_bytes(32), kid="h").public_key
                for _ in range(world.settings.pay_batch_max + 1)]
    now = world.clock.epoch
    # Signed by the card's own device key: the keys themselves are what is refused.
    proof = card.device.sign(pay_batch_proof_message(card.card_number, card.device.public_key,
                                                     now, keys))
    request = {"card_number": card.card_number, "device_key": b64url_encode(card.device.public_key),
               "time": now, "proof": b64url_encode(proof),
               "holder_keys": [b64url_encode(key) for key in keys]}
    before = refill_answer(world, card, 1)[0].json()["outstanding"]
    answer = world.http.post("/v1/wallet/pay-batch", json=request)
    assert (answer.status_code, answer.json()["code"]) == (422, "INVALID_HOLDER_KEYS"), case
    # Nothing was issued: the next good refill finds the count it left.
    assert refill_answer(world, card, 1)[0].json()["outstanding"] == before + 1


def test_a_refill_fills_the_earliest_days_then_tops_up_today_up_to_the_cap(
        world: PayWorld) -> None:
    card = world.card(topup=10_000)
    till = world.terminal()
    per_day, midnight = world.settings.pay_offline_per_day, world.clock.epoch // DAY * DAY
    answer, first = refill_answer(world, card, 20)  # today, tomorrow, ... N each
    assert answer.json()["days"] == [midnight + d * DAY for d in range(4) for _ in range(5)]
    assert [(_claims(one.credential)["iat"], _claims(one.credential)["exp"])
            for one in first[::per_day]] == [(midnight + d * DAY, midnight + (d + 1) * DAY)
                                              for d in range(4)]
    answer, rest = refill_answer(world, card, 20)  # the horizon: 7 days of N
    assert len(rest) == 15 and answer.json()["days"][-1] == midnight + 6 * DAY
    # Every day holds its N and today's are not used: nothing more (never a 6th for today).
    answer, _ = refill_answer(world, card, 1)
    assert (answer.status_code, answer.json()["code"]) == (409, "PAY_HANDLES_OUTSTANDING")
    for one in first[:per_day]:  # today's N used online: today continues online only
        assert world.charge(till, one.code(world.clock.epoch), 100).status_code == 201
    answer, top_ups = refill_answer(world, card, 20)
    assert len(top_ups) == 40 - 30 and answer.json()["outstanding"] == 40
    assert {(_claims(one.credential)["iat"], _claims(one.credential)["ol"])
            for one in top_ups} == {(midnight, 0)}
    answer, _ = refill_answer(world, card, 1)
    assert (answer.status_code, answer.json()["code"]) == (409, "PAY_HANDLES_OUTSTANDING")


def test_an_online_charge_names_the_handle_and_each_handle_pays_once(world: PayWorld) -> None:
    card = world.card(topup=10_000)
    till = world.terminal()
    [one, other] = refill(world, card, 2)
    paid = world.charge(till, one.code(world.clock.epoch), 1_250)
    assert paid.status_code == 201, paid.text
    body = paid.json()
    assert not {"card_number", "balance_fen"} & body.keys() and body["pay_handle"]
    receipt = _receipt(world, body["receipt"])
    assert receipt.card_number is None and receipt.balance_fen is None
    assert receipt.pay_handle == body["pay_handle"] == _claims(one.credential)["ph"]
    assert world.balance(card.card_number) == 8_750  # the phone's own view still knows
    # Another code of the same credential (a new proof time): the handle is used.
    again = world.charge(till, one.code(world.clock.epoch - 1), 1)
    assert (again.status_code, again.json()["code"]) == (409, "PAY_CODE_USED")
    poor = world.charge(till, other.code(world.clock.epoch), 9_000)
    assert (poor.status_code, poor.json()["code"]) == (402, "INSUFFICIENT_FUNDS")
    assert "balance_fen" not in poor.json()  # the balance would link the card's payments
    view = world.http.get(f"/v1/payments/{body['payment_id']}", headers=till.headers).json()
    assert view["card_number"] is None and view["pay_handle"] == body["pay_handle"]
    audited = world.http.get(f"/v1/payments/{body['payment_id']}",
                             headers=world.as_role("auditor")).json()
    assert audited["card_number"] == card.card_number
    refund = world.http.post(f"/v1/payments/{body['payment_id']}/refund", headers=till.headers,
                             json={"amount_fen": 250, "idempotency_key": secrets.token_hex(8),
                                   "reason": "one bead short"})
    assert refund.status_code == 201, refund.text
    assert "card_number" not in refund.json() and "balance_fen" not in refund.json()
    assert _receipt(world, refund.json()["receipt"]).pay_handle == body["pay_handle"]


def test_the_card_state_reaches_every_handle(world: PayWorld) -> None:
    card = world.card(topup=10_000)
    till = world.terminal()
    batch = refill(world, card, 3)
    assert world.http.post(f"/v1/cards/{card.card_number}/suspend", headers=world.admin,
                           json={"reason": "lost phone"}).status_code == 200
    refused = world.charge(till, batch[0].code(world.clock.epoch), 100)
    assert (refused.status_code, refused.json()["code"]) == (422, "SUSPENDED")
    assert world.http.post(f"/v1/cards/{card.card_number}/reinstate", headers=world.admin,
                           json={"reason": "found"}).status_code == 200
    assert world.charge(till, batch[1].code(world.clock.epoch), 100).status_code == 201
    answer, _ = refill_answer(world, card, 1)
    assert answer.status_code == 200
    assert world.http.post(f"/v1/cards/{card.card_number}/revoke", headers=world.admin,
                           json={"reason": "stolen"}).status_code == 200
    revoked = world.charge(till, batch[2].code(world.clock.epoch), 100)
    assert (revoked.status_code, revoked.json()["code"]) == (422, "REVOKED")
    answer, _ = refill_answer(world, card, 1)
    assert (answer.status_code, answer.json()["code"]) == (409, "CARD_REVOKED")


def test_offline_a_handle_settles_once_and_a_second_code_of_it_is_a_double_spend(
        world: PayWorld) -> None:
    card = world.card(topup=10_000)
    till, other_till = world.terminal(floor=20_000), world.terminal(floor=20_000)
    [one] = refill(world, card, 1)
    t = world.clock.epoch
    [settled] = _upload(world, till, _item(one.code(t), 1_500, t))
    assert settled["outcome"] == "settled", settled
    assert all(settled[name] is None for name in ("card_number", "balance_fen", "overdraft_fen"))
    assert _receipt(world, settled["receipt"]).pay_handle == settled["pay_handle"]
    # The same credential shown again (a new proof) at another shop: a double spend.
    [double] = _upload(world, other_till, _item(one.code(t - 5), 1_500, t - 5))
    assert double["outcome"] == "double_spend" and double["card_suspended"] is True
    assert world.card_state(card.card_number) == "suspended"


def test_offline_limit_is_the_tier_over_the_days_credentials(world: PayWorld) -> None:
    card = world.card(topup=100_000, offline_limit_fen=12_000)  # tier 10,000 of 20,000
    till, other_till = world.terminal(floor=50_000), world.terminal(floor=50_000)
    batch = refill(world, card, world.settings.pay_offline_per_day)
    ol = 10_000 // world.settings.pay_offline_per_day  # the tier over a day's N
    t = world.clock.epoch
    assert {_claims(one.credential)["ol"] for one in batch} == {ol}
    [over] = _upload(world, till, _item(batch[0].code(t), ol + 1, t))
    assert over["code"] == "OFFLINE_LIMIT_EXCEEDED"
    # The card's day across every till: the tier (N x ol), not one credential's ol.
    results = [_upload(world, [till, other_till][n % 2], _item(one.code(t), ol, t))[0]
               for n, one in enumerate(batch)]
    assert [r["outcome"] for r in results] == ["settled"] * len(batch)


def test_a_new_phone_ends_the_old_phones_handles(world: PayWorld) -> None:
    card = world.card(topup=10_000)
    till = world.terminal()
    batch: list[OneUse] = refill(world, card, 2)
    code = world.http.post(f"/v1/cards/{card.card_number}/provisioning-codes",
                           headers=world.admin)
    assert code.status_code in (200, 201), code.text
    from schemas import b64url_encode
    from schemas.provisioning import provisioning_proof_message

    phone = Ed25519Signer(secrets.token_bytes(32), kid="device")
    text = code.json()["provisioning_code"]
    provisioned = world.http.post("/v1/provision", json={
        "provisioning_code": text, "device_key": b64url_encode(phone.public_key),
        "proof": b64url_encode(phone.sign(provisioning_proof_message(text, phone.public_key)))})
    assert provisioned.status_code == 200, provisioned.text
    refused = world.charge(till, batch[0].code(world.clock.epoch), 100)
    assert (refused.status_code, refused.json()["code"]) == (422, "REVOKED")


@SQLITE_ONLY
def test_the_terminal_takes_one_use_codes_online_and_offline(world: PayWorld,
                                                            tmp_path: Path) -> None:
    from shop_kit import Shop

    shop = Shop(world, tmp_path / "shop", world.terminal(floor=3_000))
    card = world.card(topup=10_000)
    batch = refill(world, card, 4)
    t = world.clock.epoch
    exit_code, answer = shop.charge(batch[0].code(t), 1_250)
    assert exit_code == 0, answer
    assert answer["receipt"] == "RECEIPT_OK" and answer.get("balance_fen") is None
    exit_code, output = shop.run("terminal", "charge", "--text", batch[1].code(t), "--amount",
                                 "50", "--at", "2027-01-15T08:00:00Z")
    assert exit_code == 0 and "receipt verified" in output and "balance" not in output
    # Offline the till cannot tell two one-use codes of one card apart (the point), so
    # each is held to its own ol; a second code of one credential is refused.
    unbound = ("--unbound-floor", "3000")
    assert shop.charge(batch[2].code(t), 2_000, *unbound, offline=True)[0] == 0
    assert shop.charge(batch[3].code(t), 2_000, *unbound, offline=True)[0] == 0
    exit_code, refused = shop.charge(batch[2].code(t - 3), 100, *unbound, offline=True)
    assert (exit_code, refused["code"]) == (1, "REPLAYED")
    exit_code, summary = shop.upload()
    assert exit_code == 0 and summary["settled"] == 2, summary
    assert world.balance(card.card_number) == 10_000 - 1_300 - 4_000
