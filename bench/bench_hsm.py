"""Signing through a PKCS#11 token (SoftHSM2) beside in-process libsodium, same messages;
and (P13) wrapping and unwrapping data keys with the KEK in the token beside the file KEK.

The HSM keeps the issuer key and the data KEK out of the process; what it costs is the
PKCS#11 round trip per signature or unwrap. An unwrapped data key is kept by the process
(:class:`cardsvc.services.sealing.DataKeys`), so sealing a field costs the same either
way; the token is asked once per data key at the first use and for new rows only.
Run alone: ``python -m bench bench_hsm``."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench._table import BenchRow, interleaved_us
from keys import Ed25519Signer, KeyStore
from keys.kek import FileKek
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
        uri = f"pkcs11:token=fmc-bench;module-path={_MODULE}"
        with HsmKeyStore.open(uri, pin=_PIN) as store:
            hsm = _rate(store.generate("bench").sign, messages, seconds)
            kek_rows = _kek_rows(store, Path(directory), quick)
    sodium = _rate(Ed25519Signer.generate().sign, messages, seconds)
    return [BenchRow("signatures/s through SoftHSM2 (PKCS#11, one session)", hsm, "sig/s",
                     "in-process libsodium signatures/s", sodium), *kek_rows]


def _kek_rows(token: HsmKeyStore, directory: Path, quick: bool) -> list[BenchRow]:
    """Data keys wrapped and unwrapped by the token's AES KEK beside the file KEK (both
    RFC 3394), and opening a database's data keys cold: token KEK lookup + two unwraps
    beside the passphrase store's scrypt + two unwraps (what a process does once)."""
    hsm_kek = token.generate_kek("data-kek-1")
    files = KeyStore(directory / "keys", passphrase=b"bench passphrase")
    files.save_secret("data-kek", os.urandom(32))
    file_kek = FileKek("data-kek", files.load_secret("data-kek"))
    dek = os.urandom(32)
    hsm_wrapped, file_wrapped = hsm_kek.wrap(dek), file_kek.wrap(dek)
    number, rounds = (50, 3) if quick else (300, 7)
    unwrap = interleaved_us({"hsm": lambda: hsm_kek.unwrap(hsm_wrapped),
                             "file": lambda: file_kek.unwrap(file_wrapped)},
                            rounds=rounds, number=number)
    wrap = interleaved_us({"hsm": lambda: hsm_kek.wrap(dek), "file": lambda: file_kek.wrap(dek)},
                          rounds=rounds, number=number)

    def open_from_token() -> None:
        kek = token.load_kek("data-kek-1")
        for _ in range(2):
            kek.unwrap(hsm_wrapped)

    def open_from_file() -> None:
        kek = FileKek("data-kek", files.load_secret("data-kek"))
        for _ in range(2):
            kek.unwrap(file_wrapped)

    cold = interleaved_us({"hsm": open_from_token, "file": open_from_file},
                          rounds=rounds, number=3 if quick else 10)
    return [
        BenchRow("unwrap a data key with the KEK in SoftHSM2 (CKM_AES_KEY_WRAP)",
                 unwrap["hsm"], "us", "unwrap with the file KEK in process (RFC 3394), us",
                 unwrap["file"]),
        BenchRow("wrap a data key with the KEK in SoftHSM2", wrap["hsm"], "us",
                 "wrap with the file KEK in process, us", wrap["file"]),
        BenchRow("open the data keys cold: token KEK lookup + 2 unwraps", cold["hsm"], "us",
                 "file KEK: scrypt (key passphrase) + 2 unwraps, us", cold["file"]),
    ]
