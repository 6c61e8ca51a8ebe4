"""One real crafted input per result code of docs/DESIGN.md section 7 (table-driven)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import replace

import pytest

from keys import sign_credential, sign_presentation
from schemas import (
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    IssuerKey,
    KeyState,
    Purpose,
    ResultCode,
    StatusRef,
    b64url_encode,
    encode_presentation,
    holder_proof_message,
)
from schemas._jose import deflate, dump_json
from schemas.challenge import Challenge
from schemas.codes import FmcError
from schemas.federation import IssuerState
from support import (
    DAY,
    DEVICE,
    FOREIGN_KEY,
    ISSUER_KEY,
    NEXT_KEY,
    NOW,
    OTHER_DEVICE,
    ROOT_FINGERPRINT,
    SALE,
    STANDARD_HEADER,
    TIMESTAMP_KEYS,
    World,
    bound_present,
    check_code,
    craft,
    credential,
    present,
    timestamp_jwt,
)
from verifier import POLICIES, MemoryReplayCache, TrustedSet, VerifierState, verify_presentation

STANDARD = STANDARD_HEADER
SVC_PAYLOAD = deflate(dump_json(credential(Purpose.SVC).to_payload()))


def _future_form() -> ResultCode:
    text = present(Purpose.SVC)
    number = int(text[5:])
    container = bytearray(number.to_bytes((number.bit_length() + 7) // 8, "big"))
    container[0] = 0x04  # reserved for the next form
    return check_code("FMC1:" + str(int.from_bytes(container, "big")))


def _tampered_payload() -> ResultCode:
    genuine = sign_credential(credential(Purpose.SVC), ISSUER_KEY)
    head, _, sig = genuine.split(".")
    forged_claims = credential(Purpose.SVC, surname="SOMEONE ELSE").to_payload()
    forged = head + "." + b64url_encode(deflate(dump_json(forged_claims))) + "." + sig
    proof = DEVICE.sign(holder_proof_message(forged, NOW, "svc"))
    return check_code(encode_presentation(forged, NOW, proof))


def _hs256_with_public_key_as_secret() -> ResultCode:
    header = {"alg": "HS256", "kid": "k1", "zip": "DEF"}
    signing_input = (b64url_encode(dump_json(header)) + "." + b64url_encode(SVC_PAYLOAD)).encode()
    mac = hmac.new(ISSUER_KEY.public_key, signing_input, hashlib.sha256).digest()
    return check_code(craft(header, SVC_PAYLOAD, signature=mac * 2))


def _zip_bomb() -> ResultCode:
    claims = credential(Purpose.SVC).to_payload()
    claims["sn"] = "A" * 200_000  # signed by the real key: only the inflate cap stops it
    return check_code(craft(STANDARD, deflate(dump_json(claims))))


def _duplicate_claim() -> ResultCode:
    body = dump_json(credential(Purpose.SVC).to_payload())
    duplicated = body[:-1] + b',"sn":"SOMEONE ELSE"}'
    return check_code(craft(STANDARD, deflate(duplicated)))


def _retired_before_iat() -> ResultCode:
    world = World(keys=(
        IssuerKey("k1", ISSUER_KEY.public_key, KeyState.RETIRED, NOW - 30 * DAY, NOW - 2 * DAY),
        IssuerKey("k2", NEXT_KEY.public_key, KeyState.ACTIVE, NOW - 2 * DAY),
    ))
    return check_code(present(Purpose.SVC), world=world)


def _compromised() -> ResultCode:
    world = World(keys=(
        IssuerKey("k1", ISSUER_KEY.public_key, KeyState.COMPROMISED, NOW - 30 * DAY, NOW),
        IssuerKey("k2", NEXT_KEY.public_key, KeyState.ACTIVE, NOW - 2 * DAY),
    ))
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    trusted.update_trust_list(world.trust_list_jwt(), now=NOW)
    trusted.update_status_list(world.status_list_jwt(signer=NEXT_KEY), now=NOW)
    return verify_presentation(present(Purpose.SVC), state=trusted.snapshot(),
                               policy=POLICIES["hospital"], now=NOW,
                               replay_cache=MemoryReplayCache()).code


def _status(value: int) -> ResultCode:
    world = World()
    world.statuses.set(123_456, value)
    return check_code(present(Purpose.SVC), world=world)


def _stale_status() -> ResultCode:
    world = World(status_issued=NOW - 2 * 3600, status_ttl=3600)
    return check_code(present(Purpose.SVC), world=world)


def _status_of_another_list() -> ResultCode:
    return check_code(present(Purpose.SVC, status=StatusRef("2", 5)))


def _stale_trust_list() -> ResultCode:
    world = World(trust_expires=NOW + 60)
    state = world.state(now=NOW)
    later = NOW + 120
    return verify_presentation(present(Purpose.SVC, proof_time=later), state=state,
                               policy=POLICIES["hospital"], now=later,
                               replay_cache=MemoryReplayCache()).code


def _rolled_back_trust_list() -> ResultCode:
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    trusted.update_trust_list(World(trust_version=5).trust_list_jwt(), now=NOW)
    try:
        trusted.update_trust_list(World(trust_version=4).trust_list_jwt(), now=NOW)
    except FmcError as refused:
        return refused.code
    return ResultCode.OK


def _expired_trust_list_refused_on_update() -> ResultCode:
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    try:
        trusted.update_trust_list(World(trust_expires=NOW - 1).trust_list_jwt(), now=NOW)
    except FmcError as refused:
        return refused.code
    return ResultCode.OK


def _trust_list_from_another_root() -> ResultCode:
    trusted = TrustedSet(root_fingerprint="not-our-root")
    try:
        trusted.update_trust_list(World().trust_list_jwt(), now=NOW)
    except FmcError as refused:
        return refused.code
    return ResultCode.OK


def _replayed() -> ResultCode:
    state, cache = World().state(), MemoryReplayCache()
    text = present(Purpose.SVC)
    first = verify_presentation(text, state=state, policy=POLICIES["hospital"], now=NOW,
                                replay_cache=cache)
    assert first.ok
    return verify_presentation(text, state=state, policy=POLICIES["hospital"], now=NOW + 5,
                               replay_cache=cache).code


def _bound(challenge: Challenge, *, now: int = NOW) -> ResultCode:
    """A pay code bound to SALE, checked against ``challenge``."""
    return verify_presentation(bound_present(SALE, proof_time=now), state=World().state(now),
                               policy=POLICIES["payment"], now=now, replay_cache=None,
                               challenge=challenge).code


def _crit() -> ResultCode:
    return check_code(craft({**STANDARD, "crit": ["exp"], "exp": 1}, SVC_PAYLOAD))


def _federated_issuer(state: IssuerState | None) -> ResultCode:
    """A Hangzhou card's issuer looked up in a federation list where Hangzhou is ``state``
    (None: not listed)."""
    from federation_kit import federation, hangzhou, yiwu

    from verifier.federation import resolve_issuer_key

    entries = (yiwu(),) if state is None else (yiwu(), hangzhou(state=state))
    try:
        resolve_issuer_key(federation(*entries), unverified_issuer="CN-HZ", unverified_kid="h1")
    except FmcError as refused:
        return refused.code
    return ResultCode.OK


def _timestamped_state(timestamp: str, *, held_at: int) -> VerifierState:
    """World's lists plus a timestamp that was valid when it was synced at ``held_at``."""
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    trusted.update_trust_list(World().trust_list_jwt(timestamp_keys=TIMESTAMP_KEYS), now=NOW)
    trusted.update_status_list(World().status_list_jwt(), now=NOW)
    trusted.update_timestamp(timestamp, now=held_at)
    return trusted.snapshot()


