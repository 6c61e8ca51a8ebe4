"""verify_federation_list and resolve_issuer_key: one code per failed check, in order."""

from __future__ import annotations

import pytest
from federation_kit import (
    HANGZHOU_KEY,
    NATIONAL_FINGERPRINT,
    NATIONAL_ROOT,
    OTHER_NATIONAL_ROOT,
    federation,
    federation_jwt,
    hangzhou,
    yiwu,
)

from keys import public_jwk, sign_credential, sign_presentation, sign_status_list
from keys.jws import sign_compact
from schemas import IssuerKey, KeyState, Purpose, ResultCode, StatusList, StatusListClaims
from schemas._jose import b64url_encode, dump_json
from schemas.codes import FmcError
from schemas.federation import FederationClaims, IssuerState
from support import DEVICE, NOW, ROOT_FINGERPRINT, World, credential
from verifier import POLICIES, MemoryReplayCache, verify_presentation
from verifier.federation import (
    resolve_issuer_key,
    resolve_key_by_kid,
    trust_for,
    verify_federation_list,
)
from verifier.trust import VerifierState, verify_status_list


def _verify(jwt: str, *, held: FederationClaims | None = None, now: int = NOW,
            pin: str = NATIONAL_FINGERPRINT) -> FederationClaims:
    return verify_federation_list(jwt, pinned_root_fingerprint=pin, now=now, held=held)


def _code(jwt: str, **kwargs: object) -> ResultCode:
    try:
        _verify(jwt, **kwargs)  # type: ignore[arg-type]
    except FmcError as refused:
        return refused.code
    return ResultCode.OK


def _header(**members: object) -> dict[str, object]:
    return {"alg": "EdDSA", "typ": "fmc-federation+jwt",
            "jwk": public_jwk(NATIONAL_ROOT.public_key), **members}


def _signed(header: dict[str, object], payload: bytes | None = None) -> str:
    body = dump_json(federation().to_payload()) if payload is None else payload
    if header.get("alg") != "EdDSA":  # sign_compact signs EdDSA only: forge the rest by hand
        signing_input = b64url_encode(dump_json(header)) + "." + b64url_encode(body)
        return signing_input + "." + b64url_encode(bytes(64))
    return sign_compact(header, body, NATIONAL_ROOT)


def _tampered() -> str:
    head, _, signature = federation_jwt().split(".")
    forged = federation(yiwu(), hangzhou(state=IssuerState.ACTIVE, name_en="Hangzhou!"))
    return head + "." + b64url_encode(dump_json(forged.to_payload())) + "." + signature


HELD_V5 = federation(version=5)

REFUSED: list[tuple[str, ResultCode, str, dict[str, object]]] = [
    ("good", ResultCode.OK, federation_jwt(), {}),
    ("same list again", ResultCode.OK, federation_jwt(HELD_V5), {"held": HELD_V5}),
    ("newer list", ResultCode.OK, federation_jwt(federation(version=6)), {"held": HELD_V5}),
    ("alg none", ResultCode.ALGORITHM_NOT_ALLOWED, _signed(_header(alg="none")), {}),
    ("alg HS256", ResultCode.ALGORITHM_NOT_ALLOWED, _signed(_header(alg="HS256")), {}),
    ("alg checked before typ", ResultCode.ALGORITHM_NOT_ALLOWED,
     _signed(_header(alg="RS256", typ="fmc-trust+jwt")), {}),
    ("a trust list's typ", ResultCode.MALFORMED, _signed(_header(typ="fmc-trust+jwt")), {}),
    ("crit header", ResultCode.MALFORMED, _signed(_header(crit=["exp"])), {}),
    ("no root jwk", ResultCode.MALFORMED,
     _signed({"alg": "EdDSA", "typ": "fmc-federation+jwt"}), {}),
    ("a city trust list offered instead", ResultCode.MALFORMED,
     World().trust_list_jwt(), {}),
    ("another national root", ResultCode.UNKNOWN_KEY,
     federation_jwt(root=OTHER_NATIONAL_ROOT), {}),
    ("pinned to a city root", ResultCode.UNKNOWN_KEY, federation_jwt(),
     {"pin": ROOT_FINGERPRINT}),
    ("tampered payload", ResultCode.BAD_SIGNATURE, _tampered(), {}),
    ("signed but malformed", ResultCode.MALFORMED,
     _signed(_header(), dump_json({**federation().to_payload(), "issuers": []})), {}),
    ("rolled back", ResultCode.TRUST_LIST_ROLLBACK, federation_jwt(federation(version=4)),
     {"held": HELD_V5}),
    ("same version, other contents", ResultCode.TRUST_LIST_ROLLBACK,
     federation_jwt(federation(yiwu(), version=5)), {"held": HELD_V5}),
    ("expired (freeze)", ResultCode.TRUST_LIST_STALE,
     federation_jwt(federation(issued_at=NOW - 9, expires_at=NOW)), {}),
    ("expired even if newer", ResultCode.TRUST_LIST_STALE,
     federation_jwt(federation(version=6, issued_at=NOW - 9, expires_at=NOW - 1)),
     {"held": HELD_V5}),
]


