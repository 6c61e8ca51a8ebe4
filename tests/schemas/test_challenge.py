"""Sale challenges (``FMCC1:``) and bound pay codes (``FMC2:``): round trip, canonical
text, refusals with codes, the QR budget."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import ResultCode, StatusRef
from schemas.challenge import (
    CHALLENGE_PREFIX,
    MAX_CHALLENGE_CHARS,
    Challenge,
    decode_challenge,
    new_challenge,
)
from schemas.codes import FmcError
from schemas.presentation import BOUND_PREFIX, decode_presentation
from schemas.qr import presentation_qr
from schemas.receipt import MAX_AMOUNT_FEN
from support import NOW, SALE, bound_present

LARGEST = Challenge(2**31 - 1, 2**31 - 1, 10_000_000, b"\xff" * 16, 2**32 - 1)


@pytest.mark.parametrize("challenge", [SALE, LARGEST, replace(SALE, nonce=bytes(16))])
def test_round_trip(challenge: Challenge) -> None:
    assert decode_challenge(challenge.text) == challenge
    assert challenge.text.startswith(CHALLENGE_PREFIX)
    assert challenge.text[len(CHALLENGE_PREFIX):].isdigit()


def test_each_field_changes_the_digest() -> None:
    variants = [replace(SALE, merchant_id=8), replace(SALE, terminal_id=4),
                replace(SALE, amount_fen=1251), replace(SALE, nonce=bytes(range(1, 17))),
                replace(SALE, issued_at=NOW + 1)]
    assert len({SALE.digest, *(v.digest for v in variants)}) == 6


def test_new_challenges_have_fresh_nonces() -> None:
    made = {new_challenge(merchant_id=1, terminal_id=1, amount_fen=1, now=NOW).nonce
            for _ in range(20)}
    assert len(made) == 20


def _container_text(container: bytes) -> str:
    return CHALLENGE_PREFIX + str(int.from_bytes(container, "big"))


_TAIL = bytes(16) + NOW.to_bytes(4, "big")


@pytest.mark.parametrize(("text", "code"), [
    ("", ResultCode.MALFORMED),
    ("FMC1:123", ResultCode.MALFORMED),
    ("FMCC2:123", ResultCode.UNSUPPORTED_VERSION),
    ("FMCC1:", ResultCode.MALFORMED),
    ("FMCC1:0123", ResultCode.MALFORMED),  # not canonical
    ("FMCC1:12a", ResultCode.MALFORMED),
    ("FMCC1:" + "\u0663" * 10, ResultCode.MALFORMED),  # other scripts' digits
    ("FMCC1:" + "9" * 200, ResultCode.MALFORMED),  # oversize
    (_container_text(b"\x02\x07\x03\x01" + _TAIL), ResultCode.MALFORMED),  # form
    (_container_text(b"\x01\x87\x00\x03\x01" + _TAIL), ResultCode.MALFORMED),  # non-minimal
    (_container_text(b"\x01\x00\x03\x01" + _TAIL), ResultCode.MALFORMED),  # merchant 0
    (_container_text(b"\x01\x07\x03\x00" + _TAIL), ResultCode.MALFORMED),  # amount 0
    (_container_text(b"\x01\x07\x03\x01" + _TAIL[:-1]), ResultCode.MALFORMED),  # short
    (_container_text(b"\x01\x07\x03\x01" + _TAIL + b"\x00"), ResultCode.MALFORMED),  # long
    (_container_text(b"\x01\x07\x03\x81\xad\xe2\x04" + _TAIL), ResultCode.MALFORMED),  # > max
])
def test_refusals(text: str, code: ResultCode) -> None:
    with pytest.raises(FmcError) as refused:
        decode_challenge(text)
    assert refused.value.code is code


def test_a_bound_code_carries_the_challenge_digest() -> None:
    code = bound_present(SALE)
    assert code.startswith(BOUND_PREFIX)
    assert decode_presentation(code).challenge_digest == SALE.digest


def test_the_worst_case_bound_pay_code_fits_the_pay_budget() -> None:
    code = bound_present(LARGEST, status=StatusRef("9", 131_071))
    assert presentation_qr(code).version <= 13


@given(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1), st.integers(1, MAX_AMOUNT_FEN),
       st.binary(min_size=16, max_size=16), st.integers(0, 2**32 - 1))
def test_every_challenge_has_one_text_that_decodes_back(
    merchant_id: int, terminal_id: int, amount_fen: int, nonce: bytes, issued_at: int,
) -> None:
    challenge = Challenge(merchant_id, terminal_id, amount_fen, nonce, issued_at)
    text = challenge.text
    assert decode_challenge(text) == challenge
    assert len(text) <= MAX_CHALLENGE_CHARS
