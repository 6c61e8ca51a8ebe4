"""P13.3: the phone keeps its one-use pay credentials per day: today's are shown first,
later days' kept for their day, expired (and old several-day) ones dropped; with none for
today it says PAY_BATCH_EMPTY and never falls back to the card-bound pay code."""

from __future__ import annotations

import dataclasses
import secrets

import pytest

from keys import Ed25519Signer, sign_credential
from schemas import Purpose
from support import DAY, ISSUER_KEY, NOW, one_use_credential
from wallet_sim.card import Card, OneUsePay, present, take_one_use_pay
from wallet_sim.errors import WalletError, WalletErrorCode

MIDNIGHT = NOW - NOW % DAY


def _one(day: int, *, days_long: int = 1) -> OneUsePay:
    seed = secrets.token_bytes(32)
    start = MIDNIGHT + day * DAY
    return OneUsePay(sign_credential(one_use_credential(
        issued_at=start, expires_at=start + days_long * DAY,
        holder_key=Ed25519Signer(seed).public_key, pay_handle=secrets.token_bytes(16)),
        ISSUER_KEY), seed)


def _card(*batch: OneUsePay) -> Card:
    return Card(card_number="3300000000000017", credentials={}, server_url="http://x",
                provisioned_at=NOW, device_seed=bytes(32), pay_batch=batch, one_use_pay=True)


def test_today_first_later_days_kept_expired_and_old_ones_dropped() -> None:
    yesterday, today, tomorrow, old = _one(-1), _one(0), _one(1), _one(-1, days_long=7)
    card = _card(tomorrow, old, yesterday, today)
    assert card.pay_today(NOW) == 1 and card.unused_pay(NOW) == 3  # old: 7 days, unexpired
    card, taken = take_one_use_pay(card, now=NOW)
    assert taken == today and card.pay_batch == (tomorrow,)
    card, none = take_one_use_pay(card, now=NOW)
    assert none is None and card.pay_batch == (tomorrow,)  # kept for its day
    with pytest.raises(WalletError) as refused:
        present(dataclasses.replace(card, credentials={Purpose.PAY: today.credential}),
                Purpose.PAY, now=NOW)
    assert refused.value.code is WalletErrorCode.PAY_BATCH_EMPTY  # never the old pay code
    card, next_day = take_one_use_pay(card, now=NOW + DAY)
    assert next_day == tomorrow and card.pay_batch == ()
