"""Property tests: nothing makes the verifier raise; every input gets a code."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Purpose, ResultCode
from support import NOW, World, present
from verifier import POLICIES, MemoryReplayCache, VerifierState, verify_presentation

STATE: VerifierState = World().state()
VALID = {p: present(p) for p in Purpose}
SERVICES = sorted(POLICIES)


def _check(text: str | bytes, service: str = "hospital") -> ResultCode:
    result = verify_presentation(text, state=STATE, policy=POLICIES[service], now=NOW,
                                 replay_cache=MemoryReplayCache())
    assert isinstance(result.code, ResultCode)
    if result.code is not ResultCode.OK:
        assert result.to_json()["holder"] is None
    return result.code


@given(st.binary(max_size=3000))
def test_arbitrary_bytes_get_a_code(unverified: bytes) -> None:
    _check(unverified)


@given(st.text(max_size=3000))
def test_arbitrary_text_gets_a_code(unverified: str) -> None:
    _check(unverified)


@given(st.text(alphabet="0123456789", min_size=1, max_size=2700))
def test_arbitrary_digits_after_prefix_get_a_code(digits: str) -> None:
    _check("FMC1:" + digits)


@settings(max_examples=300)
@given(
    purpose=st.sampled_from(list(Purpose)),
    service=st.sampled_from(SERVICES),
    position=st.integers(min_value=0, max_value=10_000),
    replacement=st.sampled_from("0123456789"),
)
def test_mutated_valid_presentations_never_raise(
    purpose: Purpose, service: str, position: int, replacement: str
) -> None:
    text = VALID[purpose]
    index = 5 + position % (len(text) - 5)
    mutated = text[:index] + replacement + text[index + 1 :]
    code = _check(mutated, service)
    if mutated != text:
        # A changed digit changes the container: it can never pass as the original.
        assert code is not ResultCode.OK


@given(
    purpose=st.sampled_from(list(Purpose)),
    cut=st.integers(min_value=0, max_value=3000),
    extra=st.text(alphabet="0123456789", max_size=40),
)
def test_truncated_or_extended_presentations_never_pass(
    purpose: Purpose, cut: int, extra: str
) -> None:
    text = VALID[purpose]
    mutated = text[: max(5, len(text) - cut)] + extra
    code = _check(mutated)
    if mutated != text:
        assert code is not ResultCode.OK
