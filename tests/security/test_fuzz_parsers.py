"""Fuzzing every parser with hypothesis: bounded in CI, longer with `make fuzz`.

Each parser must answer every input with a result or an FmcError carrying a code, never
another exception. The number of inputs tried is printed at the end of the run.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import Credential, Purpose, ResultCode, StatusList, decode_presentation
from schemas._jose import inflate_capped, parse_json_object
from schemas.challenge import decode_challenge
from schemas.codes import FmcError
from support import (
    FUZZ_INPUTS,
    NOW,
    ROOT_FINGERPRINT,
    SALE,
    TIMESTAMP_KEYS,
    World,
    bound_present,
    count_fuzz_input,
    credential,
    present,
    timestamp_jwt,
)
from verifier import POLICIES, verify_presentation, verify_status_list, verify_trust_list
from verifier.timestamp import verify_timestamp

pytestmark = pytest.mark.fuzz
B64URL_AND_DOT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."

WORLD = World()
STATE = WORLD.state()
TRUST_JWT = WORLD.trust_list_jwt()
STATUS_JWT = WORLD.status_list_jwt()
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


def _mutate(text: str, position: int, replacement: str) -> str:
    index = position % len(text)
    return text[:index] + replacement + text[index + 1 :]


def _expect_code(call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except FmcError as refused:
        assert isinstance(refused.code, ResultCode)


@given(st.one_of(st.binary(max_size=3000), st.text(max_size=3000)))
def test_fuzz_presentation_parser(unverified: bytes | str) -> None:
    count_fuzz_input("presentation")
    _expect_code(lambda: decode_presentation(unverified))
    result = verify_presentation(unverified, state=STATE, policy=POLICIES["counter"], now=NOW,
                                 replay_cache=None)
    assert result.code is not ResultCode.OK


@given(st.integers(0, 10_000), st.sampled_from("0123456789"), st.sampled_from(list(Purpose)))
def test_fuzz_mutated_presentation(position: int, digit: str, purpose: Purpose) -> None:
    count_fuzz_input("presentation-mutated")
    text = present(purpose)
    mutated = "FMC1:" + _mutate(text[5:], position, digit)
    result = verify_presentation(mutated, state=STATE, policy=POLICIES["hospital"], now=NOW,
                                 replay_cache=None)
    assert mutated == text or result.code is not ResultCode.OK


@given(st.one_of(st.text(max_size=200),
                st.text(alphabet="0123456789", max_size=120).map(lambda d: "FMCC1:" + d)))
def test_fuzz_challenge_parser(unverified: str) -> None:
    count_fuzz_input("challenge")
    _expect_code(lambda: decode_challenge(unverified))


@given(st.integers(0, 10_000), st.sampled_from("0123456789"))
def test_fuzz_mutated_bound_pay_code(position: int, digit: str) -> None:
    count_fuzz_input("bound-pay-code-mutated")
    text = bound_present(SALE)
    mutated = "FMC2:" + _mutate(text[5:], position, digit)
    result = verify_presentation(mutated, state=STATE, policy=POLICIES["payment"], now=NOW,
                                 replay_cache=None, challenge=SALE)
    assert mutated == text or result.code is not ResultCode.OK


@given(st.text(max_size=2000))
def test_fuzz_trust_list_parser(unverified: str) -> None:
    count_fuzz_input("trust-list")
    _expect_code(lambda: verify_trust_list(unverified, root_fingerprint=ROOT_FINGERPRINT))


@given(st.integers(0, 10_000), st.sampled_from(B64URL_AND_DOT))
def test_fuzz_mutated_trust_list(position: int, char: str) -> None:
    count_fuzz_input("trust-list-mutated")
    mutated = _mutate(TRUST_JWT, position, char)
    try:
        verify_trust_list(mutated, root_fingerprint=ROOT_FINGERPRINT)
    except FmcError:
        return
    assert mutated == TRUST_JWT or _same_after_decoding(mutated, TRUST_JWT)


_TS_TRUST = WORLD.trust_list_jwt(timestamp_keys=TIMESTAMP_KEYS)
_TS_TRUST_CLAIMS = verify_trust_list(_TS_TRUST, root_fingerprint=ROOT_FINGERPRINT)
TIMESTAMP_JWT = timestamp_jwt(_TS_TRUST)


@given(st.text(max_size=2000))
def test_fuzz_timestamp_parser(unverified: str) -> None:
    count_fuzz_input("timestamp")
    _expect_code(lambda: verify_timestamp(unverified, trust_list=_TS_TRUST_CLAIMS, held=None,
                                          now=NOW))


@given(st.integers(0, 10_000), st.sampled_from(B64URL_AND_DOT))
def test_fuzz_mutated_timestamp(position: int, char: str) -> None:
    count_fuzz_input("timestamp-mutated")
    mutated = _mutate(TIMESTAMP_JWT, position, char)
    try:
        verify_timestamp(mutated, trust_list=_TS_TRUST_CLAIMS, held=None, now=NOW)
    except FmcError:
        return
    assert mutated == TIMESTAMP_JWT or _same_after_decoding(mutated, TIMESTAMP_JWT)


@given(st.text(max_size=2000))
def test_fuzz_status_list_parser(unverified: str) -> None:
    count_fuzz_input("status-list")
    _expect_code(lambda: verify_status_list(unverified, trust_list=STATE.trust_list))


@given(st.integers(0, 10_000), st.sampled_from(B64URL_AND_DOT))
def test_fuzz_mutated_status_list(position: int, char: str) -> None:
    count_fuzz_input("status-list-mutated")
    mutated = _mutate(STATUS_JWT, position, char)
    try:
        verify_status_list(mutated, trust_list=STATE.trust_list)
    except FmcError:
        return
    assert mutated == STATUS_JWT or _same_after_decoding(mutated, STATUS_JWT)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
               max_size=400), st.sampled_from([1, 2, 4, 8, 3]))
def test_fuzz_status_list_bits(lst: str, bits: int) -> None:
    count_fuzz_input("status-list-lst")
    _expect_code(lambda: StatusList.decode_lst(lst, bits))


@given(st.dictionaries(st.sampled_from(["iss", "iat", "exp", "pur", "cn", "st", "hk", "ol", "fc",
                                        "sn", "gn", "bd", "nat", "sex", "pd", "ent", "x"]),
                       JSON_VALUES, max_size=17))
def test_fuzz_credential_claims(claims: dict[str, object]) -> None:
    count_fuzz_input("credential-claims")
    _expect_code(lambda: Credential.from_payload(claims))


@given(st.sampled_from(list(Purpose)), st.sampled_from(
    ["iss", "iat", "exp", "pur", "cn", "st", "hk", "fc", "sn", "bd", "nat", "sex", "ent"]),
    JSON_VALUES)
def test_fuzz_one_claim_replaced(purpose: Purpose, name: str, value: object) -> None:
    count_fuzz_input("credential-claim-replaced")
    claims = credential(purpose).to_payload() | {name: value}
    _expect_code(lambda: Credential.from_payload(claims))


@given(st.binary(max_size=600))
def test_fuzz_json_and_inflate(unverified: bytes) -> None:
    count_fuzz_input("json-inflate")
    _expect_code(lambda: parse_json_object(unverified))
    _expect_code(lambda: inflate_capped(unverified, 4096))


def _same_after_decoding(a: str, b: str) -> bool:
    # base64url has spare bits in its last character: two texts can decode to one value.
    from schemas._jose import split_compact

    try:
        return split_compact(a)[1:] == split_compact(b)[1:]
    except FmcError:
        return False


def test_fuzz_inputs_are_counted() -> None:
    # The figures printed at the end of the run come from count_fuzz_input: a fuzz test
    # run here must add its examples to them.
    before = FUZZ_INPUTS.get("json-inflate", 0)
    test_fuzz_json_and_inflate()
    assert FUZZ_INPUTS["json-inflate"] > before
