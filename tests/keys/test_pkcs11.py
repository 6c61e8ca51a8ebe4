"""Keys in a PKCS#11 token (SoftHSM2 from Debian; the tests make their own tokens):
generated inside, never extractable, signatures that verify, destroyed on retirement."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass

from keys import verify_signature
from keys.keystore import KeyStoreError
from keys.pkcs11 import HsmKeyStore, Pkcs11Uri

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "246810"
ISSUER_URI = f"pkcs11:token=fmc-issuer;module-path={MODULE}"


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # SoftHSM reads its configuration when the library is first initialised in this
    # process: the token directory is set once and both tokens are made before that.
    assert Path(MODULE).exists(), "SoftHSM2 is needed (make installs Debian's softhsm2)"
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    for label in ("fmc-issuer", "fmc-root"):
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                        "--so-pin", "13579", "--pin", PIN], check=True, capture_output=True)
    yield


@pytest.fixture
def store(tokens: None) -> Iterator[HsmKeyStore]:
    with HsmKeyStore.open(ISSUER_URI, pin=PIN) as opened:
        for kid in opened.kids():
            opened.destroy(kid)
        yield opened


def test_a_key_made_in_the_token_signs_what_libsodium_verifies(store: HsmKeyStore) -> None:
    signer = store.generate("k2")
    signature = signer.sign(b"a trust list")
    assert len(signer.public_key) == 32 and len(signature) == 64
    assert verify_signature(signer.public_key, b"a trust list", signature)
    assert not verify_signature(signer.public_key, b"another list", signature)
    assert store.load("k2").public_key == signer.public_key and store.kids() == ["k2"]


def test_the_private_key_is_sensitive_and_never_extractable(store: HsmKeyStore) -> None:
    store.generate("k3")
    lib = pkcs11.lib(MODULE)
    # The store is logged in, and a PKCS#11 login holds for every session of the process.
    with lib.get_token(token_label="fmc-issuer").open() as session:
        private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="k3")
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            private[Attribute.VALUE]  # the token refuses to reveal it


def test_destroy_removes_the_private_half(store: HsmKeyStore) -> None:
    public = store.generate("k4").public_key
    store.destroy("k4")
    assert store.kids() == []
    with pytest.raises(KeyStoreError):
        store.load("k4")
    assert len(public) == 32


def test_root_and_issuer_live_in_separate_tokens(tokens: None) -> None:
    root_uri = f"pkcs11:token=fmc-root;module-path={MODULE}"
    with HsmKeyStore.open(root_uri, pin=PIN) as root, \
            HsmKeyStore.open(ISSUER_URI, pin=PIN) as issuer:
        for kid in root.kids():
            root.destroy(kid)
        root.generate("root1")
        assert "root1" not in issuer.kids()


@pytest.mark.parametrize(("uri", "pin"), [
    ("file:/tmp/keys", PIN),
    ("pkcs11:module-path=/x.so", PIN),
    (f"pkcs11:token=fmc-issuer;pin-value={PIN}", PIN),
    ("pkcs11:token=no-such-token;module-path=" + MODULE, PIN),
    (ISSUER_URI, "000000"),
    (ISSUER_URI, ""),
    ("pkcs11:token=fmc-issuer;module-path=/nonexistent/lib.so", PIN),
], ids=["not-pkcs11", "no-token", "pin-in-uri", "unknown-token", "wrong-pin", "empty-pin",
        "no-module"])
def test_bad_stores_are_refused_with_a_clear_error(tokens: None, uri: str, pin: str) -> None:
    with pytest.raises(KeyStoreError):
        HsmKeyStore.open(uri, pin=pin)


def test_bad_kids_are_refused(store: HsmKeyStore) -> None:
    for kid in ("", "../k", "k" * 65, "k 1"):
        with pytest.raises(KeyStoreError):
            store.generate(kid)
    store.generate("k5")
    with pytest.raises(KeyStoreError):
        store.generate("k5")


def test_the_uri_parser() -> None:
    assert Pkcs11Uri.parse("pkcs11:token=a%20b") == Pkcs11Uri("a b")
    assert Pkcs11Uri.parse(f"pkcs11:token=t?module-path={MODULE}").module_path == MODULE


def test_a_kek_made_in_the_token_wraps_and_unwraps_there_and_never_leaves(
    store: HsmKeyStore
) -> None:
    import os

    for label in store.kek_labels():
        store.destroy_kek(label)
    kek = store.generate_kek("data-kek-1")
    dek = os.urandom(32)
    wrapped = kek.wrap(dek)
    assert len(wrapped) == 40 and dek not in wrapped  # RFC 3394, as a file KEK wraps
    assert store.load_kek("data-kek-1").unwrap(wrapped) == dek
    assert kek.name == "pkcs11:data-kek-1" and "data-kek-1" in repr(kek)
    with pytest.raises(KeyStoreError, match="does not unwrap"):
        kek.unwrap(wrapped[:-1] + bytes([wrapped[-1] ^ 1]))
    with pytest.raises(KeyStoreError, match="already holds"):
        store.generate_kek("data-kek-1")
    lib = pkcs11.lib(MODULE)
    with lib.get_token(token_label="fmc-issuer").open() as session:  # logged in already
        (key,) = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                           Attribute.LABEL: "data-kek-1"}))
        assert key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE]
        assert key[Attribute.NEVER_EXTRACTABLE] and key[Attribute.TOKEN]
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[Attribute.VALUE]
    assert store.destroy_kek("data-kek-1") and not store.destroy_kek("data-kek-1")
    with pytest.raises(KeyStoreError, match="no KEK"):
        store.load_kek("data-kek-1")
