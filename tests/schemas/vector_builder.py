"""Builds schemas/vectors/fmc1-vectors.json: fixed keys, fixed clock, deterministic output.

Run `python tests/schemas/vector_builder.py` from the repo root to regenerate; the test
suite checks that the committed file equals a fresh build and that every vector verifies
with its expected code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT_DIR = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT_DIR), str(ROOT_DIR / "tests")]

from keys import sign_credential, sign_presentation  # noqa: E402
from schemas import STATUS_REVOKED, Purpose, StatusRef  # noqa: E402
from support import (  # noqa: E402
    DAY,
    DEVICE,
    ISSUER_KEY,
    NEXT_KEY,
    NOW,
    OTHER_DEVICE,
    ROOT,
    ROOT_FINGERPRINT,
    TIMESTAMP_KEY,
    TIMESTAMP_KEYS,
    World,
    credential,
    one_use_credential,
    timestamp_jwt,
)

VECTORS_PATH = ROOT_DIR / "schemas" / "vectors" / "fmc1-vectors.json"
SERVICE_FOR = {Purpose.PAY: "payment", Purpose.ID: "counter", Purpose.SVC: "hospital"}


CUTOVER = NOW - 2 * DAY  # P14: the issuer signs RFC 9864 "Ed25519" from then on


def build() -> dict[str, Any]:
    world = World(alg_cutover=CUTOVER)
    world.statuses.set(7, STATUS_REVOKED)
    presentations = []
    for purpose in Purpose:
        claims = credential(purpose)
        token = sign_credential(claims, ISSUER_KEY)
        text = sign_presentation(token, DEVICE, proof_time=NOW, purpose=purpose.value)
        presentations.append({
            "name": f"valid {purpose.value}",
            "claims": claims.to_payload(),
            "credential_jws": token,
            "presentation": text,
            "checks": [
                {"service": SERVICE_FOR[purpose], "now": NOW, "code": "OK"},
                {"service": SERVICE_FOR[purpose], "now": NOW + 61, "code": "HOLDER_PROOF_STALE"},
                {"service": "school", "now": NOW,
                 "code": "WRONG_PURPOSE" if purpose is not Purpose.SVC else
                 "ENTITLEMENT_MISSING"},
            ],
        })
    revoked = credential(Purpose.ID, status=StatusRef("1", 7))
    revoked_token = sign_credential(revoked, ISSUER_KEY)
    next_key_token = sign_credential(credential(Purpose.ID), NEXT_KEY)
    # What a leaked key would mint: dated inside its window, exp a century later.
    century = credential(Purpose.ID, expires_at=NOW - DAY + 36_525 * DAY)
    century_token = sign_credential(century, ISSUER_KEY)
    # P14: the deprecated name before the cut-over is honoured, after it refused.
    legacy = credential(Purpose.ID, issued_at=CUTOVER - DAY)
    legacy_token = sign_credential(legacy, ISSUER_KEY, alg="EdDSA")
    downgraded = credential(Purpose.ID)
    downgraded_token = sign_credential(downgraded, ISSUER_KEY, alg="EdDSA")
    # P13.3: a one-use pay credential (handle, no card number, one day), and one living 2.
    one_use = one_use_credential()
    one_use_token = sign_credential(one_use, ISSUER_KEY)
    long_one_use = one_use_credential(expires_at=one_use.issued_at + 2 * DAY)
    long_one_use_token = sign_credential(long_one_use, ISSUER_KEY)
    presentations += [
        {
            "name": "revoked id",
            "claims": revoked.to_payload(),
            "credential_jws": revoked_token,
            "presentation": sign_presentation(revoked_token, DEVICE, proof_time=NOW,
                                              purpose="id"),
            "checks": [{"service": "counter", "now": NOW, "code": "REVOKED"}],
        },
        {
            "name": "proof by another device",
            "claims": credential(Purpose.ID).to_payload(),
            "credential_jws": presentations[1]["credential_jws"],
            "presentation": sign_presentation(presentations[1]["credential_jws"],
                                              OTHER_DEVICE, proof_time=NOW, purpose="id"),
            "checks": [{"service": "counter", "now": NOW, "code": "HOLDER_PROOF_INVALID"}],
        },
        {
            "name": "signed by the published next key",
            "claims": credential(Purpose.ID).to_payload(),
            "credential_jws": next_key_token,
            "presentation": sign_presentation(next_key_token, DEVICE, proof_time=NOW,
                                              purpose="id"),
            "checks": [{"service": "counter", "now": NOW, "code": "OK"}],
        },
        {
            "name": "exp a century after iat",
            "claims": century.to_payload(),
            "credential_jws": century_token,
            "presentation": sign_presentation(century_token, DEVICE, proof_time=NOW,
                                              purpose="id"),
            "checks": [{"service": "counter", "now": NOW, "code": "LIFETIME_TOO_LONG"}],
        },
        {
            "name": "alg EdDSA issued before the cut-over",
            "claims": legacy.to_payload(),
            "credential_jws": legacy_token,
            "presentation": sign_presentation(legacy_token, DEVICE, proof_time=NOW,
                                              purpose="id"),
            "checks": [{"service": "counter", "now": NOW, "code": "OK"}],
        },
        {
            "name": "alg EdDSA issued after the cut-over (downgrade)",
            "claims": downgraded.to_payload(),
            "credential_jws": downgraded_token,
            "presentation": sign_presentation(downgraded_token, DEVICE, proof_time=NOW,
                                              purpose="id"),
            "checks": [{"service": "counter", "now": NOW, "code": "ALGORITHM_DOWNGRADE"}],
        },
        {
            "name": "valid one-use pay (handle instead of card number)",
            "claims": one_use.to_payload(),
            "credential_jws": one_use_token,
            "presentation": sign_presentation(one_use_token, DEVICE, proof_time=NOW,
                                              purpose="pay"),
            "checks": [{"service": "payment", "now": NOW, "code": "OK"},
                       {"service": "counter", "now": NOW, "code": "WRONG_PURPOSE"}],
        },
        {
            "name": "one-use pay living 2 days (valid on one day only)",
            "claims": long_one_use.to_payload(),
            "credential_jws": long_one_use_token,
            "presentation": sign_presentation(long_one_use_token, DEVICE, proof_time=NOW,
                                              purpose="pay"),
            "checks": [{"service": "payment", "now": NOW, "code": "LIFETIME_TOO_LONG"}],
        },
    ]
    return {
        "description": "FMC1 test vectors: fixed Ed25519 seeds, fixed clock. Seeds are "
                       "public test keys; never use them for anything else. The trust "
                       "list announces alg_cutover: objects are signed alg Ed25519 "
                       "(RFC 9864); EdDSA is honoured only for credentials issued before.",
        "now": NOW,
        "keys": {
            "root_seed_hex": ROOT.seed.hex(),
            "root_fingerprint": ROOT_FINGERPRINT,
            "issuer_k1_seed_hex": ISSUER_KEY.seed.hex(),
            "issuer_k2_seed_hex": NEXT_KEY.seed.hex(),
            "device_seed_hex": DEVICE.seed.hex(),
            "device_public_hex": DEVICE.public_key.hex(),
        },
        "trust_list_jwt": world.trust_list_jwt(),
        "status_list_jwts": {"1": world.status_list_jwt()},
        "presentations": presentations,
        "timestamp": _timestamp_vector(world),
    }


def _timestamp_vector(world: World) -> dict[str, Any]:
    """P8.5: a trust list delegating ``ts1`` and a timestamp naming it and status list 1."""
    trust_list = world.trust_list_jwt(timestamp_keys=TIMESTAMP_KEYS)
    status_list = world.status_list_jwt()
    return {
        "timestamp_ts1_seed_hex": TIMESTAMP_KEY.seed.hex(),
        "trust_list_jwt": trust_list,
        "status_list_jwts": {"1": status_list},
        "timestamp_jwt": timestamp_jwt(trust_list, status_lists={"1": status_list}),
        "checks": [
            {"now": NOW, "code": "OK"},
            {"now": NOW - 60 + 12 * 3600, "code": "TIMESTAMP_STALE"},
        ],
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    VECTORS_PATH.write_text(render())
    print(f"wrote {VECTORS_PATH}")

