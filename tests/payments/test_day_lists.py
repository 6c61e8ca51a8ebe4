"""P13.3: a one-use pay credential's status entry is in its day's own list (``p20270115``),
shared by every credential of that day like its ``iat``; once the day and the grace are
over, the list is retired: off the index, the timestamp and the static mirror, answered
STATUS_LIST_NOT_FOUND, dropped by a verifier's sync, and its rows deleted at the next batch.
Card bundles keep the numbered lists."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from one_use_kit import OneUse, refill
from payments_kit import SQLITE_ONLY, PayWorld
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.models import AuditEntry, Card, PayHandle, StatusEntry, StatusListRecord
from cardsvc.publisher import STATIC_INDEX, Publisher
from cardsvc.services.bootstrap import open_keyring
from schemas.codes import ResultCode
from schemas.status_list import DAY_LIST_GRACE_SECONDS, day_list_id
from verifier.cache import VerifierCache
from verifier.check import verify_presentation
from verifier.policy import POLICIES
from verifier.replay import MemoryReplayCache
from verifier.sync import sync_cache

DAY = 86_400
PAYMENT = POLICIES["payment"]


def _list_id(one: OneUse) -> str:
    return str(one.claims["st"][0])


def _today(world: PayWorld) -> int:
    return int(world.clock.epoch) // DAY * DAY


def _retire(world: PayWorld, day: int) -> None:
    """Move the clock to the first second the day's list is retired."""
    world.clock.advance(day + DAY + DAY_LIST_GRACE_SECONDS - world.clock.epoch)


def _index(world: PayWorld) -> list[str]:
    answer = world.http.get("/v1/status-lists")
    assert answer.status_code == 200, answer.text
    return [entry["id"] for entry in answer.json()["status_lists"]]


def _sync(world: PayWorld, cache: VerifierCache) -> Any:
    return sync_cache(cache, server=world.url, root_fingerprint=world.root_fingerprint,
                      now=world.clock.epoch)


def _check(cache: VerifierCache, code: str, now: int, **state_changes: Any) -> ResultCode:
    state = dataclasses.replace(cache.load().state, **state_changes)
    return verify_presentation(code, state=state, policy=PAYMENT, now=now,
                               replay_cache=MemoryReplayCache()).code


