"""All Wycheproof Ed25519 vectors through keys.verify_signature."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keys import verify_signature

_VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "wycheproof"


def _cases() -> list[tuple[str, bytes, bytes, bytes, bool]]:
    path = _VECTORS / "ed25519_test.json"
    if not path.exists():
        return []
    suite = json.loads(path.read_text())
    cases = []
    for group in suite["testGroups"]:
        public_key = bytes.fromhex(group["publicKey"]["pk"])
        for test in group["tests"]:
            cases.append((
                f"tc{test['tcId']}-{test['result']}",
                public_key,
                bytes.fromhex(test["msg"]),
                bytes.fromhex(test["sig"]),
                test["result"] == "valid",
            ))
    return cases


CASES = _cases()


def test_all_151_vectors_present() -> None:
    assert len(CASES) == 151, "the Wycheproof Ed25519 file must be in tests/vectors"


@pytest.mark.parametrize(("name", "public_key", "message", "signature", "valid"), CASES,
                         ids=[c[0] for c in CASES])
def test_vector(name: str, public_key: bytes, message: bytes, signature: bytes,
                valid: bool) -> None:
    assert verify_signature(public_key, message, signature) is valid
