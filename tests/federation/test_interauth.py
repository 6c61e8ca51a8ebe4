"""Signed requests between authorities (contract 4): one test per attack, codes only.

Hangzhou (caller, interchange key ``hi1``) asks Yiwu (receiver); the receiver's
federation list is the only source of keys, the clock is fixed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from federation_kit import HANGZHOU_KEY, federation, hangzhou, yiwu
from interauth_kit import HANGZHOU_IK, YIWU_IK, YW_API, ik, two_cities

from cardsvc.federation.interauth import (
    InterauthClaims,
    body_hash,
    sign_interauth_request,
    verify_interauth_request,
)
from cardsvc.services.errors import DomainError
from keys import Ed25519Signer
from keys.jws import sign_compact
from schemas import KeyState, TrustListClaims, b64url_encode
from schemas._jose import dump_json
from schemas.codes import Malformed
from schemas.federation import FederationClaims, IssuerState
from support import NOW

URL = YW_API + "/v1/interauth/person-lookups"
BODY = b'{"passport":{"number":"X1","country":"USA"}}'


def _sign(**overrides: Any) -> str:
    args: dict[str, Any] = dict(signer=HANGZHOU_IK, caller="CN-HZ", callee="CN-YW",
                                method="POST", url=URL, body=BODY, officer_id=7,
                                reason="enrolment", now=NOW)
    args.update(overrides)
    return sign_interauth_request(**args)


def _verify(token: str, *, fed: FederationClaims | None = None, receiver: str = "CN-YW",
            method: str = "POST", url: str = URL, body: bytes = BODY,
            now: int = NOW) -> InterauthClaims:
    return verify_interauth_request(token, federation=fed or two_cities(), receiver=receiver,
                                    method=method, url=url, body=body, now=now)


def _code(token: str, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(DomainError) as refused:
        _verify(token, **kwargs)
    return refused.value.code, refused.value.status


def _raw(header: dict[str, Any], claims: dict[str, Any],
         signer: Ed25519Signer = HANGZHOU_IK) -> str:
    return sign_compact(header, dump_json(claims), signer)


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"iss": "CN-HZ", "aud": "CN-YW", "iat": NOW, "exp": NOW + 30,
                              "jti": "j1", "htm": "POST", "htu": URL, "bsh": body_hash(BODY),
                              "officer": 7, "reason": "enrolment"}
    claims.update(overrides)
    return claims


HEADER = {"alg": "Ed25519", "typ": "fmc-interauth+jwt", "kid": "hi1"}


def test_a_genuine_request_verifies_with_its_claims() -> None:
    claims = _verify(_sign())
    assert (claims.issuer, claims.audience, claims.officer_id, claims.reason) == (
        "CN-HZ", "CN-YW", 7, "enrolment")
    assert claims.kid == "hi1" and claims.method == "POST" and claims.url == URL
    assert _verify(_sign(officer_id=None)).officer_id is None


ATTACKS: list[tuple[str, Any, dict[str, Any], str, int]] = [
    # (attack, token builder, verify kwargs, code, status)
    ("other audience", lambda: _sign(callee="CN-SH"), {}, "INTERAUTH_WRONG_AUDIENCE", 401),
    ("sent to another city", lambda: _sign(), {"receiver": "CN-SH"},
     "INTERAUTH_WRONG_AUDIENCE", 401),
    ("body swapped", lambda: _sign(), {"body": BODY.replace(b"X1", b"X2")},
     "INTERAUTH_BODY_MISMATCH", 401),
    ("other path", lambda: _sign(), {"url": YW_API + "/v1/interauth/transfers"},
     "INTERAUTH_URL_MISMATCH", 401),
    ("other method", lambda: _sign(), {"method": "DELETE"}, "INTERAUTH_METHOD_MISMATCH", 401),
    ("expired", lambda: _sign(now=NOW - 31), {}, "INTERAUTH_EXPIRED", 401),
    ("from the future", lambda: _sign(now=NOW + 60), {}, "INTERAUTH_EXPIRED", 401),
    ("lives too long", lambda: _raw(HEADER, _claims(exp=NOW + 61)), {},
     "INTERAUTH_LIFETIME", 401),
    ("forged caller: Yiwu's name on Hangzhou's key",
     lambda: _raw(HEADER, _claims(iss="CN-YW")), {}, "INTERAUTH_ISSUER_MISMATCH", 401),
    ("forged caller: Hangzhou's kid, another key",
     lambda: _sign(signer=Ed25519Signer(bytes(range(90, 122)), kid="hi1")), {},
     "INTERAUTH_BAD_SIGNATURE", 401),
    ("credential key used", lambda: _sign(signer=HANGZHOU_KEY), {},
     "INTERAUTH_UNKNOWN_KEY", 401),
    ("unknown kid", lambda: _sign(signer=Ed25519Signer(bytes(range(90, 122)), kid="zi9")),
     {}, "INTERAUTH_UNKNOWN_KEY", 401),
    ("alg none", lambda: b64url_encode(dump_json({**HEADER, "alg": "none"})) + "."
     + b64url_encode(dump_json(_claims())) + ".", {}, "INTERAUTH_ALGORITHM_NOT_ALLOWED", 401),
    ("HS256", lambda: b64url_encode(dump_json({**HEADER, "alg": "HS256"})) + "."
     + b64url_encode(dump_json(_claims())) + ".AAAA", {}, "INTERAUTH_ALGORITHM_NOT_ALLOWED",
     401),
    ("another typ (a credential's header)",
     lambda: _raw({"alg": "Ed25519", "kid": "hi1", "typ": "fmc-trust+jwt"}, _claims()), {},
     "INTERAUTH_MALFORMED", 401),
    ("extra header member", lambda: _raw({**HEADER, "jku": "https://evil"}, _claims()), {},
     "INTERAUTH_MALFORMED", 401),
    ("missing claim", lambda: _raw(HEADER, {k: v for k, v in _claims().items()
                                            if k != "bsh"}), {}, "INTERAUTH_MALFORMED", 401),
    ("officer not an id", lambda: _raw(HEADER, _claims(officer="7")), {},
     "INTERAUTH_MALFORMED", 401),
    ("garbage", lambda: "not.a.jws", {}, "INTERAUTH_MALFORMED", 401),
    ("huge", lambda: "a" * 5000, {}, "INTERAUTH_MALFORMED", 401),
    ("suspended caller city", lambda: _sign(),
     {"fed": two_cities(hangzhou_state=IssuerState.SUSPENDED)}, "INTERAUTH_CALLER_SUSPENDED",
     403),
    ("removed caller city", lambda: _sign(),
     {"fed": two_cities(hangzhou_state=IssuerState.REMOVED)}, "INTERAUTH_CALLER_REMOVED", 403),
    ("compromised interchange key", lambda: _sign(),
     {"fed": two_cities(hangzhou_keys=(ik(HANGZHOU_IK, KeyState.COMPROMISED),))},
     "INTERAUTH_KEY_COMPROMISED", 401),
    ("caller without interchange keys", lambda: _sign(),
     {"fed": federation(replace(yiwu(), interchange_keys=(ik(YIWU_IK),)), hangzhou())},
     "INTERAUTH_UNKNOWN_KEY", 401),
]


@pytest.mark.parametrize(("attack", "build", "kwargs", "code", "status"), ATTACKS,
                         ids=[row[0] for row in ATTACKS])
def test_each_attack_is_refused_with_its_code(
        attack: str, build: Any, kwargs: dict[str, Any], code: str, status: int) -> None:
    assert _code(build(), **kwargs) == (code, status)


def test_an_interchange_key_outside_its_window_is_refused() -> None:
    retired = replace(ik(HANGZHOU_IK, KeyState.RETIRED), valid_until=NOW - 10)
    assert _code(_sign(), fed=two_cities(hangzhou_keys=(retired,))) == (
        "INTERAUTH_KEY_NOT_VALID", 401)


def test_an_interchange_key_never_verifies_a_credential_or_trust_list_key_slot() -> None:
    # ik kids live apart from credential kids: a list naming one kid in both is refused
    credential_kid = hangzhou().keys[0].kid
    entry = replace(hangzhou(), interchange_keys=(replace(ik(HANGZHOU_IK), kid=credential_kid),))
    with pytest.raises(Malformed):
        FederationClaims.from_payload(federation(yiwu(), entry).to_payload())
    # and a credential check looks only at ``keys``: the interchange kid is unknown there
    fed = two_cities()
    assert "hi1" not in fed.issuers_by_code["CN-HZ"].keys_by_kid
    assert "hi1" not in fed.issuers_by_code["CN-HZ"].as_trust_list(fed).keys_by_kid


def test_ik_round_trips_in_federation_and_trust_list_and_is_optional() -> None:
    fed = two_cities()
    again = FederationClaims.from_payload(json.loads(dump_json(fed.to_payload())))
    assert again == fed
    assert "ik" not in federation().to_payload()["issuers"][0]
    trust = TrustListClaims("CN-HZ", 1, NOW, NOW + 10, hangzhou().keys,
                            interchange_keys=(ik(HANGZHOU_IK),))
    assert TrustListClaims.from_payload(trust.to_payload()) == trust
    assert "ik" not in replace(trust, interchange_keys=()).to_payload()


def test_one_interchange_kid_in_two_cities_is_malformed() -> None:
    yw = replace(yiwu(), interchange_keys=(ik(HANGZHOU_IK),))
    hz = replace(hangzhou(), interchange_keys=(ik(HANGZHOU_IK),))
    with pytest.raises(Malformed):
        FederationClaims.from_payload(federation(yw, hz).to_payload())


def test_the_signer_refuses_a_lifetime_over_sixty_seconds() -> None:
    with pytest.raises(ValueError):
        _sign(lifetime_seconds=61)

