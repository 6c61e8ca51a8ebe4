"""A card in the phone: its credentials, its device key and the dynamic presentation.

Each card has its own device key, made on the phone at provisioning; two cards in one
wallet therefore cannot be linked by their holder keys.

Example::

    card = wallet.card("3300012345678901")
    text = present(card, Purpose.PAY, now=int(time.time()))    # "FMC1:..." for the QR
    if card.freshness(now) is Freshness.EXPIRING_SOON: ...
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from keys import Ed25519Signer, sign_presentation
from schemas import Credential, FmcError, Purpose, b64url_decode, b64url_encode
from schemas.challenge import Challenge
from schemas.codes import Malformed
from schemas.credential import MAX_INFLATED_PAYLOAD, ONE_USE_PAY_LIFETIME_SECONDS
from wallet_sim.errors import WalletError, WalletErrorCode

__all__ = [
    "EXPIRY_WARNING_SECONDS",
    "PAY_REFILL_BELOW",
    "PAY_TODAY_REFILL_BELOW",
    "RENEW_SECONDS",
    "Card",
    "Freshness",
    "HolderDisplay",
    "OneUsePay",
    "PayProofClock",
    "present",
    "read_unverified_credential",
    "take_one_use_pay",
    "unverified_kid",
]

RENEW_SECONDS = 30  # docs/DESIGN.md section 5: a dynamic code, renewed like a pay code
EXPIRY_WARNING_SECONDS = 14 * 86_400  # warn two weeks ahead: time to reach the authority
PAY_REFILL_BELOW = 5  # `refresh` refills the one-use pay batch when fewer remain (P13.3)
PAY_TODAY_REFILL_BELOW = 2  # ... or when fewer remain for today (each is valid on one day)


@dataclass(frozen=True, slots=True)
class OneUsePay:
    """One one-use pay credential (P13.3) and the seed of its own fresh holder key; kept
    inside the wallet's encrypted body like the device seed, used for one showing only."""

    credential: str
    holder_seed: bytes = field(repr=False)

    @property
    def holder(self) -> Ed25519Signer:
        return Ed25519Signer(self.holder_seed, kid="holder")

    @property
    def expires_at(self) -> int:
        return read_unverified_credential(self.credential).expires_at

    @property
    def valid_from(self) -> int:
        """The start of the one UTC day it is valid on (its ``iat``)."""
        return read_unverified_credential(self.credential).issued_at

    @property
    def kid(self) -> str | None:
        """The issuer key that signed it (the JWS header's ``kid``, unverified)."""
        return unverified_kid(self.credential)

    def usable(self, now: int) -> bool:
        """Valid now: on its day (a till refuses a later day's NOT_YET_VALID) and one day
        long (older several-day ones are refused LIFETIME_TOO_LONG)."""
        claims = read_unverified_credential(self.credential)
        return (claims.issued_at <= now < claims.expires_at
                and claims.expires_at - claims.issued_at <= ONE_USE_PAY_LIFETIME_SECONDS)

    def to_json(self) -> dict[str, str]:
        return {"credential": self.credential, "holder_seed": b64url_encode(self.holder_seed)}

    @staticmethod
    def from_json(stored: Any) -> OneUsePay:
        one = OneUsePay(str(stored["credential"]), b64url_decode(stored["holder_seed"]))
        claims = read_unverified_credential(one.credential)
        if len(one.holder_seed) != 32 or claims.holder_key != one.holder.public_key:
            raise ValueError("a one-use pay credential not bound to its stored key")
        return one


class Freshness(StrEnum):
    VALID = "valid"
    EXPIRING_SOON = "expiring_soon"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class HolderDisplay:
    """What the phone shows about the holder, taken from the signed id credential."""

    foreigner_code: str | None
    surname: str | None
    given_names: str | None
    birth_date: str | None
    nationality: str | None
    sex: str | None

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.given_names, self.surname) if part)


