"""P14: the move from JOSE "EdDSA" to RFC 9864's "Ed25519", on both sides of the cut-over.

The trust list announces ``alg_cutover``. Before it both names verify, so verifiers can be
updated ahead of issuers; from it on an object that says "EdDSA" is a downgrade.
"""

from __future__ import annotations

import pytest

from keys import (
    sign_compact,
    sign_credential,
    sign_presentation,
    sign_status_list,
    sign_trust_list,
)
from schemas import Purpose, ResultCode, decode_presentation
from schemas._jose import dump_json
from schemas.codes import AlgorithmDowngrade, FmcError
from schemas.presentation import encode_presentation
from schemas.receipt import RECEIPT_TYP, Receipt
from schemas.status_list import StatusList, StatusListClaims
from schemas.trust_list import TrustListClaims
from support import DAY, DEVICE, ISSUER, ISSUER_KEY, NOW, ROOT, ROOT_FINGERPRINT, World, credential
from verifier import POLICIES, MemoryReplayCache, TrustedSet, verify_presentation
from verifier.receipts import verify_receipt
from verifier.trust import verify_status_list, verify_trust_list

CUTOVER = NOW - DAY // 2  # half a day ago: credentials issued a day ago predate it


def _check(alg: str, issued_at: int, *, cutover: int | None = CUTOVER) -> ResultCode:
    world = World(alg_cutover=cutover)
    token = sign_credential(credential(Purpose.SVC, issued_at=issued_at), ISSUER_KEY, alg=alg)
    text = sign_presentation(token, DEVICE, proof_time=NOW, purpose="svc")
    return verify_presentation(text, state=world.state(), policy=POLICIES["hospital"],
                               now=NOW, replay_cache=MemoryReplayCache()).code


@pytest.mark.parametrize(("case", "alg", "issued_at", "cutover", "expected"), [
    ("EdDSA issued before the cut-over", "EdDSA", NOW - DAY, CUTOVER, ResultCode.OK),
    ("EdDSA issued at the cut-over", "EdDSA", CUTOVER, CUTOVER,
     ResultCode.ALGORITHM_DOWNGRADE),
    ("EdDSA issued after the cut-over (downgrade)", "EdDSA", NOW - 60, CUTOVER,
     ResultCode.ALGORITHM_DOWNGRADE),
    ("Ed25519 after the cut-over", "Ed25519", NOW - 60, CUTOVER, ResultCode.OK),
    ("Ed25519 before the cut-over (issuer switched early)", "Ed25519", NOW - DAY, CUTOVER,
     ResultCode.OK),
    ("EdDSA with no cut-over announced", "EdDSA", NOW - 60, None, ResultCode.OK),
    ("Ed25519 with no cut-over announced", "Ed25519", NOW - 60, None, ResultCode.OK),
])
def test_credentials_on_both_sides_of_the_cutover(
    case: str, alg: str, issued_at: int, cutover: int | None, expected: ResultCode
) -> None:
    assert _check(alg, issued_at, cutover=cutover) is expected, case


def test_a_downgrade_is_refused_only_after_the_signature_passed() -> None:
    """A forged "EdDSA" credential is BAD_SIGNATURE, not a downgrade: no claim (its iat)
    is read before the signature."""
    world = World(alg_cutover=CUTOVER)
    token = sign_credential(credential(Purpose.SVC, issued_at=NOW - 60), ISSUER_KEY, alg="EdDSA")
    head, payload, signature = token.split(".")
    forged = head + "." + payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    text = sign_presentation(forged, DEVICE, proof_time=NOW, purpose="svc")
    result = verify_presentation(text, state=world.state(), policy=POLICIES["hospital"],
                                 now=NOW, replay_cache=MemoryReplayCache())
    assert result.code is ResultCode.BAD_SIGNATURE


def test_the_qr_does_not_grow_with_the_new_name() -> None:
    """Form 0x03 implies the Ed25519 header as 0x02 implies the EdDSA one."""
    lengths = {}
    for alg in ("EdDSA", "Ed25519"):
        token = sign_credential(credential(Purpose.PAY), ISSUER_KEY, alg=alg)
        text = sign_presentation(token, DEVICE, proof_time=NOW, purpose="pay")
        lengths[alg] = (int(text[5:]).bit_length() + 7) // 8  # container bytes
        assert decode_presentation(text).header.startswith(b'{"alg":"' + alg.encode())
    assert lengths["Ed25519"] == lengths["EdDSA"]


