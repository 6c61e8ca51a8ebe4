"""verify_presentation with a verifier pinned to the national root: one attack per row.

The kid (unique nationally) finds the key and its city before the signature; the city's
national state and the key's state are checked then; after the signature the signed
``iss`` must be that city, and the status list is that city's (lists keyed (city, id)).
"""

from __future__ import annotations

import pytest
from federation_kit import (
    HANGZHOU_KEY,
    HANGZHOU_ONLY_KEY,
    REVOKED_IN_HANGZHOU,
    federated_state,
    federation,
    hangzhou,
    status_list_jwt,
    yiwu,
)

from keys import Ed25519Signer, sign_credential, sign_presentation
from keys.jws import sign_compact
from schemas import IssuerKey, KeyState, Purpose, ResultCode
from schemas._jose import dump_json
from schemas.codes import FmcError
from schemas.credential import StatusRef
from schemas.federation import FederationClaims, IssuerState
from schemas.receipt import RECEIPT_TYP, Receipt
from support import DAY, DEVICE, ISSUER_KEY, NOW, SALE, credential
from verifier import POLICIES, MemoryReplayCache, verify_presentation
from verifier.federation import trust_for
from verifier.receipts import check_receipt
from verifier.trust import verify_status_list

# Hangzhou's key under Yiwu's kid: what a thief holding h1 would try.
HANGZHOU_KEY_AS_K1 = Ed25519Signer(HANGZHOU_KEY.seed, kid="k1")
UNLISTED_KEY = Ed25519Signer(bytes(range(40, 72)), kid="x1")


def _card(signer: Ed25519Signer, issuer: str, *, purpose: Purpose = Purpose.SVC,
          **overrides: object) -> str:
    jws = sign_credential(credential(purpose, issuer=issuer, **overrides), signer)
    return sign_presentation(jws, DEVICE, proof_time=NOW, purpose=purpose.value)


def _compromised_h1() -> FederationClaims:
    return federation(yiwu(), hangzhou(keys=(
        IssuerKey("h1", HANGZHOU_KEY.public_key, KeyState.COMPROMISED, NOW - 30 * DAY),)))


def _late_h1() -> FederationClaims:  # h1 may sign only from NOW - 1 h (cards are dated NOW - 1 d)
    return federation(yiwu(), hangzhou(keys=(
        IssuerKey("h1", HANGZHOU_KEY.public_key, KeyState.ACTIVE, NOW - 3600),)))


CASES: list[tuple[str, str, FederationClaims | None, tuple[str, ...], ResultCode]] = [
    ("a Yiwu card", _card(ISSUER_KEY, "CN-YW"), None, ("CN-YW", "CN-HZ"), ResultCode.OK),
    ("a Hangzhou card at a Yiwu counter", _card(HANGZHOU_KEY, "CN-HZ"), None,
     ("CN-YW", "CN-HZ"), ResultCode.OK),
    ("a Hangzhou key signs a card claiming Yiwu", _card(HANGZHOU_KEY, "CN-YW"), None,
     ("CN-YW", "CN-HZ"), ResultCode.UNKNOWN_KEY),
    ("a Hangzhou key under Yiwu's kid k1", _card(HANGZHOU_KEY_AS_K1, "CN-YW"), None,
     ("CN-YW", "CN-HZ"), ResultCode.BAD_SIGNATURE),
    ("a kid only Hangzhou has, on a card claiming Yiwu", _card(HANGZHOU_ONLY_KEY, "CN-YW"),
     None, ("CN-YW", "CN-HZ"), ResultCode.UNKNOWN_KEY),
    ("a kid no city has", _card(UNLISTED_KEY, "CN-HZ"), None, ("CN-YW", "CN-HZ"),
     ResultCode.UNKNOWN_KEY),
    ("Hangzhou suspended nationally", _card(HANGZHOU_KEY, "CN-HZ"),
     federation(yiwu(), hangzhou(state=IssuerState.SUSPENDED)), ("CN-YW",),
     ResultCode.ISSUER_SUSPENDED),
    ("Hangzhou removed", _card(HANGZHOU_KEY, "CN-HZ"),
     federation(yiwu(), hangzhou(state=IssuerState.REMOVED)), ("CN-YW",),
     ResultCode.ISSUER_REMOVED),
    ("a suspended city's forged card is refused before its signature",
     _card(HANGZHOU_KEY_AS_K1, "CN-HZ", card_number="9" * 16),
     federation(yiwu(state=IssuerState.SUSPENDED), hangzhou()), ("CN-HZ",),
     ResultCode.ISSUER_SUSPENDED),
    ("Yiwu unaffected by Hangzhou's suspension", _card(ISSUER_KEY, "CN-YW"),
     federation(yiwu(), hangzhou(state=IssuerState.SUSPENDED)), ("CN-YW",), ResultCode.OK),
    ("Hangzhou's key marked compromised", _card(HANGZHOU_KEY, "CN-HZ"), _compromised_h1(),
     ("CN-YW",), ResultCode.KEY_COMPROMISED),
    ("the key was not valid at iat", _card(HANGZHOU_KEY, "CN-HZ"), _late_h1(),
     ("CN-YW", "CN-HZ"), ResultCode.KEY_NOT_VALID_AT_ISSUE),
    ("revoked in Hangzhou's list 1", _card(HANGZHOU_KEY, "CN-HZ", status=StatusRef(
        "1", REVOKED_IN_HANGZHOU)), None, ("CN-YW", "CN-HZ"), ResultCode.REVOKED),
    ("the same index in Yiwu's list 1 is valid", _card(ISSUER_KEY, "CN-YW", status=(
        StatusRef("1", REVOKED_IN_HANGZHOU))), None, ("CN-YW", "CN-HZ"), ResultCode.OK),
    ("Yiwu's list 1 does not stand in for Hangzhou's", _card(HANGZHOU_KEY, "CN-HZ"), None,
     ("CN-YW",), ResultCode.STATUS_UNAVAILABLE),
    ("the federation list has expired", _card(HANGZHOU_KEY, "CN-HZ"),
     federation(issued_at=NOW - 9 * DAY, expires_at=NOW - 1), ("CN-YW", "CN-HZ"),
     ResultCode.TRUST_LIST_STALE),
]