@dataclass(frozen=True)
class Card:
    """One provisioned card. The device seed never leaves the wallet's encrypted body."""

    card_number: str
    credentials: Mapping[Purpose, str]
    server_url: str
    provisioned_at: int
    device_seed: bytes = field(repr=False)
    portrait: bytes | None = field(default=None, repr=False)
    refreshed_at: int | None = None
    issuer: str | None = None
    trust_list_url: str | None = None
    # When the authority answered that this card is revoked (refresh): the phone then
    # refuses to show its codes. None: no such answer received.
    revoked_at: int | None = None
    # The authority's last word (provision/refresh answer): suspended cards show no code.
    suspended: bool = False
    # The proof time of the last pay code shown: the next one is strictly later, so every
    # display is a new code (one sale each), also across separate runs of the CLI.
    last_pay_proof_time: int | None = None
    # One-use pay credentials not yet shown (P13.3). Once the authority has sent a batch
    # (``one_use_pay``), the card-bound ``pay`` credential is never shown again.
    pay_batch: tuple[OneUsePay, ...] = ()
    one_use_pay: bool = False

    def unused_pay(self, now: int) -> int:
        """How many one-use pay credentials are left that have not expired (today's and
        those pre-issued for the next days)."""
        return sum(1 for one in self.pay_batch if one.expires_at > now)

    def pay_today(self, now: int) -> int:
        """How many one-use pay credentials are left for today (usable now)."""
        return sum(1 for one in self.pay_batch if one.usable(now))

    def next_pay_proof_time(self, now: int) -> int:
        """A pay proof time strictly later than the last one shown for this card."""
        last = self.last_pay_proof_time
        return now if last is None or now > last else last + 1

    @property
    def device(self) -> Ed25519Signer:
        return Ed25519Signer(self.device_seed, kid="device")

    @property
    def device_public_key(self) -> bytes:
        return self.device.public_key

    @property
    def purposes(self) -> tuple[Purpose, ...]:
        return tuple(p for p in Purpose if p in self.credentials)

    def claims(self, purpose: Purpose) -> Credential:
        """The claims of one credential as the authority sent them (not re-verified here)."""
        jws = self.credentials.get(purpose)
        if jws is None:
            raise WalletError(
                WalletErrorCode.CREDENTIAL_MISSING,
                f"card {self.card_number} holds no {purpose.value} credential",
            )
        return read_unverified_credential(jws)

    @property
    def holder(self) -> HolderDisplay:
        for purpose in (Purpose.ID, Purpose.SVC):
            if purpose in self.credentials:
                claims = self.claims(purpose)
                return HolderDisplay(claims.foreigner_code, claims.surname, claims.given_names,
                                     claims.birth_date, claims.nationality, claims.sex)
        return HolderDisplay(None, None, None, None, None, None)

    @property
    def expires_at(self) -> int:
        """The earliest ``exp`` of the card's credentials: after it, some QR is refused."""
        return min(self.claims(p).expires_at for p in self.purposes)

    def freshness(self, now: int, *, warn_seconds: int = EXPIRY_WARNING_SECONDS) -> Freshness:
        expires_at = self.expires_at
        if expires_at <= now:
            return Freshness.EXPIRED
        if expires_at - now <= warn_seconds:
            return Freshness.EXPIRING_SOON
        return Freshness.VALID

    def with_credentials(self, credentials: Mapping[Purpose, str], *, refreshed_at: int) -> Card:
        return replace(self, credentials=dict(credentials), refreshed_at=refreshed_at,
                       revoked_at=None)

    def to_json(self) -> dict[str, Any]:
        """The card as stored inside the encrypted wallet body (holds the device seed)."""
        return {
            "card_number": self.card_number,
            "credentials": {p.value: jws for p, jws in self.credentials.items()},
            "server_url": self.server_url,
            "provisioned_at": self.provisioned_at,
            "refreshed_at": self.refreshed_at,
            "device_seed": b64url_encode(self.device_seed),
            "portrait": None if self.portrait is None else b64url_encode(self.portrait),
            "issuer": self.issuer,
            "trust_list_url": self.trust_list_url,
            "revoked_at": self.revoked_at,
            "suspended": self.suspended,
            "last_pay_proof_time": self.last_pay_proof_time,
            "pay_batch": [one.to_json() for one in self.pay_batch],
            "one_use_pay": self.one_use_pay,
        }

    @staticmethod
    def from_json(stored: Any) -> Card:
        """Rebuild a card from the decrypted body; raises WALLET_CORRUPT on anything odd."""
        try:
            credentials = {Purpose(p): str(jws) for p, jws in stored["credentials"].items()}
            portrait = stored.get("portrait")
            card = Card(
                card_number=str(stored["card_number"]),
                credentials=credentials,
                server_url=str(stored["server_url"]),
                provisioned_at=int(stored["provisioned_at"]),
                refreshed_at=(
                    None if stored.get("refreshed_at") is None else int(stored["refreshed_at"])
                ),
                device_seed=b64url_decode(stored["device_seed"]),
                portrait=None if portrait is None else b64url_decode(portrait),
                issuer=stored.get("issuer"),
                trust_list_url=stored.get("trust_list_url"),
                revoked_at=(
                    None if stored.get("revoked_at") is None else int(stored["revoked_at"])
                ),
                suspended=stored.get("suspended") is True,
                last_pay_proof_time=(None if stored.get("last_pay_proof_time") is None
                                     else int(stored["last_pay_proof_time"])),
                pay_batch=tuple(OneUsePay.from_json(one)
                                for one in stored.get("pay_batch") or ()),
                one_use_pay=stored.get("one_use_pay") is True,
            )
            if len(card.device_seed) != 32 or not credentials:
                raise ValueError("bad device seed or no credentials")
            for purpose in card.purposes:
                card.claims(purpose)
        except (KeyError, TypeError, ValueError, AttributeError, FmcError, WalletError) as exc:
            raise WalletError(WalletErrorCode.WALLET_CORRUPT,
                              "a card in the wallet file is damaged") from exc
        return card


