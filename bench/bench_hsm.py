"""Signing through a PKCS#11 token (SoftHSM2) beside in-process libsodium, same messages.

The HSM keeps the issuer key out of the process; what it costs is the PKCS#11 round trip
per signature. Run alone: ``python -m bench bench_hsm``."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench._table import BenchRow
from keys import Ed25519Signer
from keys.pkcs11 import HsmKeyStore

_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
_PIN = "135790"


def _rate(sign: object, messages: list[bytes], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for message in messages:
            sign(message)  # type: ignore[operator]
        done += len(messages)
    return done / (time.perf_counter() - start)


def run(quick: bool) -> list[BenchRow]:
    seconds = 0.5 if quick else 3.0
    messages = [os.urandom(180) for _ in range(64)]  # about a credential's signing input
    with tempfile.TemporaryDirectory() as directory:
        tokens = Path(directory) / "tokens"
        tokens.mkdir()
        conf = Path(directory) / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "fmc-bench",
                        "--so-pin", "97531", "--pin", _PIN], check=True, capture_output=True)
        with HsmKeyStore.open(f"pkcs11:token=fmc-bench;module-path={_MODULE}", pin=_PIN) as store:
            hsm = _rate(store.generate("bench").sign, messages, seconds)
    sodium = _rate(Ed25519Signer.generate().sign, messages, seconds)
    return [BenchRow("signatures/s through SoftHSM2 (PKCS#11, one session)", hsm, "sig/s",
                     "in-process libsodium signatures/s", sodium)]
