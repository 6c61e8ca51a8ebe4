"""The wallet file: the phone's cards, encrypted with a key derived from the PIN.

On disk it is one small JSON document: a clear header (format, version, Argon2id salt
and limits) and ``box``, the SecretBox (XSalsa20-Poly1305) of the cards, device keys
included. Nothing secret is ever in clear. Writes replace the file atomically (temporary
file, fsync, rename, fsync of the directory), so a crash leaves the old or the new file.

Example::

    wallet = open_wallet(Path("phone.wallet"), pin="482913")      # WRONG_PIN if not
    card = wallet.card()                                          # the only card
    wallet.put(new_card)                                          # atomic, locked
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils

from schemas import FmcError, b64url_decode, b64url_encode
from wallet_sim._atomic import directory_lock, remove_stale_temporaries, write_atomically
from wallet_sim.card import Card
from wallet_sim.errors import WalletError, WalletErrorCode

__all__ = [
    "MIN_PIN_LENGTH",
    "WALLET_FORMAT",
    "WALLET_VERSION",
    "KdfLimits",
    "Wallet",
    "create_wallet",
    "open_wallet",
    "with_card",
]

WALLET_FORMAT = "fmc-wallet"
WALLET_VERSION = 1
MIN_PIN_LENGTH = 4
_MAX_PIN_LENGTH = 128
_MAX_FILE_BYTES = 16 * 1024 * 1024  # several cards with portraits fit many times over
_KDF_ALG = "argon2id13"


@dataclass(frozen=True, slots=True)
class KdfLimits:
    """Argon2id cost. A hostile file cannot make the phone spend more than MODERATE."""

    opslimit: int
    memlimit: int

    @staticmethod
    def interactive() -> KdfLimits:
        """libsodium's interactive preset (about 0.1 s and 64 MiB): the default."""
        return KdfLimits(argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE)

    @staticmethod
    def minimum() -> KdfLimits:
        """The cheapest legal setting: only for tests that open wallets many times."""
        return KdfLimits(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)

    @property
    def acceptable(self) -> bool:
        return (
            argon2id.OPSLIMIT_MIN <= self.opslimit <= argon2id.OPSLIMIT_SENSITIVE
            and argon2id.MEMLIMIT_MIN <= self.memlimit <= argon2id.MEMLIMIT_MODERATE
        )


def _normalized_pin(pin: str) -> bytes:
    # NFKC: a PIN typed with full-width digits (Chinese input methods) opens the same wallet.
    return unicodedata.normalize("NFKC", pin).encode("utf-8")


def _derive_key(pin: str, salt: bytes, limits: KdfLimits) -> bytes:
    key: bytes = argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        _normalized_pin(pin),
        salt,
        opslimit=limits.opslimit,
        memlimit=limits.memlimit,
    )
    return key


def _check_new_pin(pin: str) -> None:
    if len(unicodedata.normalize("NFKC", pin)) < MIN_PIN_LENGTH:
        raise WalletError(WalletErrorCode.PIN_TOO_SHORT,
                          f"the PIN must have at least {MIN_PIN_LENGTH} characters")
    if len(pin) > _MAX_PIN_LENGTH:
        raise WalletError(WalletErrorCode.BAD_ARGUMENT, "the PIN is too long")


