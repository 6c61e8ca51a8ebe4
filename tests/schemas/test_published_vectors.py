"""The published vectors are current, and each verifies with its expected code."""

from __future__ import annotations

import json

import pytest
from vector_builder import VECTORS_PATH, render

from schemas import ResultCode
from schemas.codes import FmcError
from verifier import POLICIES, MemoryReplayCache, TrustedSet, verify_presentation

PUBLISHED = json.loads(VECTORS_PATH.read_text())


def test_committed_vectors_match_a_fresh_build() -> None:
    assert VECTORS_PATH.read_text() == render()


@pytest.mark.parametrize("vector", PUBLISHED["presentations"], ids=lambda v: v["name"])
def test_vector_verifies_as_published(vector: dict) -> None:
    now = PUBLISHED["now"]
    trusted = TrustedSet(root_fingerprint=PUBLISHED["keys"]["root_fingerprint"])
    trusted.update_trust_list(PUBLISHED["trust_list_jwt"], now=now)
    for status_list in PUBLISHED["status_list_jwts"].values():
        trusted.update_status_list(status_list, now=now)
    state = trusted.snapshot()
    for expected in vector["checks"]:
        result = verify_presentation(vector["presentation"], state=state,
                                     policy=POLICIES[expected["service"]],
                                     now=expected["now"], replay_cache=MemoryReplayCache())
        assert result.code is ResultCode(expected["code"]), expected


@pytest.mark.parametrize("expected", PUBLISHED["timestamp"]["checks"], ids=lambda c: c["code"])
def test_timestamp_vector_verifies_as_published(expected: dict) -> None:
    vector = PUBLISHED["timestamp"]
    trusted = TrustedSet(root_fingerprint=PUBLISHED["keys"]["root_fingerprint"])
    trusted.update_trust_list(vector["trust_list_jwt"], now=PUBLISHED["now"])
    try:
        claims = trusted.update_timestamp(vector["timestamp_jwt"], now=expected["now"])
    except FmcError as refused:
        assert refused.code is ResultCode(expected["code"])
        return
    assert expected["code"] == "OK"
    assert claims.status_lists.keys() == vector["status_list_jwts"].keys()
