"""One test per attack on credentials, presentations, trust and status lists.

Each test names the attack; docs/SECURITY.md lists them with the code each gets.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib

import pytest

from keys import Ed25519Signer, public_jwk, sign_compact, sign_credential, sign_presentation
from schemas import (
    IssuerKey,
    KeyState,
    Purpose,
    ResultCode,
    StatusList,
    StatusListClaims,
    b64url_encode,
    decode_presentation,
    encode_presentation,
)
from schemas._jose import deflate, dump_json
from schemas.codes import FmcError
from support import (
    DAY,
    DEVICE,
    FOREIGN_KEY,
    ISSUER_KEY,
    NEXT_KEY,
    NOW,
    OTHER_DEVICE,
    ROOT,
    ROOT_FINGERPRINT,
    STANDARD_HEADER,
    World,
    check_code,
    craft,
    credential,
    present,
)
from verifier import POLICIES, MemoryReplayCache, TrustedSet, verify_presentation

STANDARD = STANDARD_HEADER
PAYLOAD = deflate(dump_json(credential(Purpose.SVC).to_payload()))


def refused_update(fn: object) -> ResultCode:
    try:
        fn()  # type: ignore[operator]
    except FmcError as refused:
        return refused.code
    return ResultCode.OK


# --- forged and tampered credentials ------------------------------------------------

def test_attack_forged_credential_signed_by_attacker_key() -> None:
    attacker = Ed25519Signer.generate(kid="k1")
    assert check_code(present(Purpose.SVC, signer=attacker)) is ResultCode.BAD_SIGNATURE


def test_attack_tampered_claims_keep_old_signature() -> None:
    genuine = sign_credential(credential(Purpose.SVC), ISSUER_KEY)
    head, _, sig = genuine.split(".")
    rich = credential(Purpose.SVC, entitlements=()).to_payload() | {"ent": "HESTGP"}
    forged = f"{head}.{b64url_encode(deflate(dump_json(rich)))}.{sig}"
    text = sign_presentation(forged, DEVICE, proof_time=NOW, purpose="svc")
    assert check_code(text, service="school") is ResultCode.BAD_SIGNATURE


def test_attack_tampered_signature_bit_flip() -> None:
    parts = decode_presentation(present(Purpose.ID))
    flipped = bytes([parts.signature[0] ^ 1]) + parts.signature[1:]
    jws = parts.signing_input.decode() + "." + b64url_encode(flipped)
    text = encode_presentation(jws, parts.proof_time, parts.holder_proof)
    assert check_code(text, service="counter") is ResultCode.BAD_SIGNATURE


# --- header attacks ----------------------------------------------------------------

def test_attack_alg_none() -> None:
    text = craft({**STANDARD, "alg": "none"}, PAYLOAD, signature=bytes(64))
    assert check_code(text) is ResultCode.ALGORITHM_NOT_ALLOWED


def test_attack_alg_confusion_hs256_keyed_with_public_key() -> None:
    header = {**STANDARD, "alg": "HS256"}
    signing_input = f"{b64url_encode(dump_json(header))}.{b64url_encode(PAYLOAD)}".encode()
    mac = hmac.new(ISSUER_KEY.public_key, signing_input, hashlib.sha256).digest()
    assert check_code(craft(header, PAYLOAD, signature=mac + mac)) is \
        ResultCode.ALGORITHM_NOT_ALLOWED


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA ", "eddsa", "ed25519", "Ed448",
                                 "EdDSA25519", None, 1])
def test_attack_alg_allow_list_is_closed(alg: object) -> None:
    assert check_code(craft({**STANDARD, "alg": alg}, PAYLOAD)) is \
        ResultCode.ALGORITHM_NOT_ALLOWED


def test_attack_crit_header() -> None:
    assert check_code(craft({**STANDARD, "crit": ["b64"], "b64": False}, PAYLOAD)) is \
        ResultCode.MALFORMED


def test_attack_embedded_jwk_header_is_not_trusted() -> None:
    attacker = Ed25519Signer.generate(kid="k1")
    header = {**STANDARD, "jwk": public_jwk(attacker.public_key)}
    assert check_code(craft(header, PAYLOAD, signer=attacker)) is ResultCode.MALFORMED


@pytest.mark.parametrize("kid", ["k9", "root", "../keys/k1", "k1\u0000", "K1", "k" * 65])
def test_attack_kid_tricks(kid: str) -> None:
    code = check_code(craft({**STANDARD, "kid": kid}, PAYLOAD))
    assert code in {ResultCode.UNKNOWN_KEY, ResultCode.MALFORMED}


def test_attack_kid_of_a_trusted_key_with_a_foreign_signature() -> None:
    assert check_code(present(Purpose.SVC, signer=FOREIGN_KEY)) is ResultCode.BAD_SIGNATURE


def test_attack_kid_of_next_key_with_active_key_signature() -> None:
    assert check_code(craft({**STANDARD, "kid": "k2"}, PAYLOAD, signer=ISSUER_KEY)) is \
        ResultCode.BAD_SIGNATURE


# --- payload attacks ---------------------------------------------------------------

def test_attack_zip_bomb_signed_by_real_key() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = bomb.compress(b"{" + b" " * 300_000) + bomb.flush()  # 300 KB from ~300 B
    assert check_code(craft(STANDARD, payload)) is ResultCode.MALFORMED


def test_attack_oversize_input() -> None:
    assert check_code("FMC1:" + "9" * 50_000_000) is ResultCode.MALFORMED


def test_attack_duplicate_json_keys_in_payload() -> None:
    body = dump_json(credential(Purpose.SVC).to_payload())
    assert check_code(craft(STANDARD, deflate(body[:-1] + b',"ent":"HESTGP"}'))) is \
        ResultCode.MALFORMED


def test_attack_duplicate_json_keys_in_header() -> None:
    header = b'{"alg":"EdDSA","kid":"k1","zip":"DEF","alg":"none"}'
    assert check_code(craft(header, PAYLOAD)) is ResultCode.MALFORMED


def test_attack_unregistered_claim() -> None:
    claims = credential(Purpose.PAY).to_payload() | {"admin": True}
    assert check_code(craft(STANDARD, deflate(dump_json(claims)), purpose="pay"),
                   service="payment") is ResultCode.MALFORMED


# --- holder proof attacks ----------------------------------------------------------

def test_attack_foreign_holder_proof() -> None:
    assert check_code(present(Purpose.SVC, device=OTHER_DEVICE)) is ResultCode.HOLDER_PROOF_INVALID


def test_attack_swapped_holder_proof_from_another_credential() -> None:
    mine = decode_presentation(present(Purpose.SVC))
    other = decode_presentation(present(Purpose.SVC, card_number="3300099999999999"))
    swapped = encode_presentation(mine.credential_jws, other.proof_time, other.holder_proof)
    assert check_code(swapped) is ResultCode.HOLDER_PROOF_INVALID


def test_attack_proof_time_edited_to_look_fresh() -> None:
    old = decode_presentation(present(Purpose.SVC, proof_time=NOW - 600))
    edited = encode_presentation(old.credential_jws, NOW, old.holder_proof)
    assert check_code(edited) is ResultCode.HOLDER_PROOF_INVALID


def test_attack_replay_inside_the_window() -> None:
    state, cache = World().state(), MemoryReplayCache()
    text = present(Purpose.PAY)
    policy = POLICIES["payment"]
    assert verify_presentation(text, state=state, policy=policy, now=NOW,
                               replay_cache=cache).ok
    assert verify_presentation(text, state=state, policy=policy, now=NOW + 30,
                               replay_cache=cache).code is ResultCode.REPLAYED


def test_attack_replay_outside_the_window_screenshot() -> None:
    assert check_code(present(Purpose.ID), service="counter", now=NOW + 61) is \
        ResultCode.HOLDER_PROOF_STALE


@pytest.mark.parametrize(("skew", "expected"), [
    (-60, ResultCode.OK), (-61, ResultCode.HOLDER_PROOF_STALE),
    (5, ResultCode.OK), (6, ResultCode.HOLDER_PROOF_STALE),
])
def test_attack_clock_skew_at_the_boundaries(skew: int, expected: ResultCode) -> None:
    assert check_code(present(Purpose.SVC, proof_time=NOW + skew)) is expected


# --- keys, trust list and status list attacks --------------------------------------

def test_attack_credential_from_a_compromised_key() -> None:
    world = World(keys=(
        IssuerKey("k1", ISSUER_KEY.public_key, KeyState.COMPROMISED, NOW - 30 * DAY, NOW),
        IssuerKey("k2", NEXT_KEY.public_key, KeyState.ACTIVE, NOW - DAY),
    ))
    assert check_code(present(Purpose.SVC), world=world) is ResultCode.KEY_COMPROMISED


def test_attack_backdated_credential_from_a_retired_key() -> None:
    world = World(keys=(
        IssuerKey("k1", ISSUER_KEY.public_key, KeyState.RETIRED, NOW - 30 * DAY, NOW - 2 * DAY),
        IssuerKey("k2", NEXT_KEY.public_key, KeyState.ACTIVE, NOW - 2 * DAY),
    ))
    assert check_code(present(Purpose.SVC, issued_at=NOW - DAY), world=world) is \
        ResultCode.KEY_NOT_VALID_AT_ISSUE


def test_attack_trust_list_rollback() -> None:
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    trusted.update_trust_list(World(trust_version=7).trust_list_jwt(), now=NOW)
    old = World(trust_version=6).trust_list_jwt()
    assert refused_update(lambda: trusted.update_trust_list(old, now=NOW)) is \
        ResultCode.TRUST_LIST_ROLLBACK


def test_attack_trust_list_freeze() -> None:
    frozen = World(trust_expires=NOW - 1).trust_list_jwt()
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    assert refused_update(lambda: trusted.update_trust_list(frozen, now=NOW)) is \
        ResultCode.TRUST_LIST_STALE
    state = World(trust_expires=NOW + 10).state()
    assert verify_presentation(present(Purpose.SVC, proof_time=NOW + 20), state=state,
                               policy=POLICIES["hospital"], now=NOW + 20,
                               replay_cache=None).code is ResultCode.TRUST_LIST_STALE


def test_attack_trust_list_signed_by_attacker_root() -> None:
    attacker = Ed25519Signer.generate(kid="root")
    from keys import sign_trust_list
    from schemas import TrustListClaims

    claims = TrustListClaims("CN-YW", 99, NOW, NOW + DAY,
                             (IssuerKey("k1", attacker.public_key, KeyState.ACTIVE, 0),))
    token = sign_trust_list(claims, attacker)
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    assert refused_update(lambda: trusted.update_trust_list(token, now=NOW)) is \
        ResultCode.UNKNOWN_KEY


def test_attack_trust_list_with_pinned_root_header_but_other_signer() -> None:
    attacker = Ed25519Signer.generate(kid="root")
    genuine = World().trust_list_jwt()
    head, body, _ = genuine.split(".")
    forged_sig = attacker.sign(f"{head}.{body}".encode())
    token = f"{head}.{body}.{b64url_encode(forged_sig)}"
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    assert refused_update(lambda: trusted.update_trust_list(token, now=NOW)) is \
        ResultCode.BAD_SIGNATURE


def test_attack_trust_list_one_byte_changed() -> None:
    token = World().trust_list_jwt()
    middle = len(token) // 2
    changed = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    assert refused_update(lambda: trusted.update_trust_list(changed, now=NOW)) in {
        ResultCode.BAD_SIGNATURE, ResultCode.MALFORMED}


def test_attack_status_list_of_another_list_id() -> None:
    world = World()
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    trusted.update_trust_list(world.trust_list_jwt(), now=NOW)
    trusted.update_status_list(world.status_list_jwt(list_id="2"), now=NOW)
    result = verify_presentation(present(Purpose.SVC), state=trusted.snapshot(),
                                 policy=POLICIES["hospital"], now=NOW, replay_cache=None)
    assert result.code is ResultCode.STATUS_UNAVAILABLE


def test_attack_status_list_signed_by_foreign_key() -> None:
    world = World()
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    trusted.update_trust_list(world.trust_list_jwt(), now=NOW)
    forged = world.status_list_jwt(signer=FOREIGN_KEY)
    assert refused_update(lambda: trusted.update_status_list(forged, now=NOW)) is \
        ResultCode.BAD_SIGNATURE


def test_attack_status_list_rollback_to_older_list() -> None:
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    trusted.update_trust_list(World().trust_list_jwt(), now=NOW)
    revoked = World()
    revoked.statuses.set(123_456, 1)
    trusted.update_status_list(revoked.status_list_jwt(), now=NOW)
    older = World(status_issued=NOW - 600).status_list_jwt()  # the card was still valid then
    assert refused_update(lambda: trusted.update_status_list(older, now=NOW)) is \
        ResultCode.STATUS_UNAVAILABLE


def test_attack_status_list_zlib_bomb() -> None:
    world = World()
    claims = StatusListClaims("1", "u", NOW, NOW + DAY, 300, StatusList.empty(8))
    payload = claims.to_payload()
    payload["status_list"]["lst"] = b64url_encode(zlib.compress(bytes(64 << 20), 9))
    token = sign_compact({"alg": "EdDSA", "kid": "k1", "typ": "statuslist+jwt"},
                         dump_json(payload), ISSUER_KEY)
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    trusted.update_trust_list(world.trust_list_jwt(), now=NOW)
    assert refused_update(lambda: trusted.update_status_list(token, now=NOW)) is \
        ResultCode.MALFORMED


def test_attack_status_list_alg_none() -> None:
    world = World()
    genuine = world.status_list_jwt()
    _, body, _ = genuine.split(".")
    head = b64url_encode(b'{"alg":"none","kid":"k1","typ":"statuslist+jwt"}')
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    trusted.update_trust_list(world.trust_list_jwt(), now=NOW)
    assert refused_update(lambda: trusted.update_status_list(f"{head}.{body}.", now=NOW)) in {
        ResultCode.ALGORITHM_NOT_ALLOWED, ResultCode.MALFORMED}


def test_root_key_is_never_an_issuer_key() -> None:
    # The root signs trust lists only; a credential with kid "root" finds no issuer key.
    text = present(Purpose.SVC, signer=Ed25519Signer(ROOT.seed, kid="root"))
    assert check_code(text) is ResultCode.UNKNOWN_KEY