@pytest.mark.parametrize(("name", "text", "claims", "cities", "expected"), CASES,
                         ids=[case[0] for case in CASES])
def test_national_check(name: str, text: str, claims: FederationClaims | None,
                        cities: tuple[str, ...], expected: ResultCode) -> None:
    state = federated_state(claims, cities=cities)
    result = verify_presentation(text, state=state, policy=POLICIES["hospital"], now=NOW,
                                 replay_cache=MemoryReplayCache())
    assert result.code is expected, result.detail


def test_the_answer_names_the_issuing_city_only_after_the_signature() -> None:
    state = federated_state()
    accepted = verify_presentation(_card(HANGZHOU_KEY, "CN-HZ"), state=state,
                                   policy=POLICIES["hospital"], now=NOW, replay_cache=None)
    assert accepted.to_json()["issuer"] == {"code": "CN-HZ", "name_en": "Hangzhou",
                                            "name_zh": "杭州"}
    forged = verify_presentation(_card(HANGZHOU_KEY_AS_K1, "CN-YW"), state=state,
                                 policy=POLICIES["hospital"], now=NOW, replay_cache=None)
    assert forged.code is ResultCode.BAD_SIGNATURE and forged.to_json()["issuer"] is None
    # Refused after the signature (revoked): the city is known, and shown.
    revoked = verify_presentation(
        _card(HANGZHOU_KEY, "CN-HZ", status=StatusRef("1", REVOKED_IN_HANGZHOU)),
        state=state, policy=POLICIES["hospital"], now=NOW, replay_cache=None)
    assert revoked.code is ResultCode.REVOKED and revoked.to_json()["issuer"]["code"] == "CN-HZ"


def test_a_hangzhou_pay_code_bound_to_a_yiwu_sale() -> None:
    jws = sign_credential(credential(Purpose.PAY, issuer="CN-HZ"), HANGZHOU_KEY)
    text = sign_presentation(jws, DEVICE, proof_time=NOW, purpose="pay",
                             challenge_digest=SALE.digest)
    for challenge, expected in ((SALE, ResultCode.OK), (None, ResultCode.CHALLENGE_MISMATCH)):
        result = verify_presentation(text, state=federated_state(), policy=POLICIES["payment"],
                                     now=NOW, replay_cache=MemoryReplayCache(),
                                     challenge=challenge)
        assert result.code is expected


def test_a_status_list_signed_by_one_city_is_refused_for_another() -> None:
    claims = federation()
    yiwu_signed = status_list_jwt("CN-YW", ISSUER_KEY)
    with pytest.raises(FmcError) as refused:
        verify_status_list(yiwu_signed, trust_list=trust_for(claims, "CN-HZ"))
    assert refused.value.code is ResultCode.UNKNOWN_KEY


def _receipt(issuer: str) -> Receipt:
    return Receipt("p1", "payment", "p1", issuer, "3300012345678901", 7, 3, 1250, 8750, 0,
                   "online", NOW, NOW, "pc")


def _signed_receipt(receipt: Receipt, signer: Ed25519Signer) -> str:
    return sign_compact({"alg": "EdDSA", "kid": signer.kid, "typ": RECEIPT_TYP},
                        dump_json(receipt.to_payload()), signer)


RECEIPTS: list[tuple[str, str, FederationClaims, str]] = [
    ("Hangzhou's receipt at a Yiwu terminal", _signed_receipt(_receipt("CN-HZ"), HANGZHOU_KEY),
     federation(), "RECEIPT_SALE_UNKNOWN"),
    ("Yiwu's receipt", _signed_receipt(_receipt("CN-YW"), ISSUER_KEY), federation(),
     "RECEIPT_SALE_UNKNOWN"),
    ("Hangzhou's key signs a receipt claiming Yiwu",
     _signed_receipt(_receipt("CN-YW"), HANGZHOU_KEY), federation(), "RECEIPT_UNKNOWN_KEY"),
    ("Hangzhou's key under Yiwu's kid", _signed_receipt(_receipt("CN-YW"), HANGZHOU_KEY_AS_K1),
     federation(), "RECEIPT_BAD_SIGNATURE"),
    ("Hangzhou suspended", _signed_receipt(_receipt("CN-HZ"), HANGZHOU_KEY),
     federation(yiwu(), hangzhou(state=IssuerState.SUSPENDED)), "RECEIPT_ISSUER_SUSPENDED"),
]


@pytest.mark.parametrize(("name", "jwt", "claims", "expected"), RECEIPTS,
                         ids=[case[0] for case in RECEIPTS])
def test_receipts_of_any_listed_city(name: str, jwt: str, claims: FederationClaims,
                                     expected: str) -> None:
    # RECEIPT_SALE_UNKNOWN: the signature and issuer passed; no sale given to match.
    assert check_receipt(jwt, trust_list=None, sale=None, federation=claims).code == expected
