"""P7: our presentation against the credentials people would otherwise pick, same data.

- SD-JWT VC with key binding, made and verified by the `sd-jwt` reference implementation
  (issuer EdDSA; its verifier only takes ES256 key-binding JWTs, so the holder key is P-256).
- A COSE_Sign1 / CWT credential in the EU Digital COVID Certificate style (cbor2 +
  pycose, zlib, base45, "HC1:" prefix), EdDSA, without holder binding (DCC has none).

For each: verify time per presentation and the QR version at error correction M.
The table goes to bench/peers.json; `python -m bench` renders docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path
from typing import Any

import base45
import cbor2
import qrcode
import qrcode.constants
from jwcrypto.jwk import JWK
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message
from sd_jwt.common import SDObj
from sd_jwt.holder import SDJWTHolder
from sd_jwt.issuer import SDJWTIssuer
from sd_jwt.verifier import SDJWTVerifier

from bench._table import BenchRow, interleaved_us
from schemas import Purpose
from schemas.qr import presentation_qr
from verifier import POLICIES, MemoryReplayCache, verify_presentation

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import ISSUER, NOW, World, credential, present

PEERS_JSON = Path(__file__).resolve().parent / "peers.json"


def _qr_version(text: str) -> int | str:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(text)
    try:
        code.make(fit=True)
    except Exception:  # over version 40: does not fit in any QR code
        return "none (>40)"
    return int(code.version)


def _identity_claims() -> dict[str, Any]:
    claims = credential(Purpose.ID).to_payload()
    return {
        "iss": ISSUER, "iat": claims["iat"], "exp": claims["exp"],
        "vct": "https://fmc.example/id", "card_number": claims["cn"],
        "foreigner_code": claims["fc"], "family_name": claims["sn"],
        "given_name": claims["gn"], "birthdate": claims["bd"], "nationality": claims["nat"],
        "sex": claims["sex"], "portrait_digest": claims["pd"],
        "status": {"status_list": {"idx": claims["st"][1],
                                   "uri": "https://fmc.example/v1/status-lists/1"}},
    }


def sd_jwt_case() -> tuple[str, Any]:
    issuer_key = JWK.generate(kty="OKP", crv="Ed25519")
    holder_key = JWK.generate(kty="EC", crv="P-256")
    plain = _identity_claims()
    selective = {
        (SDObj(k) if k not in ("iss", "iat", "exp", "vct", "status") else k): v
        for k, v in plain.items()
    }
    issuance = SDJWTIssuer(selective, issuer_key, holder_key, sign_alg="EdDSA").sd_jwt_issuance
    holder = SDJWTHolder(issuance)
    holder.create_presentation(
        {k: True for k in plain}, nonce="n-1", aud="https://hospital.example",
        holder_key=holder_key, sign_alg="ES256",
    )
    text = holder.sd_jwt_presentation
    public = JWK.from_json(issuer_key.export_public())

    def verify() -> Any:
        checked = SDJWTVerifier(text, lambda _iss, _header: public,
                                expected_aud="https://hospital.example", expected_nonce="n-1")
        return checked.get_verified_payload()

    assert verify()["family_name"] == plain["family_name"]
    return text, verify


def cose_case() -> tuple[str, Any]:
    key = OKPKey.generate_key(crv=Ed25519)
    plain = _identity_claims()
    cwt = {1: plain["iss"], 4: plain["exp"], 6: plain["iat"],
           -260: {1: {k: v for k, v in plain.items() if k not in ("iss", "iat", "exp")}}}
    message = Sign1Message(phdr={Algorithm: EdDSA, KID: b"k1"}, payload=cbor2.dumps(cwt))
    message.key = key
    text = "HC1:" + base45.b45encode(zlib.compress(message.encode(), 9)).decode()

    def verify() -> Any:
        raw = zlib.decompress(base45.b45decode(text[4:]))
        decoded = Sign1Message.decode(raw)
        decoded.key = key
        if not decoded.verify_signature():
            raise ValueError("bad signature")
        return cbor2.loads(decoded.payload)

    assert verify()[-260][1]["family_name"] == plain["family_name"]
    return text, verify


def run(quick: bool = False) -> list[BenchRow]:
    state = World().state()
    ours_text = present(Purpose.ID)
    caches = [MemoryReplayCache()]

    def ours() -> Any:
        # A fresh cache each call would cost more than the check; the same proof is
        # checked against an empty cache so every call runs all ten steps.
        caches[0] = MemoryReplayCache()
        return verify_presentation(ours_text, state=state, policy=POLICIES["counter"],
                                   now=NOW, replay_cache=caches[0])

    assert ours().ok
    sd_text, sd_verify = sd_jwt_case()
    cose_text, cose_verify = cose_case()
    timings = interleaved_us(
        {"ours": ours, "sd": sd_verify, "cose": cose_verify},
        rounds=3 if quick else 7, number=50 if quick else 400,
    )
    versions = {
        "ours": presentation_qr(ours_text).version,
        "sd": _qr_version(sd_text),
        "cose": _qr_version(cose_text),
    }
    lengths = {"ours": len(ours_text), "sd": len(sd_text), "cose": len(cose_text)}
    rows = [
        BenchRow("peer: SD-JWT VC + KB (sd-jwt ref. impl.) verify, id data", timings["sd"],
                 "us", "FMC1 id presentation verify (ours)", timings["ours"]),
        BenchRow("peer: COSE/CWT DCC-style (pycose) verify, id data", timings["cose"], "us",
                 "FMC1 id presentation verify (ours)", timings["ours"]),
    ]
    _write_docs(timings, versions, lengths)
    return rows


def _write_docs(timings: dict[str, float], versions: dict[str, Any],
                lengths: dict[str, int]) -> None:
    """Keep the peer table for bench/__main__.py, which renders docs/BENCHMARKS.md."""
    PEERS_JSON.write_text(json.dumps(
        {"timings_us": timings, "qr_versions": versions, "text_lengths": lengths}, indent=2
    ) + "\n")
