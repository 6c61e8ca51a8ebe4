"""Ed25519 keys inside a PKCS#11 token (an HSM; SoftHSM2 in tests and development).

The private key is generated in the token as sensitive and non-extractable, and every
signature is made there: no byte of it ever reaches this process. A store is named by an
RFC 7512 URI; the user PIN comes from the environment, never from the URI or a file.

Example::

    store = HsmKeyStore.open("pkcs11:token=fmc-issuer;module-path=/usr/lib/softhsm/libsofthsm2.so",
                             pin="1234")
    signer = store.generate("k2")          # a Signer: .kid, .public_key, .sign(message)
    same = store.load("k2")
    store.destroy("k2")                    # retired: the private half is deleted in the token
    kek = store.generate_kek("data-kek-1")  # AES-256 in the token: wraps the data keys (P13)
    wrapped = kek.wrap(os.urandom(32))      # CKM_AES_KEY_WRAP (RFC 3394), done by the token
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from keys.kek import PKCS11_PREFIX
from keys.keystore import KID_PATTERN, KeyStoreError

__all__ = ["HsmKek", "HsmKeyStore", "HsmSigner", "Pkcs11Uri"]

_ED25519_OID = "1.3.101.112"
_DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass(frozen=True, slots=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 ``pkcs11:`` URI this store uses (a PIN in it is refused)."""

    token: str
    module_path: str = _DEFAULT_MODULE

    @staticmethod
    def parse(uri: str) -> Pkcs11Uri:
        if not uri.startswith("pkcs11:"):
            raise KeyStoreError("a PKCS#11 key store is named by a pkcs11: URI")
        path, _, query = uri[len("pkcs11:"):].partition("?")
        attributes: dict[str, str] = {}
        for part in [p for p in path.split(";") + query.split("&") if p]:
            name, sep, value = part.partition("=")
            if not sep:
                raise KeyStoreError(f"bad pkcs11: URI attribute {name!r}")
            attributes[name] = unquote(value)
        if "pin-value" in attributes or "pin-source" in attributes:
            # A PIN in a URI ends up in shell history, process lists and logs.
            raise KeyStoreError("give the token PIN through the environment, not the URI")
        token = attributes.get("token")
        if not token:
            raise KeyStoreError("the pkcs11: URI needs token=LABEL")
        return Pkcs11Uri(token, attributes.get("module-path", _DEFAULT_MODULE))


class HsmSigner:
    """A Signer whose private key stays in the token."""

    __slots__ = ("_key", "_kid", "_lock", "_public_key")

    def __init__(self, kid: str, public_key: bytes, key: Any, lock: threading.Lock) -> None:
        self._kid, self._public_key, self._key, self._lock = kid, public_key, key, lock

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def sign(self, message: bytes) -> bytes:
        with self._lock:  # one PKCS#11 session is not to be used by two threads at once
            signature: bytes = self._key.sign(message, mechanism=Mechanism.EDDSA)
        return signature

    def __repr__(self) -> str:
        return f"HsmSigner(kid={self._kid!r})"


class HsmKek:
    """A key-encryption key that stays in the token: an AES-256 secret key, sensitive and
    never extractable, allowed only to wrap and unwrap. The data keys it unwraps are
    handed to this process (a session object, extractable, destroyed at once): they seal
    fields here, as with a file KEK; the KEK itself is never outside the token."""

    __slots__ = ("_key", "_label", "_lock", "_session")

    def __init__(self, label: str, key: Any, session: Any, lock: threading.Lock) -> None:
        self._label, self._key, self._session, self._lock = label, key, session, lock

    @property
    def name(self) -> str:
        return PKCS11_PREFIX + self._label

    @property
    def label(self) -> str:
        return self._label

    def wrap(self, key: bytes) -> bytes:
        with self._lock:
            try:
                data_key = self._session.create_object(_session_secret(key))
                try:
                    wrapped: bytes = self._key.wrap_key(data_key,
                                                        mechanism=Mechanism.AES_KEY_WRAP)
                finally:
                    data_key.destroy()
            except pkcs11.exceptions.PKCS11Error as error:
                raise KeyStoreError(f"the token did not wrap ({type(error).__name__})") from None
        return bytes(wrapped)

    def unwrap(self, wrapped: bytes) -> bytes:
        with self._lock:
            try:
                data_key = self._key.unwrap_key(
                    ObjectClass.SECRET_KEY, KeyType.AES, wrapped,
                    mechanism=Mechanism.AES_KEY_WRAP, store=False,
                    template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False})
                try:
                    return bytes(data_key[Attribute.VALUE])
                finally:
                    data_key.destroy()
            except pkcs11.exceptions.PKCS11Error as error:
                raise KeyStoreError(f"{self.name} does not unwrap this key"
                                    f" ({type(error).__name__})") from None

    def __repr__(self) -> str:
        return f"HsmKek({self._label!r})"


def _session_secret(key: bytes) -> dict[Attribute, Any]:
    # A session object (gone with the session), so the token can wrap a data key made here.
    return {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: key, Attribute.TOKEN: False, Attribute.EXTRACTABLE: True,
            Attribute.SENSITIVE: False}