@dataclass(frozen=True, slots=True)
class _Envelope:
    salt: bytes
    limits: KdfLimits
    box: bytes

    def to_bytes(self) -> bytes:
        header = {
            "format": WALLET_FORMAT,
            "version": WALLET_VERSION,
            "kdf": {
                "alg": _KDF_ALG,
                "salt": b64url_encode(self.salt),
                "opslimit": self.limits.opslimit,
                "memlimit": self.limits.memlimit,
            },
            "box": b64url_encode(self.box),
        }
        return json.dumps(header, separators=(",", ":")).encode("ascii") + b"\n"

    @staticmethod
    def parse(unverified_bytes: bytes) -> _Envelope:
        corrupt = WalletError(WalletErrorCode.WALLET_CORRUPT,
                              "this is not a readable wallet file")
        try:
            document = json.loads(unverified_bytes)
        except (ValueError, UnicodeDecodeError) as exc:
            raise corrupt from exc
        if not isinstance(document, dict) or document.get("format") != WALLET_FORMAT:
            raise corrupt
        if document.get("version") != WALLET_VERSION:
            raise WalletError(
                WalletErrorCode.UNSUPPORTED_WALLET_VERSION,
                f"wallet file version {document.get('version')!r} is not supported by this "
                f"wallet-sim (it reads version {WALLET_VERSION})",
            )
        kdf = document.get("kdf")
        try:
            if not isinstance(kdf, dict) or kdf.get("alg") != _KDF_ALG:
                raise ValueError("unknown key derivation")
            opslimit, memlimit = kdf["opslimit"], kdf["memlimit"]
            if type(opslimit) is not int or type(memlimit) is not int:
                raise ValueError("limits must be integers")
            limits = KdfLimits(opslimit, memlimit)
            salt = b64url_decode(kdf["salt"])
            box = b64url_decode(document["box"])
        except (KeyError, TypeError, ValueError, FmcError) as exc:
            raise corrupt from exc
        too_short = len(box) < nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES
        if not limits.acceptable or len(salt) != argon2id.SALTBYTES or too_short:
            raise corrupt
        return _Envelope(salt, limits, box)


def _stat_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _read_envelope(path: Path) -> _Envelope:
    try:
        with path.open("rb") as stream:
            unverified_bytes = stream.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise WalletError(WalletErrorCode.WALLET_NOT_FOUND,
                          f"no wallet file at {path}; run `provision` first") from exc
    except (IsADirectoryError, PermissionError) as exc:
        raise WalletError(WalletErrorCode.WALLET_NOT_FOUND,
                          f"cannot read the wallet file {path}: {exc.strerror}") from exc
    if len(unverified_bytes) > _MAX_FILE_BYTES:
        raise WalletError(WalletErrorCode.WALLET_CORRUPT, "the wallet file is far too large")
    return _Envelope.parse(unverified_bytes)


def _open_box(envelope: _Envelope, key: bytes) -> tuple[Card, ...]:
    """Decrypt and parse the body; raises CryptoError when the key is wrong."""
    body = nacl.secret.SecretBox(key).decrypt(envelope.box)
    try:
        document = json.loads(body)
        stored_cards: list[Any] = document["cards"]
        if not isinstance(stored_cards, list):
            raise TypeError("cards must be a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise WalletError(WalletErrorCode.WALLET_CORRUPT,
                          "the wallet opened but its content is damaged") from exc
    return tuple(Card.from_json(stored) for stored in stored_cards)


def with_card(cards: tuple[Card, ...], card: Card) -> tuple[Card, ...]:
    """``cards`` with ``card`` added, or replacing the card with the same number."""
    kept = tuple(c for c in cards if c.card_number != card.card_number)
    return (*kept, card)


