"""The timestamp claims (schemas.timestamp) and ts_keys in the trust list: what parses and
what is MALFORMED (table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import TimestampClaims, TrustListClaims
from schemas.codes import Malformed
from support import TIMESTAMP_KEYS, World

DIGEST = "A" * 43
GOOD: dict[str, Any] = {"iss": "CN-YW", "ver": 3, "iat": 100, "exp": 200,
                        "tl": {"ver": 7, "sha256": DIGEST},
                        "sl": {"1": {"iat": 90, "sha256": DIGEST}}}


def test_a_good_timestamp_round_trips() -> None:
    claims = TimestampClaims.from_payload(GOOD)
    assert (claims.version, claims.trust_list.serial, claims.status_lists["1"].serial) == (
        3, 7, 90)
    assert claims.to_payload() == GOOD


@pytest.mark.parametrize(("name", "change"), [
    ("ver zero", {"ver": 0}),
    ("ver as text", {"ver": "3"}),
    ("exp before iat", {"exp": 50}),
    ("no tl", {"tl": None}),
    ("tl without digest", {"tl": {"ver": 7}}),
    ("tl with an extra member", {"tl": {"ver": 7, "sha256": DIGEST, "x": 1}}),
    ("short digest", {"tl": {"ver": 7, "sha256": "A" * 42}}),
    ("sl not an object", {"sl": []}),
    ("bad list id", {"sl": {"a/b": {"iat": 1, "sha256": DIGEST}}}),
    ("bool serial", {"sl": {"1": {"iat": True, "sha256": DIGEST}}}),
    ("no issuer", {"iss": ""}),
])
def test_malformed_timestamp(name: str, change: dict[str, Any]) -> None:
    with pytest.raises(Malformed):
        TimestampClaims.from_payload(GOOD | change)


def _trust_payload(**change: Any) -> dict[str, Any]:
    payload = TrustListClaims("CN-YW", 1, 0, 10, World.keys, TIMESTAMP_KEYS).to_payload()
    return payload | change


def test_ts_keys_parse_and_are_absent_from_older_lists() -> None:
    assert TrustListClaims.from_payload(_trust_payload()).timestamp_keys == TIMESTAMP_KEYS
    older = TrustListClaims("CN-YW", 1, 0, 10, World.keys).to_payload()
    assert "ts_keys" not in older and TrustListClaims.from_payload(older).timestamp_keys == ()


@pytest.mark.parametrize(("name", "ts_keys"), [
    ("not a list", {}),
    ("use sig", [TIMESTAMP_KEYS[0].to_jwk() | {"use": "sig"}]),
    ("no use", [{k: v for k, v in TIMESTAMP_KEYS[0].to_jwk().items() if k != "use"}]),
    ("duplicate kid", [TIMESTAMP_KEYS[0].to_jwk()] * 2),
    ("short key", [TIMESTAMP_KEYS[0].to_jwk() | {"x": "AAAA"}]),
])
def test_malformed_ts_keys(name: str, ts_keys: Any) -> None:
    with pytest.raises(Malformed):
        TrustListClaims.from_payload(_trust_payload(ts_keys=ts_keys))
