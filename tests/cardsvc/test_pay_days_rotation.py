"""P13.3: a key rotation and the one-use pay credentials pre-issued for later days.

Rotation gives the old key 60 s more: a credential it signed for a later day would be
refused KEY_NOT_VALID_AT_ISSUE on that day. The authority ends those handles (entry
revoked, no longer counted against the cap, the days issued again) and the phone, told
which keys retired when, drops them."""

from __future__ import annotations

from cardsvc_kit import Authority, device_key

from keys import sign_presentation
from schemas import STATUS_REVOKED, Purpose, ResultCode
from verifier import POLICIES, verify_presentation
from wallet_sim.authority import refill_pay, refresh
from wallet_sim.card import Card, read_unverified_credential

DAY = 86_400


def test_a_rotation_ends_the_old_keys_later_days_and_the_phone_drops_them(
        authority: Authority) -> None:
    device = device_key(41)
    bundle = authority.card_with_phone(device)
    now = authority.clock.epoch
    card = Card(card_number=bundle["card_number"],
                credentials={Purpose(p): jws for p, jws in bundle["credentials"].items()},
                server_url="http://testserver", provisioned_at=now, device_seed=device.seed)
    card = refill_pay(card, now=now, client=authority.client, count=20)  # days 0 to 3
    assert {one.kid for one in card.pay_batch} == {"k1"} and len(card.pay_batch) == 20
    doomed = [one for one in card.pay_batch if one.valid_from > now]
    assert len(doomed) == 15
    authority.clock.advance(60)
    assert authority.client.post("/v1/keys/rotate", headers=authority.admin).status_code == 200
    authority.clock.advance(60)
    now = authority.clock.epoch
    # The refreshed bundle is signed by k2, the phone's later days by k1: it asks again.
    card = refresh(card, now=now, client=authority.client)
    today = [one for one in card.pay_batch if one.usable(now)]
    later = [one for one in card.pay_batch if one.valid_from > now]
    assert len(today) == 5 and {one.kid for one in today} == {"k1"}  # still good today
    assert len(later) == 10 and {one.kid for one in later} == {"k2"}  # k1's later ones gone
    state = authority.state()  # the dropped ones' entries: revoked
    for gone in doomed:
        ref = read_unverified_credential(gone.credential).status
        assert state.status_lists[ref.list_id].statuses.get(ref.index) == STATUS_REVOKED
    # Ended, they no longer count: the whole horizon fits under the cap again.
    card = refill_pay(card, now=now, client=authority.client, count=20)
    days = sorted(one.valid_from for one in card.pay_batch)
    midnight = now // DAY * DAY
    assert days == [midnight + d * DAY for d in range(7) for _ in range(5)]
    # What a dropped one would meet at a till synced on its day.
    one = doomed[0]
    authority.clock.advance(one.valid_from + 60 - now)
    result = verify_presentation(
        sign_presentation(one.credential, one.holder, proof_time=authority.clock.epoch,
                          purpose="pay"),
        state=authority.state(), policy=POLICIES["payment"], now=authority.clock.epoch,
        replay_cache=None)
    assert result.code is ResultCode.KEY_NOT_VALID_AT_ISSUE