def unverified_kid(unverified_jws: str) -> str | None:
    """The ``kid`` in a compact JWS's header (not checked: for the phone's own sorting)."""
    try:
        header = json.loads(b64url_decode(unverified_jws.split(".", 1)[0]))
    except (ValueError, FmcError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def read_unverified_credential(unverified_jws: str) -> Credential:
    """Decode a credential's claims without checking the issuer signature.

    The phone has no trust list; it only needs to know what it holds (names, expiry,
    which device key it is bound to). Verifiers do the real check. Raises Malformed.
    """
    parts = unverified_jws.split(".")
    if len(parts) != 3:
        raise Malformed("a credential is a compact JWS")
    compressed = b64url_decode(parts[1])
    inflater = zlib.decompressobj(wbits=-15)
    try:
        raw = inflater.decompress(compressed, MAX_INFLATED_PAYLOAD + 1)
    except zlib.error as exc:
        raise Malformed("credential payload is not raw DEFLATE") from exc
    if len(raw) > MAX_INFLATED_PAYLOAD or not inflater.eof:
        raise Malformed("credential payload too large or truncated")
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise Malformed("credential payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise Malformed("credential payload is not an object")
    return Credential.from_payload(payload)


class PayProofClock:
    """Proof times for pay displays: each strictly later than the last one of its card.

    A pay code is for one sale. Two displays in the same second would otherwise be the
    same code (Ed25519 is deterministic), and two honest sales at two shops would look
    like one code taken twice: a double spend. Runs at most a second or two ahead of the
    clock under a burst of displays, inside the verifier's skew.

    Example::

        clock = PayProofClock()
        assert clock.next("3300012345678901", now=100) == 100
        assert clock.next("3300012345678901", now=100) == 101
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def next(self, card_number: str, *, now: int) -> int:
        proof_time = max(now, self._last.get(card_number, now - 1) + 1)
        self._last[card_number] = proof_time
        return proof_time


def take_one_use_pay(card: Card, *, now: int) -> tuple[Card, OneUsePay | None]:
    """The next unused one-use pay credential for today for a new showing, and the card
    without it (expired ones dropped, later days' kept): the caller saves the card before
    showing the code, so it is never shown twice. None when the card has none for today
    (then ``present`` says PAY_BATCH_EMPTY: refresh online)."""
    fresh = sorted((one for one in card.pay_batch
                    if one.expires_at > now and (one.usable(now) or one.valid_from > now)),
                   key=lambda one: one.valid_from)
    today = next((one for one in fresh if one.usable(now)), None)
    return replace(card, pay_batch=tuple(one for one in fresh if one is not today)), today


def present(card: Card, purpose: Purpose, *, now: int,
            challenge: Challenge | None = None, one_use: OneUsePay | None = None) -> str:
    """A fresh ``FMC1:`` presentation: the credential plus the device's proof for ``now``;
    with a till's ``challenge``, an ``FMC2:`` pay code good only for that sale.

    Refuses expired credentials (a verifier would say EXPIRED; better to say so here),
    and cards the authority said are revoked or suspended.

    A pay code is made from ``one_use`` (from :func:`take_one_use_pay`) when given; a card
    that has had one-use credentials never shows its card-bound ``pay`` credential again
    (PAY_BATCH_EMPTY: refresh online to refill).
    """
    if card.revoked_at is not None or card.suspended:
        state = "revoked" if card.revoked_at is not None else "suspended"
        raise WalletError(
            WalletErrorCode.CARD_REVOKED if card.revoked_at is not None
            else WalletErrorCode.CARD_SUSPENDED,
            f"card {card.card_number} is {state} by the authority; no code is shown",
        )
    if purpose is Purpose.PAY and one_use is not None:
        if one_use.expires_at <= now:
            raise WalletError(WalletErrorCode.CREDENTIALS_EXPIRED,
                              "this one-use pay credential has expired")
        return sign_presentation(one_use.credential, one_use.holder, proof_time=now,
                                 purpose="pay",
                                 challenge_digest=None if challenge is None else challenge.digest)
    if purpose is Purpose.PAY and card.one_use_pay:
        raise WalletError(WalletErrorCode.PAY_BATCH_EMPTY,
                          f"card {card.card_number} has no unused pay credential left for"
                          " today; run `refresh` online to refill")
    jws = card.credentials.get(purpose)
    if jws is None:
        raise WalletError(
            WalletErrorCode.CREDENTIAL_MISSING,
            f"card {card.card_number} holds no {purpose.value} credential",
        )
    if card.claims(purpose).expires_at <= now:
        raise WalletError(
            WalletErrorCode.CREDENTIALS_EXPIRED,
            f"the {purpose.value} credential of card {card.card_number} has expired",
        )
    return sign_presentation(jws, card.device, proof_time=now, purpose=purpose.value,
                             challenge_digest=None if challenge is None else challenge.digest)
