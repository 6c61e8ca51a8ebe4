"""Signing the project's objects as compact JWS: credentials, status lists, trust lists.

Every signer takes ``alg``: RFC 9864's ``"Ed25519"`` by default, or the deprecated
``"EdDSA"`` that an issuer keeps using until its announced cut-over (docs/FORMATS.md).
Both name the same Ed25519 signature; only the header differs.
"""

from __future__ import annotations

from typing import Any

from keys.ed25519 import Signer, public_jwk
from schemas._jose import (
    ALG_ED25519,
    ALG_EDDSA,
    ALLOWED_ALGORITHMS,
    b64url_encode,
    deflate,
    dump_json,
)
from schemas.credential import Credential
from schemas.federation import FEDERATION_TYP, FederationClaims
from schemas.portrait_bundle import PORTRAIT_BUNDLE_TYP, ManifestClaims
from schemas.presentation import encode_presentation, holder_proof_message
from schemas.status_list import STATUS_LIST_TYP, StatusListClaims
from schemas.timestamp import TIMESTAMP_TYP, TimestampClaims
from schemas.trust_list import TRUST_LIST_TYP, TrustListClaims

__all__ = [
    "ALG_ED25519",
    "ALG_EDDSA",
    "sign_compact",
    "sign_credential",
    "sign_federation_list",
    "sign_portrait_manifest",
    "sign_presentation",
    "sign_status_list",
    "sign_timestamp",
    "sign_trust_list",
]


def sign_compact(header: dict[str, Any], payload: bytes, signer: Signer) -> str:
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise ValueError("only Ed25519 (named Ed25519, or EdDSA before a cut-over) is signed")
    signing_input = b64url_encode(dump_json(header)) + "." + b64url_encode(payload)
    return signing_input + "." + b64url_encode(signer.sign(signing_input.encode("ascii")))


def sign_credential(credential: Credential, signer: Signer, *, alg: str = ALG_ED25519) -> str:
    # No typ: space is scarce in a QR and zip DEF already sets credentials apart from
    # every other object this project signs (status and trust lists are never zipped).
    header = {"alg": alg, "kid": signer.kid, "zip": "DEF"}
    return sign_compact(header, deflate(dump_json(credential.to_payload())), signer)


def sign_status_list(claims: StatusListClaims, signer: Signer, *, alg: str = ALG_ED25519) -> str:
    header = {"alg": alg, "kid": signer.kid, "typ": STATUS_LIST_TYP}
    return sign_compact(header, dump_json(claims.to_payload()), signer)


def sign_portrait_manifest(
    claims: ManifestClaims, signer: Signer, *, alg: str = ALG_ED25519
) -> str:
    """The portrait bundle's manifest (P15), signed by the issuer key like a status list."""
    header = {"alg": alg, "kid": signer.kid, "typ": PORTRAIT_BUNDLE_TYP}
    return sign_compact(header, dump_json(claims.to_payload()), signer)


def sign_trust_list(claims: TrustListClaims, root: Signer, *, alg: str = ALG_ED25519) -> str:
    header = {"alg": alg, "typ": TRUST_LIST_TYP, "jwk": public_jwk(root.public_key)}
    return sign_compact(header, dump_json(claims.to_payload()), root)


def sign_timestamp(claims: TimestampClaims, signer: Signer, *, alg: str = ALG_ED25519) -> str:
    """Signed by a timestamp key the trust list delegates to (``ts_keys``), never the root."""
    header = {"alg": alg, "kid": signer.kid, "typ": TIMESTAMP_TYP}
    return sign_compact(header, dump_json(claims.to_payload()), signer)


def sign_presentation(
    credential_jws: str, device: Signer, *, proof_time: int, purpose: str,
    challenge_digest: bytes | None = None,
) -> str:
    """The wallet's side: a fresh holder proof over the credential, packed as ``FMC1:`` text
    (``FMC2:`` when bound to a sale challenge's digest)."""
    proof = device.sign(holder_proof_message(credential_jws, proof_time, purpose,
                                             challenge_digest))
    return encode_presentation(credential_jws, proof_time, proof, challenge_digest)


def sign_federation_list(
    claims: FederationClaims, national_root: Signer, *, alg: str = ALG_ED25519
) -> str:
    """The national root signs the list of city issuers (docs/FEDERATION.md)."""
    header = {"alg": alg, "typ": FEDERATION_TYP, "jwk": public_jwk(national_root.public_key)}
    return sign_compact(header, dump_json(claims.to_payload()), national_root)