def _timestamped_check(timestamp: str, *, held_at: int = NOW) -> ResultCode:
    state = _timestamped_state(timestamp, held_at=held_at)
    return verify_presentation(present(Purpose.SVC), state=state, policy=POLICIES["hospital"],
                               now=NOW, replay_cache=MemoryReplayCache()).code


_TIMESTAMPED_TRUST_LIST = World().trust_list_jwt(timestamp_keys=TIMESTAMP_KEYS)


def _rolled_back_timestamp() -> ResultCode:
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    trusted.update_trust_list(_TIMESTAMPED_TRUST_LIST, now=NOW)
    trusted.update_timestamp(timestamp_jwt(_TIMESTAMPED_TRUST_LIST, version=7), now=NOW)
    try:
        trusted.update_timestamp(timestamp_jwt(_TIMESTAMPED_TRUST_LIST, version=6), now=NOW)
    except FmcError as refused:
        return refused.code
    return ResultCode.OK


CASES: list[tuple[str, ResultCode, Callable[[], ResultCode]]] = [
    ("genuine svc at hospital", ResultCode.OK, lambda: check_code(present(Purpose.SVC))),
    ("genuine id at counter", ResultCode.OK,
     lambda: check_code(present(Purpose.ID), service="counter")),
    ("genuine pay at payment", ResultCode.OK,
     lambda: check_code(present(Purpose.PAY), service="payment")),
    ("not a presentation", ResultCode.MALFORMED, lambda: check_code("hello")),
    ("truncated digits", ResultCode.MALFORMED, lambda: check_code(present(Purpose.SVC)[:-20])),
    ("oversize input refused before any work", ResultCode.MALFORMED,
     lambda: check_code("FMC1:" + "7" * 1_000_000)),
    ("non-ASCII digits", ResultCode.MALFORMED, lambda: check_code("FMC1:" + "\u0663" * 900)),
    ("crit header", ResultCode.MALFORMED, _crit),
    ("inflated payload over the cap", ResultCode.MALFORMED, _zip_bomb),
    ("duplicate claim", ResultCode.MALFORMED, _duplicate_claim),
    ("future version prefix", ResultCode.UNSUPPORTED_VERSION, lambda: check_code("FMC3:12345")),
    ("alg none", ResultCode.ALGORITHM_NOT_ALLOWED,
     lambda: check_code(craft({**STANDARD, "alg": "none"}, SVC_PAYLOAD, signature=bytes(64)))),
    ("alg HS256 keyed with the public key", ResultCode.ALGORITHM_NOT_ALLOWED,
     _hs256_with_public_key_as_secret),
    ("unknown kid", ResultCode.UNKNOWN_KEY,
     lambda: check_code(craft({**STANDARD, "kid": "k9"}, SVC_PAYLOAD))),
    ("trust list from another root", ResultCode.UNKNOWN_KEY, _trust_list_from_another_root),
    ("tampered payload", ResultCode.BAD_SIGNATURE, _tampered_payload),
    ("foreign key claiming kid k1", ResultCode.BAD_SIGNATURE,
     lambda: check_code(present(Purpose.SVC, signer=FOREIGN_KEY))),
    ("key retired before iat", ResultCode.KEY_NOT_VALID_AT_ISSUE, _retired_before_iat),
    ("key compromised", ResultCode.KEY_COMPROMISED, _compromised),
    ("expired", ResultCode.EXPIRED, lambda: check_code(present(Purpose.SVC, expires_at=NOW - 60))),
    ("not yet valid", ResultCode.NOT_YET_VALID,
     lambda: check_code(present(Purpose.SVC, issued_at=NOW + 600))),
    ("revoked", ResultCode.REVOKED, lambda: _status(STATUS_REVOKED)),
    ("suspended", ResultCode.SUSPENDED, lambda: _status(STATUS_SUSPENDED)),
    ("stale status list", ResultCode.STATUS_UNAVAILABLE, _stale_status),
    ("status list of another list id", ResultCode.STATUS_UNAVAILABLE, _status_of_another_list),
    ("stale trust list", ResultCode.TRUST_LIST_STALE, _stale_trust_list),
    ("expired trust list refused by sync", ResultCode.TRUST_LIST_STALE,
     _expired_trust_list_refused_on_update),
    ("rolled-back trust list", ResultCode.TRUST_LIST_ROLLBACK, _rolled_back_trust_list),
    ("proof by another device key", ResultCode.HOLDER_PROOF_INVALID,
     lambda: check_code(present(Purpose.SVC, device=OTHER_DEVICE))),
    ("proof older than the window", ResultCode.HOLDER_PROOF_STALE,
     lambda: check_code(present(Purpose.SVC, proof_time=NOW - 61))),
    ("proof from the future", ResultCode.HOLDER_PROOF_STALE,
     lambda: check_code(present(Purpose.SVC, proof_time=NOW + 30))),
    ("the same proof twice", ResultCode.REPLAYED, _replayed),
    ("pay code at a hospital", ResultCode.WRONG_PURPOSE,
     lambda: check_code(present(Purpose.PAY), service="hospital")),
    ("svc without education at a school", ResultCode.ENTITLEMENT_MISSING,
     lambda: check_code(present(Purpose.SVC), service="school")),
    ("exp 100 years after iat", ResultCode.LIFETIME_TOO_LONG,
     lambda: check_code(present(Purpose.SVC, expires_at=NOW - DAY + 36_525 * DAY))),
    ("issuer not on the federation list", ResultCode.ISSUER_UNKNOWN,
     lambda: _federated_issuer(None)),
    ("issuer suspended nationally", ResultCode.ISSUER_SUSPENDED,
     lambda: _federated_issuer(IssuerState.SUSPENDED)),
    ("issuer removed nationally", ResultCode.ISSUER_REMOVED,
     lambda: _federated_issuer(IssuerState.REMOVED)),
    ("bound pay code for another amount", ResultCode.CHALLENGE_MISMATCH,
     lambda: _bound(replace(SALE, amount_fen=99_999))),
    ("bound pay code after its challenge expired", ResultCode.CHALLENGE_EXPIRED,
     lambda: _bound(SALE, now=SALE.expires_at + 1)),
    ("genuine svc under a current timestamp", ResultCode.OK,
     lambda: _timestamped_check(timestamp_jwt(_TIMESTAMPED_TRUST_LIST))),
    ("rolled-back timestamp", ResultCode.TIMESTAMP_ROLLBACK, _rolled_back_timestamp),
    ("timestamp expired past the status grace", ResultCode.TIMESTAMP_STALE,
     lambda: _timestamped_check(timestamp_jwt(_TIMESTAMPED_TRUST_LIST, issued_at=NOW - 13 * 3600),
                                held_at=NOW - 2 * 3600)),
    ("timestamp names a newer trust list", ResultCode.TRUST_LIST_OUTDATED,
     lambda: _timestamped_check(timestamp_jwt(_TIMESTAMPED_TRUST_LIST, trust_version=2))),
    ("EdDSA credential issued after the issuer's cut-over (RFC 9864)",
     ResultCode.ALGORITHM_DOWNGRADE,
     lambda: check_code(craft({**STANDARD, "alg": "EdDSA"}, SVC_PAYLOAD),
                        world=World(alg_cutover=NOW - 2 * DAY))),
    ("future container form", ResultCode.UNSUPPORTED_VERSION, _future_form),
]


