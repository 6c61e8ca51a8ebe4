"""RFC 8037 Appendix A through the project's JWS layer and signer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keys import Ed25519Signer, jwk_thumbprint, sign_compact, verify_signature
from schemas import b64url_decode
from schemas._jose import check_header, parse_json_object, split_compact


@pytest.fixture(scope="module")
def rfc8037(public_vectors: Path) -> dict[str, object]:
    return json.loads((public_vectors / "rfc8037-ed25519-jws.json").read_text())  # type: ignore[no-any-return]


def test_a4_verifies_through_our_jws_layer(rfc8037: dict) -> None:
    signing_input, header, payload, signature = split_compact(rfc8037["jws_compact"])
    unverified_header = parse_json_object(header)
    check_header(unverified_header, expected_typ=None, allowed_members=frozenset({"alg"}),
                 require_kid=False)
    public_key = b64url_decode(rfc8037["jwk_public"]["x"])
    assert verify_signature(public_key, signing_input, signature)
    assert payload.decode() == rfc8037["payload_utf8"]


def test_a4_signature_reproduced_by_our_signer(rfc8037: dict) -> None:
    signer = Ed25519Signer(b64url_decode(rfc8037["jwk_private"]["d"]), kid="rfc8037")
    assert signer.public_key == b64url_decode(rfc8037["jwk_private"]["x"])
    token = sign_compact(rfc8037["protected_header"], rfc8037["payload_utf8"].encode(), signer)
    # Our compact JSON of {"alg":"EdDSA"} is byte-identical to the RFC's header.
    assert token == rfc8037["jws_compact"]


def test_a3_thumbprint(rfc8037: dict) -> None:
    assert jwk_thumbprint(rfc8037["jwk_public"]) == rfc8037["jwk_thumbprint_sha256"]


def test_a4_tampered_payload_fails(rfc8037: dict) -> None:
    head, _, sig = rfc8037["jws_compact"].split(".")
    tampered = f"{head}.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmG.{sig}"
    signing_input, _, _, signature = split_compact(tampered)
    public_key = b64url_decode(rfc8037["jwk_public"]["x"])
    assert not verify_signature(public_key, signing_input, signature)
