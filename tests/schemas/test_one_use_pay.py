"""P13.3: the one-use pay credential (``ph`` instead of ``cn``) and the receipt without
the card number."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys import sign_credential, sign_presentation
from schemas import Purpose, ResultCode, StatusRef
from schemas.codes import Malformed
from schemas.credential import Credential
from schemas.receipt import Receipt
from support import DAY, DEVICE, ISSUER_KEY, NOW, World, credential, one_use_credential
from verifier import POLICIES, verify_presentation

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "json"
                     / "credential.schema.json").read_text())


@given(st.binary(min_size=16, max_size=16), st.integers(0, 2**32 - 1), st.integers(0, 10**9))
def test_round_trip_and_schema(handle: bytes, index: int, limit: int) -> None:
    claims = one_use_credential(pay_handle=handle,
                                status=StatusRef("7", index),
                                offline_limit_fen=limit)
    payload = claims.to_payload()
    assert "cn" not in payload and payload["ph"]
    jsonschema.validate(payload, SCHEMA)
    assert Credential.from_payload(payload) == claims
    assert claims.is_one_use and not credential(Purpose.PAY).is_one_use


@pytest.mark.parametrize("change", [
    {"cn": "3300012345678901"},          # both a card number and a handle
    {"ol": None},                        # the offline limit is required
    {"ph": "AAAA"},                      # a handle is 16 bytes
    {"sn": "X"},                         # unregistered claim
])
def test_refused_forms(change: dict[str, object]) -> None:
    payload = one_use_credential().to_payload()
    for name, value in change.items():
        if value is None:
            del payload[name]
        else:
            payload[name] = value
    with pytest.raises(Malformed):
        Credential.from_payload(payload)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, SCHEMA)


def test_verifies_under_the_payment_policy_and_lifetime_is_capped() -> None:
    world = World()
    token = sign_credential(one_use_credential(), ISSUER_KEY)
    text = sign_presentation(token, DEVICE, proof_time=NOW, purpose="pay")
    result = verify_presentation(text, state=world.state(), policy=POLICIES["payment"],
                                 now=NOW, replay_cache=None)
    assert result.ok, result
    assert result.to_json()["card"] is None and result.to_json()["pay_handle"]
    midnight = NOW - NOW % DAY
    # Valid on one day only: a second longer is LIFETIME_TOO_LONG (the old 7 days too).
    for exp, code in ((midnight + DAY, ResultCode.OK),
                      (midnight + DAY + 1, ResultCode.LIFETIME_TOO_LONG),
                      (midnight + 7 * DAY, ResultCode.LIFETIME_TOO_LONG)):
        token = sign_credential(one_use_credential(expires_at=exp), ISSUER_KEY)
        text = sign_presentation(token, DEVICE, proof_time=NOW, purpose="pay")
        answer = verify_presentation(text, state=world.state(), policy=POLICIES["payment"],
                                     now=NOW, replay_cache=None)
        assert answer.code is code, (exp - midnight, answer)


def test_a_credential_for_a_later_day_is_not_yet_valid_today() -> None:
    """A pre-issued credential for tomorrow cannot be spent today (online or offline)."""
    world = World()
    midnight = NOW - NOW % DAY
    tomorrow = sign_credential(one_use_credential(issued_at=midnight + DAY,
                                                  expires_at=midnight + 2 * DAY), ISSUER_KEY)
    text = sign_presentation(tomorrow, DEVICE, proof_time=NOW, purpose="pay")
    refused = verify_presentation(text, state=world.state(), policy=POLICIES["payment"],
                                  now=NOW, replay_cache=None)
    assert refused.code is ResultCode.NOT_YET_VALID
    later = midnight + DAY + 60
    text = sign_presentation(tomorrow, DEVICE, proof_time=later, purpose="pay")
    accepted = verify_presentation(text, state=world.state(), policy=POLICIES["payment"],
                                   now=later, replay_cache=None)
    assert accepted.code is not ResultCode.NOT_YET_VALID, accepted


def _receipt(**changes: object) -> Receipt:
    fields: dict[str, object] = dict(
        receipt_id="pay_1", kind="payment", payment_id="pay_1", issuer="CN-YW",
        card_number=None, merchant_id=1, terminal_id=2, amount_fen=100, balance_fen=None,
        overdraft_fen=None, mode="online", issued_at=NOW, accepted_at=NOW, pay_code="pc",
        pay_handle="AAECAwQFBgcICQoLDA0ODw")
    fields.update(changes)
    return Receipt(**fields)  # type: ignore[arg-type]


def test_receipt_with_a_handle_carries_no_card_number_or_balance() -> None:
    payload = _receipt().to_payload()
    assert not {"cn", "bal", "od"} & payload.keys() and payload["ph"]
    assert Receipt.from_payload(payload) == _receipt()
    for claim, value in (("cn", "3300012345678901"), ("bal", 5), ("od", 0)):
        with pytest.raises(Malformed):
            Receipt.from_payload(payload | {claim: value})
    card_receipt = _receipt(card_number="3300012345678901", balance_fen=5, overdraft_fen=0,
                            pay_handle=None)
    assert Receipt.from_payload(card_receipt.to_payload()) == card_receipt


def test_a_one_use_pay_code_fits_the_pay_qr_budget() -> None:
    """Version 13 at error correction M, like today's pay code (docs/DESIGN.md section 5),
    unbound and bound (FMC2), at the worst case: the largest index, a random handle."""
    from schemas.qr import presentation_qr
    from support import SALE

    token = sign_credential(one_use_credential(status=StatusRef("9", 131_071),
                                               pay_handle=b"\xff" * 16), ISSUER_KEY)
    for digest in (None, SALE.digest):
        text = sign_presentation(token, DEVICE, proof_time=NOW, purpose="pay",
                                 challenge_digest=digest)
        assert presentation_qr(text).version <= 13