@pytest.mark.parametrize(("name", "expected", "attack"), CASES, ids=[c[0] for c in CASES])
def test_result_code(name: str, expected: ResultCode, attack: Callable[[], ResultCode]) -> None:
    assert attack() is expected


def test_every_result_code_is_produced() -> None:
    produced = {expected for _, expected, _ in CASES}
    assert produced == set(ResultCode)


def test_claims_of_a_failed_signature_are_never_returned() -> None:
    state = World().state()
    result = verify_presentation(present(Purpose.SVC, signer=FOREIGN_KEY), state=state,
                                 policy=POLICIES["hospital"], now=NOW,
                                 replay_cache=MemoryReplayCache())
    assert result.code is ResultCode.BAD_SIGNATURE
    assert result.credential is None
    assert result.to_json()["holder"] is None


def test_failed_policy_still_reports_verified_purpose() -> None:
    result = verify_presentation(present(Purpose.PAY), state=World().state(),
                                 policy=POLICIES["hospital"], now=NOW, replay_cache=None)
    assert result.code is ResultCode.WRONG_PURPOSE
    assert result.to_json()["purpose"] == "pay"
    assert result.to_json()["card"] is None  # nothing disclosed on refusal


def test_leeway_boundaries() -> None:
    policy = POLICIES["hospital"]
    edge_old = NOW - policy.proof_window
    assert check_code(present(Purpose.SVC, proof_time=edge_old)) is ResultCode.OK
    assert check_code(present(Purpose.SVC, proof_time=edge_old - 1)) is \
        ResultCode.HOLDER_PROOF_STALE
    assert check_code(present(Purpose.SVC, proof_time=NOW + policy.leeway)) is ResultCode.OK
    assert check_code(present(Purpose.SVC, proof_time=NOW + policy.leeway + 1)) is \
        ResultCode.HOLDER_PROOF_STALE


