"""One-use pay credentials (P13.3) for tests: refill a card's batch, make codes from it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from payments_kit import PayCard, PayWorld

from keys import Ed25519Signer, sign_presentation
from schemas import b64url_encode
from schemas._jose import inflate_capped, parse_json_object, split_compact
from schemas.provisioning import pay_batch_proof_message


@dataclass(frozen=True)
class OneUse:
    """One one-use pay credential and the private half of its fresh holder key."""

    credential: str
    holder: Ed25519Signer

    def code(self, proof_time: int) -> str:
        return sign_presentation(self.credential, self.holder, proof_time=proof_time,
                                 purpose="pay")

    @property
    def claims(self) -> dict[str, Any]:
        _, _, payload, _ = split_compact(self.credential)
        return parse_json_object(inflate_capped(payload, 4096))

    def valid_at(self, now: int) -> bool:
        """On its day: a credential for a later day is NOT_YET_VALID, an earlier EXPIRED."""
        return bool(self.claims["iat"] <= now < self.claims["exp"])


def take_for_today(batch: list[OneUse], now: int) -> OneUse | None:
    """The first credential of ``batch`` valid now, taken out of it (None: none today)."""
    for n, one in enumerate(batch):
        if one.valid_at(now):
            return batch.pop(n)
    return None


def pay_batch_request(card: PayCard, holders: list[Ed25519Signer], now: int, *,
                      device: Ed25519Signer | None = None) -> dict[str, Any]:
    signer = device or card.device
    keys = [holder.public_key for holder in holders]
    proof = signer.sign(pay_batch_proof_message(card.card_number, signer.public_key, now, keys))
    return {"card_number": card.card_number, "device_key": b64url_encode(signer.public_key),
            "time": now, "proof": b64url_encode(proof),
            "holder_keys": [b64url_encode(key) for key in keys]}


def refill_answer(world: PayWorld, card: PayCard, count: int) -> tuple[Any, list[OneUse]]:
    holders = [Ed25519Signer(secrets.token_bytes(32), kid="holder") for _ in range(count)]
    answer = world.http.post("/v1/wallet/pay-batch",
                             json=pay_batch_request(card, holders, world.clock.epoch))
    if answer.status_code != 200:
        return answer, []
    body = answer.json()
    return answer, [OneUse(jws, holder) for jws, holder in zip(body["credentials"], holders,
                                                               strict=False)]


def refill(world: PayWorld, card: PayCard, count: int = 20) -> list[OneUse]:
    answer, batch = refill_answer(world, card, count)
    assert answer.status_code == 200, answer.text
    return batch
