"""P13.3: the pay-batch answer comes from outside the phone. Whatever it holds, a refill
either keeps exactly the one-use credentials bound to the holder keys this phone just made
or refuses with BAD_SERVER_RESPONSE, and the card the caller holds is unchanged; a
malformed ``retired_keys`` drops nothing."""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from keys import Ed25519Signer, sign_credential
from schemas import Purpose, b64url_decode
from support import DAY, ISSUER_KEY, NOW, credential, one_use_credential
from wallet_sim.authority import refill_pay
from wallet_sim.card import Card, OneUsePay
from wallet_sim.errors import WalletError, WalletErrorCode

MIDNIGHT = NOW - NOW % DAY
Answer = Callable[[list[bytes]], Any]


def _one_use(holder_key: bytes, day: int = 0) -> str:
    start = MIDNIGHT + day * DAY
    return sign_credential(one_use_credential(
        issued_at=start, expires_at=start + DAY, holder_key=holder_key,
        pay_handle=secrets.token_bytes(16)), ISSUER_KEY)


def _held() -> OneUsePay:
    seed = secrets.token_bytes(32)
    return OneUsePay(_one_use(Ed25519Signer(seed).public_key, day=1), seed)


def _card() -> Card:
    return Card(card_number="3300000000000017", credentials={}, server_url="http://x",
                provisioned_at=NOW, device_seed=bytes(32), pay_batch=(_held(),),
                one_use_pay=True)


def _refill(card: Card, answer: Answer) -> Card:
    def handler(request: httpx.Request) -> httpx.Response:
        keys = [b64url_decode(key) for key in json.loads(request.content)["holder_keys"]]
        return httpx.Response(201, json=answer(keys))

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        return refill_pay(card, now=NOW, client=client, count=3)


REFUSED: list[tuple[str, Answer]] = [
    ("no credentials", lambda keys: {}),
    ("credentials not a list", lambda keys: {"credentials": _one_use(keys[0])}),
    ("an empty list", lambda keys: {"credentials": []}),
    ("more than asked", lambda keys: {"credentials": [_one_use(k) for k in keys * 2]}),
    ("a number", lambda keys: {"credentials": [7]}),
    ("a huge string", lambda keys: {"credentials": ["e" * 100_000]}),
    ("not a JWS", lambda keys: {"credentials": ["a.b.c"]}),
    ("a card-bound pay credential", lambda keys: {"credentials": [sign_credential(
        credential(Purpose.PAY, holder_key=keys[0]), ISSUER_KEY)]}),
    ("bound to another key", lambda keys: {"credentials": [
        _one_use(Ed25519Signer.generate().public_key)]}),
    ("bound to the keys out of order", lambda keys: {"credentials": [
        _one_use(keys[1]), _one_use(keys[0])]}),
    ("an answer that is a list", lambda keys: [_one_use(k) for k in keys]),
]


@pytest.mark.parametrize(("case", "answer"), REFUSED, ids=[case for case, _ in REFUSED])
def test_a_hostile_answer_is_refused_and_the_card_kept(case: str, answer: Answer) -> None:
    card = _card()
    before = dataclasses.replace(card)
    with pytest.raises(WalletError) as refused:
        _refill(card, answer)
    assert refused.value.code is WalletErrorCode.BAD_SERVER_RESPONSE, case
    assert card == before


@pytest.mark.parametrize("retired", [None, "k1", [["k1", 0]], {"k1": "0"}, {"k1": True},
                                     {"k1": 1.5}, {"": None}, {"k1": [0]}])
def test_a_malformed_retired_keys_drops_nothing(retired: object) -> None:
    card = _card()
    refilled = _refill(card, lambda keys: {
        "credentials": [_one_use(key) for key in keys], "retired_keys": retired})
    assert card.pay_batch[0] in refilled.pay_batch and len(refilled.pay_batch) == 4


def test_the_credentials_kept_are_those_bound_to_the_new_keys() -> None:
    card = _card()
    refilled = _refill(card, lambda keys: {"credentials": [_one_use(key) for key in keys[:2]]})
    new = [one for one in refilled.pay_batch if one not in card.pay_batch]
    assert len(new) == 2  # fewer than asked is fine (the outstanding cap)
