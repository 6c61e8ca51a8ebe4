"""P13.3, the issue's test: nothing a merchant sees lets it tell that two payments came
from the same card. 50 pay codes of card A and 50 of card B are charged at one merchant
(most online, some offline); every value the merchant sees is collected, and no value is
shared by two codes of one card unless codes of the other card share it too (values of the
whole population: ``iss``, ``alg``, ``kid``, the day-rounded ``iat``, the list id, ...)."""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from one_use_kit import OneUse, refill, take_for_today
from payments_kit import NOW, PayCard, PayWorld, TerminalHandle

from schemas._jose import inflate_capped, parse_json_object, split_compact
from schemas.presentation import decode_presentation

CODES_PER_CARD = 50
OFFLINE_EVERY = 5  # every fifth code is taken offline and uploaded
AMOUNT = 100  # the merchant's price, the same for both customers

Seen = dict[tuple[str, str], set[tuple[str, int]]]  # (field, value) -> {(card, code no.)}


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from _flatten(f"{prefix}.{name}", inner)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _flatten(f"{prefix}[{i}]", inner)
        yield prefix, repr(value)
    else:
        yield prefix, repr(value)


def _jws_values(prefix: str, jws: str) -> Iterator[tuple[str, str]]:
    _, header, payload, signature = split_compact(jws)
    yield from _flatten(f"{prefix}.header", parse_json_object(header))
    yield f"{prefix}.signature", signature.hex()
    claims = parse_json_object(payload if prefix == "receipt" else inflate_capped(payload, 4096))
    yield from _flatten(f"{prefix}.claims", claims)


def _code_values(code: str) -> Iterator[tuple[str, str]]:
    """Everything a till reads off a scanned pay code."""
    parts = decode_presentation(code)
    yield "qr.text", code
    yield "container.credential_jws", parts.credential_jws
    yield "container.issuer_signature", parts.signature.hex()
    yield "container.proof_time", str(parts.proof_time)
    yield "container.holder_proof", parts.holder_proof.hex()
    yield from _jws_values("credential", parts.credential_jws)


def _answer_values(kind: str, body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Everything in the authority's answer to the till, its receipt field by field."""
    for name, value in body.items():
        if name == "receipt" and value:
            yield from _jws_values("receipt", value)
        yield from _flatten(f"{kind}.{name}", value)


def _charge(world: PayWorld, till: TerminalHandle, one: OneUse, n: int,
            seen: Seen, card_name: str) -> None:
    proof_time = world.clock.epoch
    code = one.code(proof_time)
    values = list(_code_values(code))
    # Offline only with a credential carrying an offline limit (a day's first N; the
    # top-ups after them carry 0 and are refused offline): both cards alike.
    if n % OFFLINE_EVERY == 0 and one.claims["ol"] > 0:
        accepted = (NOW + timedelta(seconds=proof_time - int(NOW.timestamp()))).isoformat()
        answer = world.http.post("/v1/payments/offline-batch", headers=till.headers, json={
            "items": [{"pay_code": code, "amount_fen": AMOUNT, "accepted_at": accepted,
                       "idempotency_key": secrets.token_hex(8)}]})
        assert answer.status_code == 200, answer.text
        [result] = answer.json()["results"]
        assert result["outcome"] == "settled", result
        values += _answer_values("offline", result)
    else:
        answer = world.charge(till, code, AMOUNT)
        assert answer.status_code == 201, answer.text
        values += _answer_values("online", answer.json())
    for value in values:
        seen[value].add((card_name, n))


def _shop(world: PayWorld, till: TerminalHandle, cards: dict[str, PayCard],
          seen: Seen, batches: dict[str, list[OneUse]], *, start: int = 0,
          count: int = CODES_PER_CARD) -> None:
    """Each card pays ``count`` times, alternating customers, the clock moving on; each
    time with a credential for today (the phone refills when it has none)."""
    for n in range(start, start + count):
        for name, card in cards.items():
            batch = batches.setdefault(name, [])
            one = take_for_today(batch, world.clock.epoch)
            if one is None:
                batch += refill(world, card, 20)
                one = take_for_today(batch, world.clock.epoch)
            assert one is not None, (name, n)
            _charge(world, till, one, n, seen, name)
            world.clock.advance(7)


def _linking_values(seen: Seen) -> list[tuple[str, str]]:
    """Values two codes of one card share that no code of the other card has."""
    linking = []
    for value, where in seen.items():
        per_card: dict[str, set[int]] = defaultdict(set)
        for card, n in where:
            per_card[card].add(n)
        if len(per_card) == 1 and len(next(iter(per_card.values()))) > 1:
            linking.append(value)
    return linking


def _two_cards(world: PayWorld) -> dict[str, PayCard]:
    # Different offline limits on the cards (in one tier), different balances.
    return {"A": world.card(topup=900_000, offline_limit_fen=50_000),
            "B": world.card(topup=123_456, offline_limit_fen=25_000)}


def test_fifty_codes_of_each_of_two_cards_share_nothing_card_specific(world: PayWorld) -> None:
    cards = _two_cards(world)
    till = world.terminal(floor=20_000)
    seen: Seen = defaultdict(set)
    _shop(world, till, cards, seen, {})
    assert len({n for where in seen.values() for _, n in where}) == CODES_PER_CARD
    assert _linking_values(seen) == []
    # The check itself bites: the card-bound pay code names the card in every code.
    old_seen: Seen = defaultdict(set)
    for name, card in cards.items():
        for n in range(3):
            for value in _code_values(world.pay_code(card)):
                old_seen[value].add((name, n))
    assert ("credential.claims.cn", repr(cards["A"].card_number)) in _linking_values(old_seen)


def test_one_merchant_on_two_days(world: PayWorld) -> None:
    cards = _two_cards(world)
    till = world.terminal(floor=20_000)
    seen: Seen = defaultdict(set)
    batches: dict[str, list[OneUse]] = {}
    _shop(world, till, cards, seen, batches, count=10)
    world.clock.advance(86_400)  # the next day: the phones' credentials for that day
    _shop(world, till, cards, seen, batches, start=10, count=10)
    assert _linking_values(seen) == []
    iats = {value for field, value in seen if field == "credential.claims.iat"}
    assert len(iats) == 2  # one per day, shared by both cards
    # Alike across cards that day: the same iat, exp and ol for cards of one tier.
    for claim in ("iat", "exp", "ol"):
        for field, value in seen:
            if field == f"credential.claims.{claim}":
                assert {card for card, _ in seen[field, value]} == {"A", "B"}, (claim, value)