class Wallet:
    """An unlocked wallet: its cards and the key that reopens it (never shown).

    Build one with :func:`open_wallet` or :func:`create_wallet`.
    """

    def __init__(
        self,
        path: Path,
        cards: tuple[Card, ...],
        *,
        key: bytes,
        salt: bytes,
        limits: KdfLimits,
        stamp: tuple[int, int, int] | None,
    ) -> None:
        self.path = path
        self._cards = cards
        self._key = key
        self._salt = salt
        self._limits = limits
        self._stamp = stamp

    def __repr__(self) -> str:
        return f"Wallet({str(self.path)!r}, cards={len(self._cards)})"

    @property
    def cards(self) -> tuple[Card, ...]:
        return self._cards

    @property
    def kdf_limits(self) -> KdfLimits:
        return self._limits

    def card(self, card_number: str | None = None) -> Card:
        """The card with this number, or the only card when no number is given."""
        if not self._cards:
            raise WalletError(WalletErrorCode.NO_CARDS,
                              "the wallet holds no card yet; run `provision` first")
        if card_number is None:
            if len(self._cards) > 1:
                numbers = ", ".join(c.card_number for c in self._cards)
                raise WalletError(WalletErrorCode.CARD_REQUIRED,
                                  f"the wallet holds several cards ({numbers}); choose one "
                                  "with --card NUMBER")
            return self._cards[0]
        wanted = card_number.strip().upper().replace(" ", "")
        for card in self._cards:
            if card.card_number == wanted:
                return card
        raise WalletError(WalletErrorCode.CARD_NOT_FOUND,
                          f"no card {wanted} in this wallet (see `wallet-sim list`)")

    def changed_on_disk(self) -> bool:
        return _stat_stamp(self.path) != self._stamp

    def reload(self) -> None:
        """Re-read the file (another process wrote it); keeps the current cards on failure."""
        stamp = _stat_stamp(self.path)
        cards = self._read_with_own_key()
        self._cards, self._stamp = cards, stamp

    def _read_with_own_key(self) -> tuple[Card, ...]:
        if not self.path.exists():
            return ()
        envelope = _read_envelope(self.path)
        if envelope.salt != self._salt or envelope.limits != self._limits:
            raise WalletError(WalletErrorCode.WALLET_CHANGED,
                              "the wallet file was replaced by another one; open it again")
        try:
            return _open_box(envelope, self._key)
        except nacl.exceptions.CryptoError as exc:
            raise WalletError(WalletErrorCode.WALLET_CHANGED,
                              "the wallet file was replaced by another one; open it again"
                              ) from exc

    def update(
        self,
        change: Callable[[tuple[Card, ...]], tuple[Card, ...]],
        *,
        on_write_step: Callable[[str], None] | None = None,
    ) -> tuple[Card, ...]:
        """Apply ``change`` to the cards on disk and write the result atomically.

        Holds a lock on the directory and re-reads the file first, so changes made by
        another process meanwhile are kept. ``on_write_step`` observes each write step
        (tests interrupt the write there). On failure the file is as it was.
        """
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            with directory_lock(directory):
                remove_stale_temporaries(self.path)
                cards = change(self._read_with_own_key())
                body = json.dumps({"cards": [c.to_json() for c in cards]},
                                  separators=(",", ":")).encode("utf-8")
                box = bytes(nacl.secret.SecretBox(self._key).encrypt(body))
                content = _Envelope(self._salt, self._limits, box).to_bytes()
                if on_write_step is None:
                    write_atomically(self.path, content)
                else:
                    write_atomically(self.path, content, on_step=on_write_step)
                stamp = _stat_stamp(self.path)
        except OSError as exc:
            raise WalletError(WalletErrorCode.WRITE_FAILED,
                              f"could not write the wallet file: {exc.strerror or exc}") from exc
        self._cards, self._stamp = cards, stamp
        return cards

    def put(self, card: Card, *, on_write_step: Callable[[str], None] | None = None
            ) -> tuple[Card, ...]:
        """Add ``card``, or replace the card with its number; atomic like :meth:`update`."""
        return self.update(lambda cards: with_card(cards, card), on_write_step=on_write_step)


def open_wallet(path: Path, pin: str) -> Wallet:
    """Unlock an existing wallet. A wrong PIN raises WRONG_PIN and touches nothing."""
    envelope = _read_envelope(path)
    stamp = _stat_stamp(path)
    key = _derive_key(pin, envelope.salt, envelope.limits)
    try:
        cards = _open_box(envelope, key)
    except nacl.exceptions.CryptoError as exc:
        # Poly1305 cannot tell a wrong PIN from an altered file; a wrong PIN is far likelier.
        raise WalletError(WalletErrorCode.WRONG_PIN,
                          "the PIN does not open this wallet (or the file was altered); "
                          "nothing was changed") from exc
    return Wallet(path, cards, key=key, salt=envelope.salt, limits=envelope.limits,
                  stamp=stamp)


def create_wallet(path: Path, pin: str, *, limits: KdfLimits | None = None) -> Wallet:
    """A new, empty wallet for ``path`` (written on the first ``update``)."""
    if path.exists():
        raise WalletError(WalletErrorCode.BAD_ARGUMENT, f"{path} already exists")
    _check_new_pin(pin)
    limits = limits or KdfLimits.interactive()
    if not limits.acceptable:
        raise WalletError(WalletErrorCode.BAD_ARGUMENT, "key derivation limits out of range")
    salt = nacl.utils.random(argon2id.SALTBYTES)
    return Wallet(path, (), key=_derive_key(pin, salt, limits), salt=salt, limits=limits,
                  stamp=None)
