"""The published federation vectors are current, and each case gives its published code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from federation_vector_builder import VECTORS_PATH, render

from schemas import ResultCode
from schemas.codes import FmcError
from schemas.federation import FederationClaims
from verifier.federation import resolve_issuer_key, resolve_key_by_kid, verify_federation_list

PUBLISHED: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
PIN = PUBLISHED["keys"]["national_root_fingerprint"]
NOW: int = PUBLISHED["now"]


def _verified(index: int, held: FederationClaims | None = None) -> FederationClaims:
    return verify_federation_list(PUBLISHED["federation_lists"][index]["jwt"],
                                  pinned_root_fingerprint=PIN, now=NOW, held=held)


def test_committed_vectors_match_a_fresh_build() -> None:
    assert VECTORS_PATH.read_text() == render()


@pytest.mark.parametrize("case", PUBLISHED["sync"], ids=lambda c: f"{c['held']}->{c['offered']}")
def test_sync_case(case: dict[str, Any]) -> None:
    held = None if case["held"] is None else _verified(case["held"])
    try:
        claims = _verified(case["offered"], held)
    except FmcError as refused:
        assert refused.code is ResultCode(case["code"])
        return
    assert ResultCode(case["code"]) is ResultCode.OK
    assert claims.to_payload() == PUBLISHED["federation_lists"][case["offered"]]["payload"]


@pytest.mark.parametrize("case", PUBLISHED["resolve"], ids=lambda c: f"{c['iss']}/{c['kid']}")
def test_resolve_case(case: dict[str, Any]) -> None:
    try:
        resolve_issuer_key(_verified(case["list"]), unverified_issuer=case["iss"],
                           unverified_kid=case["kid"])
    except FmcError as refused:
        assert refused.code is ResultCode(case["code"])
        return
    assert ResultCode(case["code"]) is ResultCode.OK


@pytest.mark.parametrize("case", PUBLISHED["resolve_by_kid"],
                         ids=lambda c: f"{c['list']}/{c['kid']}")
def test_resolve_by_kid_case(case: dict[str, Any]) -> None:
    try:
        entry, _ = resolve_key_by_kid(_verified(case["list"]), unverified_kid=case["kid"])
    except FmcError as refused:
        assert refused.code is ResultCode(case["code"])
        return
    assert ResultCode(case["code"]) is ResultCode.OK and entry.code == case["issuer"]