@pytest.mark.parametrize(("name", "expected", "jwt", "kwargs"), REFUSED,
                         ids=[case[0] for case in REFUSED])
def test_federation_list_check(name: str, expected: ResultCode, jwt: str,
                               kwargs: dict[str, object]) -> None:
    assert _code(jwt, **kwargs) is expected


def test_no_pin_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        _verify(federation_jwt(), pin="")


def _resolve(claims: FederationClaims, issuer: str, kid: str) -> ResultCode:
    try:
        resolve_issuer_key(claims, unverified_issuer=issuer, unverified_kid=kid)
    except FmcError as refused:
        return refused.code
    return ResultCode.OK


COMPROMISED_HZ = hangzhou(keys=(IssuerKey("h1", HANGZHOU_KEY.public_key, KeyState.COMPROMISED,
                                          NOW - 30 * 86_400),))
RESOLVE: list[tuple[str, FederationClaims, str, str, ResultCode]] = [
    ("Yiwu k1", federation(), "CN-YW", "k1", ResultCode.OK),
    ("Hangzhou h1", federation(), "CN-HZ", "h1", ResultCode.OK),
    ("a kid only Hangzhou has, claimed by Yiwu", federation(), "CN-YW", "h7",
     ResultCode.UNKNOWN_KEY),
    ("unknown kid", federation(), "CN-HZ", "h9", ResultCode.UNKNOWN_KEY),
    ("city not listed", federation(), "CN-NB", "k1", ResultCode.ISSUER_UNKNOWN),
    ("city suspended", federation(yiwu(), hangzhou(state=IssuerState.SUSPENDED)), "CN-HZ", "h1",
     ResultCode.ISSUER_SUSPENDED),
    ("city removed", federation(yiwu(), hangzhou(state=IssuerState.REMOVED)), "CN-HZ", "h1",
     ResultCode.ISSUER_REMOVED),
    ("suspension before kid lookup", federation(yiwu(), hangzhou(state=IssuerState.SUSPENDED)),
     "CN-HZ", "h9", ResultCode.ISSUER_SUSPENDED),
    ("city key compromised", federation(yiwu(), COMPROMISED_HZ), "CN-HZ", "h1",
     ResultCode.KEY_COMPROMISED),
    ("another city's compromise leaves Yiwu alone", federation(yiwu(), COMPROMISED_HZ), "CN-YW",
     "k1", ResultCode.OK),
]


@pytest.mark.parametrize(("name", "claims", "issuer", "kid", "expected"), RESOLVE,
                         ids=[case[0] for case in RESOLVE])
def test_resolve_issuer_key(name: str, claims: FederationClaims, issuer: str, kid: str,
                            expected: ResultCode) -> None:
    assert _resolve(claims, issuer, kid) is expected


def test_resolved_key_is_the_named_citys() -> None:
    city, key = resolve_issuer_key(federation(), unverified_issuer="CN-HZ", unverified_kid="h1")
    assert city.code == "CN-HZ" and key.public_key == HANGZHOU_KEY.public_key


