"""Sealing to an offline recovery key (keys/recipient.py) and symmetric secrets in the key
store (the data-kek of P13)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from keys import KeyStore, KeyStoreError
from keys.recipient import (
    RecipientError,
    SealedWriter,
    load_identity,
    load_recipient,
    open_sealed,
    recovery_keypair,
)

PLAIN = bytes(range(256)) * 10_000  # 2.5 MiB: three chunks


def _seal(public_text: str, plain: bytes = PLAIN) -> bytes:
    out = io.BytesIO()
    with SealedWriter(out, load_recipient(public_text)) as writer:
        for start in range(0, len(plain), 70_000):
            writer.write(plain[start:start + 70_000])
    return out.getvalue()


def test_a_sealed_stream_opens_with_its_private_key_only() -> None:
    private_pem, public_text = recovery_keypair()
    sealed = _seal(public_text)
    assert PLAIN[:64] not in sealed
    out = io.BytesIO()
    assert open_sealed(io.BytesIO(sealed), out, load_identity(private_pem)) == len(PLAIN)
    assert out.getvalue() == PLAIN
    other_pem, _ = recovery_keypair()
    with pytest.raises(RecipientError):
        open_sealed(io.BytesIO(sealed), io.BytesIO(), load_identity(other_pem))


def test_an_empty_stream_round_trips() -> None:
    private_pem, public_text = recovery_keypair()
    out = io.BytesIO()
    open_sealed(io.BytesIO(_seal(public_text, b"")), out, load_identity(private_pem))
    assert out.getvalue() == b""


@pytest.mark.parametrize("alter", [
    "flip a byte", "drop the last chunk", "cut the tail", "add a byte", "swap two chunks",
    "not sealed at all",
])
def test_attack_an_altered_sealed_stream_does_not_open(alter: str) -> None:
    private_pem, public_text = recovery_keypair()
    sealed = bytearray(_seal(public_text))
    header = 20 + 32
    chunk = 4 + (1 << 20) + 16
    if alter == "flip a byte":
        sealed[header + 100] ^= 0x80
    elif alter == "drop the last chunk":
        del sealed[header + 2 * chunk:]
    elif alter == "cut the tail":
        del sealed[-1:]
    elif alter == "add a byte":
        sealed += b"\x00"
    elif alter == "swap two chunks":
        first = sealed[header:header + chunk]
        sealed[header:header + chunk] = sealed[header + chunk:header + 2 * chunk]
        sealed[header + chunk:header + 2 * chunk] = first
    else:
        sealed = bytearray(b"\x1f\x8b" + bytes(100))
    with pytest.raises(RecipientError):
        open_sealed(io.BytesIO(bytes(sealed)), io.BytesIO(), load_identity(private_pem))


@pytest.mark.parametrize("text", ["", "fmc-recovery-x25519:AAAA", "not base64 !",
                                  "fmc-recovery-x25519:" + "A" * 60])
def test_a_bad_recipient_is_refused(text: str) -> None:
    with pytest.raises(RecipientError):
        load_recipient(text)


def test_the_recipient_is_read_from_its_file(tmp_path: Path) -> None:
    _, public_text = recovery_keypair()
    (tmp_path / "recovery.pub").write_text(public_text + "\n")
    assert load_recipient(str(tmp_path / "recovery.pub")).public_bytes_raw() == (
        load_recipient(public_text).public_bytes_raw())


def test_a_secret_in_the_key_store_needs_the_passphrase_and_is_never_overwritten(
    tmp_path: Path
) -> None:
    store = KeyStore(tmp_path, passphrase=b"right")
    store.save_secret("data-kek", b"k" * 32)
    assert store.load_secret("data-kek") == b"k" * 32
    assert b"k" * 32 not in (tmp_path / "data-kek.key").read_bytes()
    assert (tmp_path / "data-kek.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(KeyStoreError):
        KeyStore(tmp_path, passphrase=b"wrong").load_secret("data-kek")
    with pytest.raises(KeyStoreError):
        store.save_secret("data-kek", b"x" * 32)
    with pytest.raises(KeyStoreError):
        store.load_secret("absent")
    assert store.kids() == []  # a secret is no signing key