@pytest.fixture
def per_day(world: PayWorld, monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_n(n: int) -> None:
        monkeypatch.setattr(world.settings, "pay_offline_per_day", n)
    return set_n


@SQLITE_ONLY
def test_a_batch_over_three_days_puts_each_credential_in_its_days_list(
        world: PayWorld, per_day: Any) -> None:
    per_day(2)
    first, second = world.card(topup=10_000), world.card(topup=10_000)
    batch, other = refill(world, first, 6), refill(world, second, 6)
    today = _today(world)
    for one in batch + other:
        assert _list_id(one) == day_list_id(one.claims["iat"])
    assert [one.claims["iat"] for one in batch] == [today, today, today + DAY, today + DAY,
                                                    today + 2 * DAY, today + 2 * DAY]
    # Two cards' credentials of one day name one list: it links nothing.
    assert [_list_id(one) for one in batch] == [_list_id(one) for one in other]
    assert {_list_id(one) for one in batch} <= set(_index(world))
    # Published ahead for the whole horizon, so a till that synced before a day's first
    # credential was issued holds its list.
    assert {day_list_id(today + n * DAY) for n in range(7)} <= set(_index(world))
    # The card's bundle keeps a numbered list.
    bundle_list = world.database.transact(lambda session: session.scalar(
        select(Card.status_list_id).where(Card.card_number == first.card_number)),
        readonly=True)
    assert bundle_list is not None and bundle_list.isdigit()


def test_a_days_list_retires_after_the_day_and_the_grace(
        world: PayWorld, tmp_path: Path) -> None:
    card = world.card(topup=10_000)
    [today_one] = refill(world, card, 1)
    day, retired = _today(world), _list_id(today_one)
    cache = VerifierCache(tmp_path / "verifier")
    _sync(world, cache)
    assert retired in cache.load().contents.status_lists
    out = tmp_path / "mirror"
    publisher = Publisher(world.settings, world.database, open_keyring(world.settings))
    publisher.write_static(out, world.clock.now)
    assert (out / "v1/status-lists" / retired).exists()

    _retire(world, day)
    world.clock.advance(-1)  # the last second of the grace: still served
    assert retired in _index(world)
    world.clock.advance(1)
    assert retired not in _index(world)
    answer = world.http.get(f"/v1/status-lists/{retired}")
    assert (answer.status_code, answer.json()["code"]) == (404, "STATUS_LIST_NOT_FOUND")
    # The static mirror: neither written nor kept, nor in its index.
    written = publisher.write_static(out, world.clock.now)
    assert f"v1/status-lists/{retired}" not in written
    assert not (out / "v1/status-lists" / retired).exists()
    assert retired not in (out / STATIC_INDEX).read_text()
    # The verifier's sync drops it (the timestamp no longer names it) and still verifies a
    # card-bound code.
    report = _sync(world, cache)
    assert retired in report.removed_status_lists
    snapshot = cache.load()
    assert retired not in snapshot.contents.status_lists
    assert retired not in (cache.directory / "floor.json").read_text()
    assert snapshot.state.timestamp is not None
    assert retired not in snapshot.state.timestamp.status_lists
    assert _check(cache, world.pay_code(card), world.clock.epoch) == ResultCode.OK
    # A credential of the retired day is refused EXPIRED (before any status list) by a
    # verifier and by the authority.
    assert _check(cache, today_one.code(world.clock.epoch), world.clock.epoch) \
        == ResultCode.EXPIRED
    online = world.charge(world.terminal(), today_one.code(world.clock.epoch), 100)
    assert (online.status_code, online.json()["code"]) == (422, "EXPIRED")

    # The next batch deletes the retired list's rows (the handles stay), audited.
    refill(world, world.card(topup=10_000), 1)

    def rows(session: Session) -> tuple[Any, ...]:
        return (session.get(StatusListRecord, retired),
                session.scalar(select(func.count()).select_from(StatusEntry)
                               .where(StatusEntry.list_id == retired)),
                session.scalar(select(PayHandle.status_list_id).join(Card).where(
                    Card.card_number == card.card_number)),
                session.scalars(select(AuditEntry.details).where(
                    AuditEntry.action == "status.day_lists_retired")).all())

    record, entries, handle_list, events = world.database.transact(rows, readonly=True)
    assert (record, entries, handle_list) == (None, 0, retired)
    assert any(retired in details for details in events)


@SQLITE_ONLY
def test_a_future_days_credential_without_its_list_synced_is_refused(
        world: PayWorld, tmp_path: Path) -> None:
    card = world.card(topup=10_000)
    batch = refill(world, card, world.settings.pay_offline_per_day + 1)
    tomorrow = batch[-1]
    world.clock.advance(tomorrow.claims["iat"] - 60 - world.clock.epoch)  # 23:59 today
    cache = VerifierCache(tmp_path / "verifier")
    _sync(world, cache)
    held = cache.load().state.status_lists
    assert _list_id(tomorrow) in held
    # A verifier that has not synced tomorrow's list yet.
    without = {list_id: claims for list_id, claims in held.items()
               if list_id != _list_id(tomorrow)}
    now = world.clock.epoch
    code = tomorrow.code(now)
    # Today: NOT_YET_VALID (dates come before the status); on its day, it fails closed.
    assert _check(cache, code, now, status_lists=without) == ResultCode.NOT_YET_VALID
    on_the_day = tomorrow.claims["iat"] + 60
    assert _check(cache, tomorrow.code(on_the_day), on_the_day) == ResultCode.OK
    assert _check(cache, tomorrow.code(on_the_day), on_the_day,
                  status_lists=without) == ResultCode.STATUS_UNAVAILABLE


@SQLITE_ONLY
def test_revoking_a_card_reaches_its_handles_in_their_days_lists(
        world: PayWorld, tmp_path: Path) -> None:
    card = world.card(topup=10_000)
    batch = refill(world, card, world.settings.pay_offline_per_day + 1)
    assert world.http.post(f"/v1/cards/{card.card_number}/revoke", headers=world.admin,
                           json={"reason": "stolen"}).status_code == 200
    cache = VerifierCache(tmp_path / "verifier")
    _sync(world, cache)
    held = cache.load().state.status_lists
    for one in (batch[0], batch[-1]):
        list_id, index = one.claims["st"]
        assert held[list_id].statuses.get(index) == 1, list_id
    assert _check(cache, batch[0].code(world.clock.epoch), world.clock.epoch) \
        == ResultCode.REVOKED