def test_retired_key_still_verifies_its_old_credentials() -> None:
    world = World(keys=(
        IssuerKey("k1", ISSUER_KEY.public_key, KeyState.RETIRED, NOW - 30 * DAY, NOW - 1),
        IssuerKey("k2", NEXT_KEY.public_key, KeyState.ACTIVE, NOW - 1),
    ))
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    trusted.update_trust_list(world.trust_list_jwt(), now=NOW)
    trusted.update_status_list(world.status_list_jwt(signer=NEXT_KEY), now=NOW)
    result = verify_presentation(present(Purpose.SVC), state=trusted.snapshot(),
                                 policy=POLICIES["hospital"], now=NOW, replay_cache=None)
    assert result.ok


def test_next_key_credentials_verify_before_the_switch_is_synced() -> None:
    # The cached list still shows k2 as "next": it was published ahead of use for this.
    assert check_code(present(Purpose.SVC, signer=NEXT_KEY)) is ResultCode.OK


def test_header_memo_does_not_leak_between_headers() -> None:
    assert check_code(present(Purpose.SVC)) is ResultCode.OK
    bad = craft({"alg": "EdDSA", "kid": "k1", "zip": "DEF", "x5u": "https://evil"}, SVC_PAYLOAD)
    assert check_code(bad) is ResultCode.MALFORMED


def test_json_shape() -> None:
    result = verify_presentation(present(Purpose.SVC), state=World().state(),
                                 policy=POLICIES["hospital"], now=NOW, replay_cache=None)
    shown = result.to_json()
    assert set(shown) >= {"ok", "code", "service", "card", "purpose", "holder",
                          "entitlements", "checked_at"}
    assert shown["entitlements"] == ["healthcare", "social_insurance"]
    json.dumps(shown)


def test_signing_a_presentation_for_another_purpose_does_not_help() -> None:
    jws = sign_credential(credential(Purpose.SVC), ISSUER_KEY)
    # The wallet signs the proof for "pay" but the credential is svc: the proof no longer
    # matches the message the verifier rebuilds from the verified purpose.
    text = sign_presentation(jws, DEVICE, proof_time=NOW, purpose="pay")
    assert check_code(text) is ResultCode.HOLDER_PROOF_INVALID
