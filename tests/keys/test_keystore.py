"""Encrypted key store: encrypted at rest, 0600, wrong passphrase refused, nothing leaks."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from keys import Ed25519Signer, KeyStore, KeyStoreError, public_jwk
from schemas import b64url_encode


def test_roundtrip_encrypted_and_private(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys", passphrase=b"correct horse battery")
    signer = Ed25519Signer(bytes(range(32)), kid="k1")
    path = store.save(signer)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in text
    assert signer.seed not in text and b64url_encode(signer.seed).encode() not in text
    loaded = store.load("k1")
    assert loaded.public_key == signer.public_key
    assert store.kids() == ["k1"]


def test_wrong_passphrase_refused(tmp_path: Path) -> None:
    KeyStore(tmp_path, passphrase=b"right").save(Ed25519Signer.generate(kid="k1"))
    with pytest.raises(KeyStoreError):
        KeyStore(tmp_path, passphrase=b"wrong").load("k1")


def test_empty_passphrase_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError):
        KeyStore(tmp_path, passphrase=b"")


def test_path_traversal_kid_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, passphrase=b"p")
    with pytest.raises(KeyStoreError):
        store.load("../etc/passwd")


def test_repr_hides_secrets(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, passphrase=b"very secret words")
    signer = Ed25519Signer(bytes(range(32)), kid="k1")
    assert "very secret" not in repr(store)
    assert signer.seed.hex() not in repr(signer) and "seed" not in repr(signer)


def test_destroy_leaves_only_the_public_jwk(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys", passphrase=b"correct horse battery")
    signer = Ed25519Signer(bytes(range(32)), kid="k1")
    store.save(signer)
    assert store.destroy("k1") is True
    assert list((tmp_path / "keys").iterdir()) == [store.public_path("k1")]
    assert json.loads(store.public_path("k1").read_text()) == public_jwk(signer.public_key,
                                                                        kid="k1")
    assert store.kids() == []
    with pytest.raises(KeyStoreError):
        store.load("k1")
    assert store.destroy("k1") is False  # again after a crash: nothing left to do