@pytest.mark.parametrize("form", [0x04, 0x0F])
def test_a_newer_container_form_is_unsupported_version(form: int) -> None:
    token = sign_credential(credential(Purpose.SVC), ISSUER_KEY)
    genuine = sign_presentation(token, DEVICE, proof_time=NOW, purpose="svc")
    number = int(genuine[5:])
    container = bytearray(number.to_bytes((number.bit_length() + 7) // 8, "big"))
    assert container[0] == 0x03
    container[0] = form
    text = "FMC1:" + str(int.from_bytes(container, "big"))
    world = World()
    result = verify_presentation(text, state=world.state(), policy=POLICIES["hospital"],
                                 now=NOW, replay_cache=MemoryReplayCache())
    assert result.code is ResultCode.UNSUPPORTED_VERSION


def test_an_explicit_header_with_either_name_still_travels_whole() -> None:
    """A header that is not the standard one (here with an extra space) keeps form 0x01."""
    token = sign_credential(credential(Purpose.SVC), ISSUER_KEY)
    text = sign_presentation(token, DEVICE, proof_time=NOW, purpose="svc")
    parts = decode_presentation(text)
    assert encode_presentation(parts.credential_jws, NOW, parts.holder_proof) == text


def _trust(cutover: int | None, *, fmt: int = 2, issued_at: int = NOW - 60) -> TrustListClaims:
    return TrustListClaims(ISSUER, 1, issued_at, NOW + 7 * DAY, World().keys,
                           alg_cutover=cutover, format_version=fmt)


@pytest.mark.parametrize(("case", "alg", "issued_at", "expected"), [
    ("Ed25519 list after the cut-over", "Ed25519", NOW - 60, None),
    ("EdDSA list before the cut-over", "EdDSA", CUTOVER - 60, None),
    ("EdDSA list after the cut-over", "EdDSA", NOW - 60, ResultCode.ALGORITHM_DOWNGRADE),
])
def test_trust_lists_follow_their_own_cutover(
    case: str, alg: str, issued_at: int, expected: ResultCode | None
) -> None:
    jwt = sign_trust_list(_trust(CUTOVER, issued_at=issued_at), ROOT, alg=alg)
    if expected is None:
        assert verify_trust_list(jwt, root_fingerprint=ROOT_FINGERPRINT).alg_cutover == CUTOVER
    else:
        with pytest.raises(FmcError) as refused:
            verify_trust_list(jwt, root_fingerprint=ROOT_FINGERPRINT)
        assert refused.value.code is expected, case


def test_a_trust_list_needing_a_newer_format_is_refused_and_the_held_one_kept() -> None:
    trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
    held = trusted.update_trust_list(sign_trust_list(_trust(CUTOVER), ROOT), now=NOW)
    newer = _trust(CUTOVER, fmt=3)
    payload_fmt_3 = sign_trust_list(newer, ROOT)
    with pytest.raises(FmcError) as refused:
        trusted.update_trust_list(payload_fmt_3, now=NOW)
    assert refused.value.code is ResultCode.UNSUPPORTED_VERSION
    assert trusted.trust_list == held


@pytest.mark.parametrize(("alg", "issued_at", "expected"), [
    ("Ed25519", NOW - 60, None),
    ("EdDSA", CUTOVER - 1, None),
    ("EdDSA", CUTOVER, ResultCode.ALGORITHM_DOWNGRADE),
])
def test_status_lists_and_receipts_follow_the_cutover(
    alg: str, issued_at: int, expected: ResultCode | None
) -> None:
    trust = _trust(CUTOVER)
    status = sign_status_list(StatusListClaims("1", "https://fmc.example/v1/status-lists/1",
                                               issued_at, NOW + DAY, 300,
                                               StatusList.empty(1024)), ISSUER_KEY, alg=alg)
    receipt = sign_compact(
        {"alg": alg, "kid": ISSUER_KEY.kid, "typ": RECEIPT_TYP},
        dump_json(Receipt(
            receipt_id="p1", kind="payment", payment_id="p1", issuer=ISSUER,
            card_number="3300012345678901", merchant_id=7, terminal_id=3, amount_fen=1250,
            balance_fen=0, overdraft_fen=0, mode="online", issued_at=issued_at,
            accepted_at=issued_at, pay_code="a" * 43).to_payload()), ISSUER_KEY)
    for verify in (lambda: verify_status_list(status, trust_list=trust),
                   lambda: verify_receipt(receipt, trust_list=trust)):
        if expected is None:
            verify()
        else:
            with pytest.raises(AlgorithmDowngrade):
                verify()


@pytest.mark.parametrize(("member", "value", "expected"), [
    ("fmt", 0, ResultCode.MALFORMED),
    ("fmt", -1, ResultCode.MALFORMED),
    ("fmt", "2", ResultCode.MALFORMED),
    ("fmt", 2.0, ResultCode.MALFORMED),
    ("fmt", True, ResultCode.MALFORMED),
    ("fmt", None, ResultCode.MALFORMED),
    ("fmt", 10 ** 40, ResultCode.UNSUPPORTED_VERSION),
    ("alg_cutover", -1, ResultCode.MALFORMED),
    ("alg_cutover", "2027-01-01", ResultCode.MALFORMED),
    ("alg_cutover", 1.5, ResultCode.MALFORMED),
    ("alg_cutover", False, ResultCode.MALFORMED),
    ("alg_cutover", [1], ResultCode.MALFORMED),
])
def test_every_bad_value_of_the_new_trust_list_members_is_refused(
    member: str, value: object, expected: ResultCode
) -> None:
    """The class, not one example: anything but a sane integer is MALFORMED (signed by
    the real root, so only the value is wrong)."""
    from keys import public_jwk
    from keys.jws import sign_compact
    from schemas._jose import dump_json
    from schemas.trust_list import TRUST_LIST_TYP

    payload = _trust(CUTOVER).to_payload()
    payload[member] = value
    jwt = sign_compact({"alg": "Ed25519", "typ": TRUST_LIST_TYP,
                        "jwk": public_jwk(ROOT.public_key)}, dump_json(payload), ROOT)
    with pytest.raises(FmcError) as refused:
        verify_trust_list(jwt, root_fingerprint=ROOT_FINGERPRINT)
    assert refused.value.code is expected