def _by_kid(claims: FederationClaims, kid: str) -> ResultCode | str:
    try:
        entry, _ = resolve_key_by_kid(claims, unverified_kid=kid)
    except FmcError as refused:
        return refused.code
    return entry.code


BY_KID: list[tuple[str, FederationClaims, str, ResultCode | str]] = [
    ("Yiwu's k1", federation(), "k1", "CN-YW"),
    ("Hangzhou's h1", federation(), "h1", "CN-HZ"),
    ("Hangzhou's next key h7", federation(), "h7", "CN-HZ"),
    ("a kid no city has", federation(), "x1", ResultCode.UNKNOWN_KEY),
    ("city suspended", federation(yiwu(), hangzhou(state=IssuerState.SUSPENDED)), "h1",
     ResultCode.ISSUER_SUSPENDED),
    ("city removed", federation(yiwu(), hangzhou(state=IssuerState.REMOVED)), "h1",
     ResultCode.ISSUER_REMOVED),
    ("city key compromised", federation(yiwu(), COMPROMISED_HZ), "h1",
     ResultCode.KEY_COMPROMISED),
    ("another city's compromise leaves Yiwu alone", federation(yiwu(), COMPROMISED_HZ), "k1",
     "CN-YW"),
    ("another city's suspension leaves Yiwu alone",
     federation(yiwu(), hangzhou(state=IssuerState.SUSPENDED)), "k1", "CN-YW"),
]


@pytest.mark.parametrize(("name", "claims", "kid", "expected"), BY_KID,
                         ids=[case[0] for case in BY_KID])
def test_resolve_key_by_kid(name: str, claims: FederationClaims, kid: str,
                            expected: ResultCode | str) -> None:
    assert _by_kid(claims, kid) == expected


def test_trust_for_gives_one_citys_keys_and_refuses_a_cut_off_city() -> None:
    claims = federation()
    hz = trust_for(claims, "CN-HZ")
    assert hz.issuer == "CN-HZ" and set(hz.keys_by_kid) == {"h1", "h7"}
    assert hz.expires_at == claims.expires_at
    for cut_off, code in ((IssuerState.SUSPENDED, ResultCode.ISSUER_SUSPENDED),
                          (IssuerState.REMOVED, ResultCode.ISSUER_REMOVED)):
        with pytest.raises(FmcError) as refused:
            trust_for(federation(yiwu(), hangzhou(state=cut_off)), "CN-HZ")
        assert refused.value.code is code


def test_a_hangzhou_card_verifies_through_the_federation_with_todays_check() -> None:
    """The wiring step: a city's entry stands in for its trust list, unchanged checks run."""
    claims = _verify(federation_jwt())
    city = claims.issuers_by_code["CN-HZ"]
    trust_list = city.as_trust_list(claims)
    status = StatusListClaims("1", "http://hz.example.cn/v1/status-lists/1", NOW - 60,
                              NOW + 86_400, 3600, StatusList.empty(131_072))
    status_list = verify_status_list(sign_status_list(status, HANGZHOU_KEY),
                                     trust_list=trust_list)
    state = VerifierState.of(trust_list, {"1": status_list})
    card = sign_credential(credential(Purpose.SVC, issuer="CN-HZ"), HANGZHOU_KEY)
    text = sign_presentation(card, DEVICE, proof_time=NOW,
                             purpose="svc")
    result = verify_presentation(text, state=state, policy=POLICIES["hospital"], now=NOW,
                                 replay_cache=MemoryReplayCache())
    assert result.code is ResultCode.OK
    # The same card claiming Yiwu, checked with Yiwu's keys alone, is refused: h1 is unknown.
    forged = sign_credential(credential(Purpose.SVC), HANGZHOU_KEY)
    yiwu_state = VerifierState.of(claims.issuers_by_code["CN-YW"].as_trust_list(claims), {})
    refused = verify_presentation(
        sign_presentation(forged, DEVICE, proof_time=NOW, purpose="svc"),
        state=yiwu_state, policy=POLICIES["hospital"], now=NOW, replay_cache=None)
    assert refused.code is ResultCode.UNKNOWN_KEY
