"""Builds schemas/vectors/fmc-federation-vectors.json: fixed keys and clock, deterministic.

Run `python tests/federation/federation_vector_builder.py` from the repo root to regenerate;
tests/federation/test_published_vectors.py checks the committed file equals a fresh build
and that every case gives its published code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT_DIR = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT_DIR), str(ROOT_DIR / "tests"), str(ROOT_DIR / "tests" / "federation")]

from federation_kit import (  # noqa: E402
    HANGZHOU_KEY,
    HANGZHOU_ONLY_KEY,
    HANGZHOU_ROOT,
    NATIONAL_FINGERPRINT,
    NATIONAL_ROOT,
    federation,
    federation_jwt,
    hangzhou,
    yiwu,
)

from schemas.federation import IssuerState  # noqa: E402
from support import ISSUER_KEY, NOW, ROOT  # noqa: E402

VECTORS_PATH = ROOT_DIR / "schemas" / "vectors" / "fmc-federation-vectors.json"


def build() -> dict[str, Any]:
    first = federation(version=1)
    second = federation(yiwu(), hangzhou(state=IssuerState.SUSPENDED), version=2)
    return {
        "description": "FMC federation list vectors: fixed Ed25519 seeds, fixed clock. Seeds "
                       "are public test keys; never use them for anything else.",
        "now": NOW,
        "keys": {
            "national_root_seed_hex": NATIONAL_ROOT.seed.hex(),
            "national_root_fingerprint": NATIONAL_FINGERPRINT,
            "yiwu_root_seed_hex": ROOT.seed.hex(),
            "yiwu_k1_seed_hex": ISSUER_KEY.seed.hex(),
            "hangzhou_root_seed_hex": HANGZHOU_ROOT.seed.hex(),
            "hangzhou_h1_seed_hex": HANGZHOU_KEY.seed.hex(),
            "hangzhou_h7_seed_hex": HANGZHOU_ONLY_KEY.seed.hex(),
        },
        "federation_lists": [
            {"name": "v1, both cities active", "jwt": federation_jwt(first),
             "payload": first.to_payload()},
            {"name": "v2, Hangzhou suspended", "jwt": federation_jwt(second),
             "payload": second.to_payload()},
        ],
        "sync": [
            {"held": None, "offered": 0, "code": "OK"},
            {"held": 0, "offered": 1, "code": "OK"},
            {"held": 1, "offered": 0, "code": "TRUST_LIST_ROLLBACK"},
        ],
        "resolve": [
            {"list": 0, "iss": "CN-YW", "kid": "k1", "code": "OK"},
            {"list": 0, "iss": "CN-HZ", "kid": "h1", "code": "OK"},
            {"list": 0, "iss": "CN-YW", "kid": "h7", "code": "UNKNOWN_KEY"},
            {"list": 0, "iss": "CN-NB", "kid": "k1", "code": "ISSUER_UNKNOWN"},
            {"list": 1, "iss": "CN-HZ", "kid": "h1", "code": "ISSUER_SUSPENDED"},
        ],
        "resolve_by_kid": [
            {"list": 0, "kid": "k1", "issuer": "CN-YW", "code": "OK"},
            {"list": 0, "kid": "h1", "issuer": "CN-HZ", "code": "OK"},
            {"list": 0, "kid": "x1", "issuer": None, "code": "UNKNOWN_KEY"},
            {"list": 1, "kid": "h1", "issuer": None, "code": "ISSUER_SUSPENDED"},
            {"list": 1, "kid": "k1", "issuer": "CN-YW", "code": "OK"},
        ],
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    VECTORS_PATH.write_text(render())
    print(f"wrote {VECTORS_PATH}")
