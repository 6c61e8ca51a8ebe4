"""P13.3: the per-card daily offline bound for one-use pay credentials. A till cannot tell
two one-use codes of one card apart (the point), so the bound is in what the authority
issues: each credential is valid on one UTC day, a day has at most N credentials carrying
an offline limit, each carrying the card's tier // N; what a till takes offline from one
card's credentials on one day is therefore at most the tier, as with the card-bound code."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from one_use_kit import OneUse, refill, refill_answer
from payments_kit import NOW, SQLITE_ONLY, PayWorld
from pydantic import ValidationError
from shop_kit import Shop

from cardsvc.settings import get_settings

DAY = 86_400
TIER = 20_000  # the city's default: a card with this offline limit is in the top tier
UNBOUND = ("--unbound-floor", str(TIER))  # the till takes unbound codes up to its floor


@pytest.fixture
def per_day(world: PayWorld, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set N (CARDSVC_PAY_OFFLINE_PER_DAY) for one test, the outstanding cap room for N x 7."""
    def set_n(n: int) -> int:
        monkeypatch.setattr(world.settings, "pay_offline_per_day", n)
        monkeypatch.setattr(world.settings, "pay_handles_outstanding_max", max(40, n * 7))
        return n
    return set_n


def _shop(world: PayWorld, tmp_path: Path) -> Shop:
    return Shop(world, tmp_path / "shop", world.terminal(floor=TIER))


def _offline(shop: Shop, one: OneUse, amount: int, proof_time: int) -> tuple[bool, str]:
    exit_code, answer = shop.charge(one.code(proof_time), amount, *UNBOUND, offline=True)
    return exit_code == 0, answer.get("code", "")


@SQLITE_ONLY
@pytest.mark.parametrize("n", [1, 5, 8])
def test_a_thief_at_one_till_on_one_day_takes_at_most_the_daily_limit(
        world: PayWorld, per_day: Any, tmp_path: Path, n: int) -> None:
    """A thief with the unlocked phone refills all it can and shows at one offline till
    every credential for today for as much as the till takes, one of them again, and the
    first of each later day."""
    per_day(n)
    card = world.card(topup=100_000, offline_limit_fen=TIER)
    batch: list[OneUse] = []
    while True:  # all it can get: the horizon (N a day), never a top-up (none used)
        answer, more = refill_answer(world, card, 20)
        if answer.status_code != 200:
            break
        batch += more
    assert answer.json()["code"] == "PAY_HANDLES_OUTSTANDING" and len(batch) == n * 7
    shop = _shop(world, tmp_path)
    t, taken, refusals = world.clock.epoch, 0, []
    tries = [(one, one.claims["ol"]) for one in batch[::n if n > 1 else 1]]
    tries += [(one, one.claims["ol"]) for one in batch[1:n]] + [(batch[0], 1)]
    for one, amount in tries:
        ok, code = _offline(shop, one, amount, t)
        taken += amount if ok else 0
        refusals += [] if ok else [code]
        t -= 1
    assert taken == n * (TIER // n) <= TIER
    # Each later day NOT_YET_VALID; today's first again: its ol is spent (and it is a replay).
    assert refusals == ["NOT_YET_VALID"] * 6 + ["OFFLINE_LIMIT_EXCEEDED"]


@SQLITE_ONLY
def test_a_credential_for_a_later_day_is_refused_today_online_and_offline(
        world: PayWorld, tmp_path: Path) -> None:
    card = world.card(topup=10_000)
    batch = refill(world, card, world.settings.pay_offline_per_day + 1)
    tomorrow = batch[-1]
    assert tomorrow.claims["iat"] == world.clock.epoch // DAY * DAY + DAY
    shop = _shop(world, tmp_path)
    assert _offline(shop, tomorrow, 100, world.clock.epoch) == (False, "NOT_YET_VALID")
    online = world.charge(world.terminal(), tomorrow.code(world.clock.epoch), 100)
    assert (online.status_code, online.json()["code"]) == (422, "NOT_YET_VALID")


@SQLITE_ONLY
def test_an_online_only_top_up_is_refused_offline_and_paid_online(
        world: PayWorld, per_day: Any, tmp_path: Path) -> None:
    per_day(1)
    card = world.card(topup=10_000)
    till = world.terminal()
    [today] = refill(world, card, 1)
    assert world.charge(till, today.code(world.clock.epoch), 100).status_code == 201
    batch = refill(world, card, 8)  # days 2 to 7, then today online only
    top_ups = [one for one in batch if one.valid_at(world.clock.epoch)]
    assert len(top_ups) == 2 and {one.claims["ol"] for one in top_ups} == {0}
    shop = _shop(world, tmp_path)
    assert _offline(shop, top_ups[0], 1, world.clock.epoch) == (False, "OFFLINE_LIMIT_EXCEEDED")
    paid = world.charge(till, top_ups[1].code(world.clock.epoch), 100)
    assert paid.status_code == 201, paid.text
    # Never more than N credentials with an offline limit on a day: the next are ol 0 too.
    again = [one for one in refill(world, card, 20) if one.valid_at(world.clock.epoch)]
    assert again and {one.claims["ol"] for one in again} == {0}


def _used_online(world: PayWorld, one: OneUse) -> None:
    answer = world.charge(world.terminal(), one.code(world.clock.epoch), 100)
    assert answer.status_code == 201, answer.text


def _settled_offline(world: PayWorld, one: OneUse) -> None:
    till = world.terminal(floor=TIER)
    t = world.clock.epoch
    answer = world.http.post("/v1/payments/offline-batch", headers=till.headers, json={
        "items": [{"pay_code": one.code(t), "amount_fen": 100,
                   "idempotency_key": secrets.token_hex(8),
                   "accepted_at": (NOW + timedelta(seconds=t - int(NOW.timestamp())))
                   .isoformat()}]})
    assert answer.json()["results"][0]["outcome"] == "settled", answer.text


@SQLITE_ONLY
@pytest.mark.parametrize("use", [_used_online, _settled_offline], ids=["online", "settled"])
def test_a_used_handle_shown_again_offline_after_a_sync_is_refused(
        world: PayWorld, tmp_path: Path, use: Any) -> None:
    """The thief keeps a copy of a credential the holder paid with, and shows it (a new
    proof) at another till that has synced since: the handle's status entry is invalid."""
    card = world.card(topup=10_000)
    [one, other] = refill(world, card, 2)
    shop = _shop(world, tmp_path)
    use(world, one)
    ok, _ = _offline(shop, other, 100, world.clock.epoch)  # before the sync: fine
    assert ok
    assert shop.run("sync", "--server", world.url, "--root", world.root_fingerprint,
                    "--at", "2027-01-15T08:00:00Z")[0] == 0
    assert _offline(shop, one, 100, world.clock.epoch - 2) == (False, "REVOKED")


def test_the_offline_days_must_fit_the_outstanding_cap(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="CARDSVC_PAY_HANDLES_OUTSTANDING_MAX"):
        get_settings(data_dir=tmp_path, pay_offline_per_day=6, one_use_pay_lifetime_days=7,
                     pay_handles_outstanding_max=40)
    assert get_settings(data_dir=tmp_path, pay_offline_per_day=8,
                        pay_handles_outstanding_max=56).pay_offline_per_day == 8
