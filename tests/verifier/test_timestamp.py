"""verify_timestamp and the freshness steps, one row per check in the documented order."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keys import sign_compact
from schemas import ResultCode
from schemas._jose import dump_json
from schemas.codes import FmcError
from schemas.timestamp import TimestampClaims, list_digest
from support import (
    ISSUER,
    NOW,
    ROOT_FINGERPRINT,
    TIMESTAMP_KEY,
    TIMESTAMP_KEYS,
    World,
    timestamp_jwt,
)
from verifier import verify_status_list, verify_timestamp, verify_trust_list
from verifier.timestamp import require_current_timestamp, require_named_lists

TRUST_JWT = World().trust_list_jwt(timestamp_keys=TIMESTAMP_KEYS)
TRUST = verify_trust_list(TRUST_JWT, root_fingerprint=ROOT_FINGERPRINT)
STATUS_JWT = World().status_list_jwt()
STATUS = verify_status_list(STATUS_JWT, trust_list=TRUST)


def _claims(jwt: str) -> TimestampClaims:
    return verify_timestamp(jwt, trust_list=TRUST, held=None, now=NOW)


HELD = _claims(timestamp_jwt(TRUST_JWT, version=5))


def _with_header(header: dict[str, object]) -> str:
    payload = _claims(timestamp_jwt(TRUST_JWT)).to_payload()
    return sign_compact(header, dump_json(payload), TIMESTAMP_KEY)


def _code(attempt: Callable[[], object]) -> ResultCode:
    try:
        attempt()
    except FmcError as refused:
        return refused.code
    return ResultCode.OK


def _verify(jwt: str, held: TimestampClaims | None = HELD, now: int = NOW) -> Callable[[], object]:
    return lambda: verify_timestamp(jwt, trust_list=TRUST, held=held, now=now)


def _unsigned_alg_none() -> object:
    token = timestamp_jwt(TRUST_JWT, version=6)
    head = dump_json({"alg": "none", "typ": "fmc-timestamp+jwt", "kid": "ts1"})
    from schemas import b64url_encode

    return verify_timestamp(b64url_encode(head) + "." + token.split(".")[1] + ".",
                            trust_list=TRUST, held=HELD, now=NOW)


CASES: list[tuple[str, ResultCode, Callable[[], object]]] = [
    ("genuine newer timestamp", ResultCode.OK, _verify(timestamp_jwt(TRUST_JWT, version=6))),
    ("the held one again", ResultCode.OK, _verify(timestamp_jwt(TRUST_JWT, version=5))),
    ("alg none, checked first", ResultCode.ALGORITHM_NOT_ALLOWED, _unsigned_alg_none),
    ("typ of a trust list", ResultCode.MALFORMED, lambda: verify_timestamp(
        _with_header({"alg": "EdDSA", "typ": "fmc-trust+jwt", "kid": "ts1"}),
        trust_list=TRUST, held=None, now=NOW)),
    ("kid of an issuer key", ResultCode.UNKNOWN_KEY, lambda: verify_timestamp(
        _with_header({"alg": "EdDSA", "typ": "fmc-timestamp+jwt", "kid": "k1"}),
        trust_list=TRUST, held=None, now=NOW)),
    ("signed by an older list's timestamp key", ResultCode.UNKNOWN_KEY, lambda: verify_timestamp(
        timestamp_jwt(TRUST_JWT), trust_list=verify_trust_list(
            World().trust_list_jwt(), root_fingerprint=ROOT_FINGERPRINT), held=None, now=NOW)),
    ("lower ver", ResultCode.TIMESTAMP_ROLLBACK, _verify(timestamp_jwt(TRUST_JWT, version=4))),
    ("same ver, other content", ResultCode.TIMESTAMP_ROLLBACK,
     _verify(timestamp_jwt(TRUST_JWT, version=5, issued_at=NOW - 30))),
    ("names an older trust list than held", ResultCode.TIMESTAMP_ROLLBACK,
     _verify(timestamp_jwt(TRUST_JWT, version=6, trust_version=0))),
    ("expired", ResultCode.TIMESTAMP_STALE,
     _verify(timestamp_jwt(TRUST_JWT, version=6), now=NOW + 12 * 3600)),
    ("rollback is decided before expiry", ResultCode.TIMESTAMP_ROLLBACK,
     _verify(timestamp_jwt(TRUST_JWT, version=4), now=NOW + 12 * 3600)),
]


@pytest.mark.parametrize(("name", "expected", "attempt"), CASES, ids=[c[0] for c in CASES])
def test_verify_timestamp(name: str, expected: ResultCode,
                          attempt: Callable[[], object]) -> None:
    assert _code(attempt) is expected


def _named(timestamp: str, status_jwt: str = STATUS_JWT) -> Callable[[], object]:
    status = verify_status_list(status_jwt, trust_list=TRUST)
    return lambda: require_named_lists(
        _claims(timestamp), trust_list=TRUST, trust_list_sha256=list_digest(TRUST_JWT),
        status_lists={"1": (status, list_digest(status_jwt))})


NEWER_STATUS = World(status_issued=NOW - 30).status_list_jwt()


@pytest.mark.parametrize(("name", "expected", "attempt"), [
    ("the lists named", ResultCode.OK, _named(timestamp_jwt(TRUST_JWT,
                                                             status_lists={"1": STATUS_JWT}))),
    ("lists newer than named", ResultCode.OK,
     _named(timestamp_jwt(TRUST_JWT, status_lists={"1": STATUS_JWT}), NEWER_STATUS)),
    ("a newer trust list named", ResultCode.TRUST_LIST_OUTDATED,
     _named(timestamp_jwt(TRUST_JWT, trust_version=2))),
    ("an older status list than named", ResultCode.STATUS_UNAVAILABLE,
     _named(timestamp_jwt(TRUST_JWT, status_lists={"1": NEWER_STATUS}))),
], ids=lambda value: value if isinstance(value, str) else "")
def test_require_named_lists(name: str, expected: ResultCode,
                             attempt: Callable[[], object]) -> None:
    assert _code(attempt) is expected


@pytest.mark.parametrize(("name", "now", "expected"), [
    ("inside its life", NOW, ResultCode.OK),
    ("expired but inside the grace", HELD.expires_at + 3599, ResultCode.OK),
    ("past the grace", HELD.expires_at + 3600, ResultCode.TIMESTAMP_STALE),
])
def test_require_current_timestamp(name: str, now: int, expected: ResultCode) -> None:
    assert _code(lambda: require_current_timestamp(
        HELD, trust_list=TRUST, trust_list_sha256=list_digest(TRUST_JWT), grace=3600,
        now=now)) is expected


def test_no_timestamp_held_keeps_the_behaviour_of_an_older_authority() -> None:
    require_current_timestamp(None, trust_list=TRUST, trust_list_sha256=None, grace=0,
                              now=NOW + 365 * 86_400)
    assert TRUST.issuer == ISSUER
