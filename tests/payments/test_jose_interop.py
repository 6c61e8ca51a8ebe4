"""P14 interop proof: every object the authority signs verifies in an independent, strict
JOSE library (joserfc, pinned in dev) with only RFC 9864's "Ed25519" allowed.

Strict means joserfc's registry with ``strict_check_header``: a header member it does not
know is refused. The one documented exception is the credential's ``zip: DEF`` (a QR
needs the compression; SMART Health Cards made the same trade), registered for credentials
only. Status list encodings are read with the IETF draft's own vectors in
tests/schemas/test_status_list.py.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from joserfc.registry import HeaderParameter
from payments_kit import PayWorld

from keys import Ed25519Signer, public_jwk, sign_trust_list
from keys.jws import sign_federation_list
from schemas import b64url_decode
from schemas._jose import inflate_capped
from schemas.federation import FederationClaims
from support import ROOT, ROOT_FINGERPRINT, World
from verifier import verify_trust_list

STRICT = jws.JWSRegistry(algorithms=["Ed25519"], strict_check_header=True)
# The credential's documented exception: zip DEF (raw DEFLATE payload, inflated by us).
STRICT_WITH_ZIP = jws.JWSRegistry(
    header_registry={"zip": HeaderParameter("Compression", "str")},
    algorithms=["Ed25519"], strict_check_header=True)


def _okp(jwk: dict[str, Any]) -> OKPKey:
    return OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": jwk["x"]})


def _verify(token: str, jwk: dict[str, Any], *, registry: jws.JWSRegistry = STRICT) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a SecurityWarning (e.g. for EdDSA) fails the test
        return jws.deserialize_compact(token, _okp(jwk), registry=registry).payload


def _issuer_jwks(world: PayWorld) -> dict[str, dict[str, Any]]:
    return {key.kid: key.to_jwk() for key in world.trust_list().keys}


def test_every_published_list_verifies_strictly(world: PayWorld) -> None:
    trust_jwt = world.http.get("/v1/trust-list").text
    root_jwk = json.loads(b64url_decode(trust_jwt.split(".")[0]))["jwk"]
    trust = json.loads(_verify(trust_jwt, root_jwk))
    assert trust["fmt"] == 2 and trust["alg_cutover"] <= world.clock.epoch
    keys = _issuer_jwks(world)
    status_jwt = world.http.get("/v1/status-lists/1").text
    status_kid = json.loads(b64url_decode(status_jwt.split(".")[0]))["kid"]
    assert "status_list" in json.loads(_verify(status_jwt, keys[status_kid]))
    timestamp_jwt = world.http.get("/v1/timestamp").text
    ts_header = json.loads(b64url_decode(timestamp_jwt.split(".")[0]))
    ts_jwk = next(k for k in trust["ts_keys"] if k["kid"] == ts_header["kid"])
    assert json.loads(_verify(timestamp_jwt, ts_jwk))["tl"]


def test_credentials_verify_strictly_except_for_the_documented_zip(world: PayWorld) -> None:
    card = world.card(topup=5_000, entitlements=("payment", "healthcare"))
    keys = _issuer_jwks(world)
    for purpose, token in card.bundle["credentials"].items():
        kid = json.loads(b64url_decode(token.split(".")[0]))["kid"]
        with pytest.raises(JoseError):  # zip is not a JWS header member: strict refuses it
            _verify(token, keys[kid])
        claims = json.loads(inflate_capped(_verify(token, keys[kid], registry=STRICT_WITH_ZIP),
                                           4096))
        assert claims["iss"] == "CN-YW", purpose


def test_receipts_verify_strictly(world: PayWorld) -> None:
    card = world.card(topup=5_000)
    terminal = world.terminal()
    charged = world.charge(terminal, world.pay_code(card), 1250)
    assert charged.status_code == 201, charged.text
    receipt = charged.json()["receipt"]
    kid = json.loads(b64url_decode(receipt.split(".")[0]))["kid"]
    assert json.loads(_verify(receipt, _issuer_jwks(world)[kid]))["amt"] == 1250


def test_federation_lists_verify_strictly() -> None:
    national = Ed25519Signer(bytes(range(40, 72)), kid="national")
    vectors = json.loads((Path(__file__).parents[2] / "schemas" / "vectors"
                          / "fmc-federation-vectors.json").read_text())
    first = vectors["federation_lists"][0]
    claims = FederationClaims.from_payload(json.loads(b64url_decode(first["jwt"].split(".")[1])))
    token = sign_federation_list(claims, national)
    assert json.loads(_verify(token, public_jwk(national.public_key)))["iss"] == claims.issuer


def test_the_deprecated_name_is_what_strict_libraries_refuse() -> None:
    """Why P14 exists: the same list signed "EdDSA" fails a strict RFC 9864 reader."""
    claims = verify_trust_list(World().trust_list_jwt(), root_fingerprint=ROOT_FINGERPRINT)
    assert _verify(sign_trust_list(claims, ROOT), public_jwk(ROOT.public_key))
    with pytest.raises(JoseError):
        _verify(sign_trust_list(claims, ROOT, alg="EdDSA"), public_jwk(ROOT.public_key))