class HsmKeyStore:
    """Issuer (or root) keys in one token: generate, load by kid, list, destroy."""

    def __init__(self, uri: Pkcs11Uri, session: Any) -> None:
        self.uri = uri
        self._session = session
        self._lock = threading.Lock()

    @classmethod
    def open(cls, uri: str, *, pin: str) -> HsmKeyStore:
        parsed = Pkcs11Uri.parse(uri)
        if not pin:
            raise KeyStoreError("the token PIN is empty")
        try:
            token = pkcs11.lib(parsed.module_path).get_token(token_label=parsed.token)
            try:
                session = token.open(user_pin=pin, rw=True)
            except pkcs11.exceptions.UserAlreadyLoggedIn:
                # PKCS#11 logs in per process, not per session: this process already
                # proved the PIN (a second store over the same token, e.g. serve's check
                # and its app), so a further session shares that login.
                session = token.open(rw=True)
        except pkcs11.exceptions.NoSuchToken:
            raise KeyStoreError(f"no token labelled {parsed.token!r}") from None
        except pkcs11.exceptions.PinIncorrect:
            raise KeyStoreError("the PIN does not open this token") from None
        except (OSError, RuntimeError, pkcs11.exceptions.PKCS11Error) as error:
            raise KeyStoreError(f"cannot open the token ({type(error).__name__})") from None
        return cls(parsed, session)

    def __repr__(self) -> str:
        return f"HsmKeyStore(token={self.uri.token!r})"

    def close(self) -> None:
        with self._lock:
            self._session.close()

    def __enter__(self) -> HsmKeyStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    @staticmethod
    def _check_kid(kid: str) -> None:
        if not KID_PATTERN.match(kid):
            raise KeyStoreError("invalid kid")

    def generate(self, kid: str) -> HsmSigner:
        """A new Ed25519 key pair made inside the token (sensitive, never extractable)."""
        self._check_kid(kid)
        if kid in self.kids():
            raise KeyStoreError(f"the token already holds a key {kid!r}")
        with self._lock:
            parameters = self._session.create_domain_parameters(
                KeyType.EC_EDWARDS,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(_ED25519_OID)}, local=True)
            public, private = parameters.generate_keypair(
                store=True, label=kid, id=kid.encode(),
                mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                                  Attribute.SIGN: True})
        return HsmSigner(kid, _raw_public_key(public), private, self._lock)

    def load(self, kid: str) -> HsmSigner:
        self._check_kid(kid)
        with self._lock:
            try:
                private = self._session.get_key(object_class=ObjectClass.PRIVATE_KEY,
                                                key_type=KeyType.EC_EDWARDS, label=kid)
                public = self._session.get_key(object_class=ObjectClass.PUBLIC_KEY,
                                               key_type=KeyType.EC_EDWARDS, label=kid)
            except pkcs11.exceptions.NoSuchKey:
                raise KeyStoreError(f"no key {kid!r} in the token") from None
        return HsmSigner(kid, _raw_public_key(public), private, self._lock)

    def public_key(self, kid: str) -> bytes:
        """The public half only (what a backup of an HSM-backed authority keeps)."""
        return self.load(kid).public_key

    def kids(self) -> list[str]:
        with self._lock:
            labels = {key.label for key in self._session.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.EC_EDWARDS})}
        return sorted(labels)

    def destroy(self, kid: str) -> bool:
        """Delete the private half in the token (the public key stays for verifiers).

        Returns False when there was nothing left to destroy (safe to call again)."""
        self._check_kid(kid)
        destroyed = False
        with self._lock:
            for key in list(self._session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                                       Attribute.LABEL: kid})):
                key.destroy()
                destroyed = True
        return destroyed


    def generate_kek(self, label: str) -> HsmKek:
        """A new AES-256 KEK made inside the token: a token object, sensitive, never
        extractable, usable only to wrap and unwrap."""
        self._check_kid(label)
        if label in self.kek_labels():
            raise KeyStoreError(f"the token already holds a KEK {label!r}")
        with self._lock:
            try:
                key = self._session.generate_key(
                    KeyType.AES, 256, label=label, id=label.encode(), store=True,
                    template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                              Attribute.PRIVATE: True, Attribute.WRAP: True,
                              Attribute.UNWRAP: True, Attribute.ENCRYPT: False,
                              Attribute.DECRYPT: False, Attribute.SIGN: False,
                              Attribute.VERIFY: False, Attribute.DERIVE: False})
            except pkcs11.exceptions.PKCS11Error as error:
                raise KeyStoreError(f"the token made no KEK ({type(error).__name__})") from None
        return HsmKek(label, key, self._session, self._lock)

    def load_kek(self, label: str) -> HsmKek:
        self._check_kid(label)
        with self._lock:
            try:
                key = self._session.get_key(object_class=ObjectClass.SECRET_KEY,
                                            key_type=KeyType.AES, label=label)
            except pkcs11.exceptions.NoSuchKey:
                raise KeyStoreError(f"no KEK {label!r} in the token") from None
            except pkcs11.exceptions.PKCS11Error as error:
                raise KeyStoreError(f"the token is unavailable ({type(error).__name__})"
                                    ) from None
        return HsmKek(label, key, self._session, self._lock)

    def kek_labels(self) -> list[str]:
        with self._lock:
            labels = {key.label for key in self._session.get_objects(
                {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES})}
        return sorted(labels)

    def destroy_kek(self, label: str) -> bool:
        """Delete a KEK in the token (what it wrapped no longer opens); False if none."""
        self._check_kid(label)
        destroyed = False
        with self._lock:
            for key in list(self._session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                                       Attribute.LABEL: label})):
                key.destroy()
                destroyed = True
        return destroyed


def _raw_public_key(public: Any) -> bytes:
    # CKA_EC_POINT is a DER OCTET STRING around the 32 raw bytes (04 20 || key).
    point = bytes(public[Attribute.EC_POINT])
    if len(point) == 34 and point[:2] == b"\x04\x20":
        return point[2:]
    if len(point) == 32:
        return point
    raise KeyStoreError("the token returned an unexpected Ed25519 public key")
