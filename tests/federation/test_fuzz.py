"""Fuzzing the federation list: any input ends in a result code, never another exception."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from federation_kit import NATIONAL_FINGERPRINT, federation, federation_jwt
from hypothesis import given
from hypothesis import strategies as st

from schemas.codes import FmcError, Malformed
from schemas.federation import FederationClaims
from support import NOW, count_fuzz_input
from verifier.federation import verify_federation_list

JWT = federation_jwt()
B64URL_AND_DOT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=20,
)


def _verify(unverified: str) -> FederationClaims:
    return verify_federation_list(unverified, pinned_root_fingerprint=NATIONAL_FINGERPRINT,
                                  now=NOW, held=None)


@given(st.text(max_size=2000))
def test_fuzz_federation_list_text(unverified: str) -> None:
    count_fuzz_input("federation-list")
    with suppress(FmcError):
        _verify(unverified)


@given(st.integers(0, len(JWT) - 1), st.sampled_from(B64URL_AND_DOT))
def test_fuzz_one_character_changed(position: int, char: str) -> None:
    count_fuzz_input("federation-list-mutated")
    mutated = JWT[:position] + char + JWT[position + 1:]
    try:
        claims = _verify(mutated)
    except FmcError:
        return
    # Accepted only when the change decodes to the same bytes (base64url's unused low bits).
    assert claims == federation()


@given(st.sampled_from(["issuers", "iss", "ver", "iat", "exp"]), JSON_VALUES,
       st.integers(0, 1), st.sampled_from(
           ["code", "name_en", "name_zh", "state", "root", "keys", "status_url", "api_url",
            "seq", "tl_ver"]), JSON_VALUES)
def test_fuzz_payload_members(top: str, top_value: Any, which: int, member: str,
                              member_value: Any) -> None:
    count_fuzz_input("federation-payload")
    payload = federation().to_payload()
    payload["issuers"][which][member] = member_value
    with suppress(Malformed):
        FederationClaims.from_payload(payload)
    payload = federation().to_payload()
    payload[top] = top_value
    with suppress(Malformed):
        FederationClaims.from_payload(payload)
