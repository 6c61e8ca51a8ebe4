"""Talking to the issuing authority over HTTP: provisioning and credential refresh.

The device key is made here, on the phone; only its public key and a proof of
possession leave it. Everything the server answers is checked before it is stored:
each credential must parse, carry its purpose and the card number, and be bound to
this device key.

Example::

    card = provision("https://cardsvc.example", "ABCD-EFGH-JKLM", now=int(time.time()))
    wallet.put(card)
    fresh = refresh(card, now=int(time.time()))      # REFRESH_UNSUPPORTED if not offered
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import httpx

from keys import Ed25519Signer
from schemas import FmcError, Purpose, b64url_encode
from schemas.credential import portrait_digest
from schemas.provisioning import (
    pay_batch_proof_message,
    provisioning_proof_message,
    refresh_proof_message,
)
from wallet_sim.card import (
    PAY_REFILL_BELOW,
    PAY_TODAY_REFILL_BELOW,
    Card,
    OneUsePay,
    read_unverified_credential,
    unverified_kid,
)
from wallet_sim.errors import WalletError, WalletErrorCode

__all__ = [
    "PAY_BATCH_PATH",
    "PAY_BATCH_SIZE",
    "PROVISION_PATH",
    "REFRESH_PATH",
    "normalize_server_url",
    "provision",
    "refill_pay",
    "refresh",
]

PROVISION_PATH = "/v1/provision"
REFRESH_PATH = "/v1/wallet/refresh"
PAY_BATCH_PATH = "/v1/wallet/pay-batch"
PAY_BATCH_SIZE = 10  # one-use pay credentials asked for per refill (P13.3)
_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
_CODE_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z -]{3,63}$")
_MAX_PORTRAIT_BYTES = 2 * 1024 * 1024


def normalize_server_url(server_url: str) -> str:
    """``https://host[:port][/prefix]`` without a trailing slash; refuses anything else."""
    url = server_url.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise WalletError(WalletErrorCode.BAD_ARGUMENT,
                          f"not a server address: {server_url!r}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query:
        raise WalletError(WalletErrorCode.BAD_ARGUMENT,
                          "the server address must look like https://host[:port]")
    return url


def provision(
    server_url: str,
    provisioning_code: str,
    *,
    now: int,
    client: httpx.Client | None = None,
    device: Ed25519Signer | None = None,
) -> Card:
    """Redeem a one-time provisioning code; returns the new card (not yet saved).

    ``device`` is for tests with fixed keys; normally a fresh key is generated here.
    """
    server = normalize_server_url(server_url)
    code = provisioning_code.strip()
    if not _CODE_RE.fullmatch(code):
        raise WalletError(WalletErrorCode.BAD_ARGUMENT,
                          "a provisioning code is 4 to 64 letters, digits or dashes")
    device = device or Ed25519Signer.generate(kid="device")
    request = {
        "provisioning_code": code,
        "device_key": b64url_encode(device.public_key),
        "proof": b64url_encode(device.sign(provisioning_proof_message(code,
                                                                      device.public_key))),
    }
    unverified_answer = _post(server, PROVISION_PATH, request, client, refresh=False)
    credentials, card_number = _bound_credentials(unverified_answer, device.public_key)
    card = Card(
        card_number=card_number,
        credentials=credentials,
        server_url=server,
        provisioned_at=now,
        device_seed=device.seed,
        portrait=_portrait(unverified_answer, credentials),
        issuer=_optional_text(unverified_answer.get("issuer")),
        trust_list_url=_optional_text(unverified_answer.get("trust_list_url")),
        suspended=_suspended(unverified_answer),
    )
    return _refilled_if_low(card, now=now, client=client)


def refresh(card: Card, *, now: int, client: httpx.Client | None = None) -> Card:
    """Ask the authority for fresh credentials for ``card``, signed by its device key."""
    device = card.device
    request = {
        "card_number": card.card_number,
        "device_key": b64url_encode(device.public_key),
        "time": now,
        "proof": b64url_encode(device.sign(
            refresh_proof_message(card.card_number, device.public_key, now))),
    }
    unverified_answer = _post(card.server_url, REFRESH_PATH, request, client, refresh=True)
    credentials, card_number = _bound_credentials(unverified_answer, device.public_key)
    if card_number != card.card_number:
        raise WalletError(WalletErrorCode.BAD_SERVER_RESPONSE,
                          "the authority answered with credentials for another card")
    refreshed = replace(card.with_credentials(credentials, refreshed_at=now),
                        suspended=_suspended(unverified_answer))
    if _status_moved(card, refreshed):
        # A new status index (new personal data): the authority ended the one-use pay
        # credentials too, so the batch is dropped and refilled below.
        refreshed = replace(refreshed, pay_batch=())
    if "portrait" in unverified_answer:
        refreshed = replace(refreshed, portrait=_portrait(unverified_answer, credentials))
    return _refilled_if_low(refreshed, now=now, client=client)


def _status_moved(before: Card, after: Card) -> bool:
    common = [p for p in before.purposes if p in after.credentials]
    return any(before.claims(p).status != after.claims(p).status for p in common)


def _refilled_if_low(card: Card, *, now: int, client: httpx.Client | None) -> Card:
    """The card with its one-use pay batch refilled when it runs low: fewer than
    PAY_TODAY_REFILL_BELOW left for today, fewer than PAY_REFILL_BELOW in all (today's and
    the next days'), or a later day's signed by a key other than the bundle's (a rotation:
    the answer names the keys that retired). Best effort: the credentials just fetched
    are kept whatever the refill says."""
    if Purpose.PAY not in card.credentials or card.suspended:
        return card
    signing_kid = unverified_kid(card.credentials[Purpose.PAY])
    rotated = any(one.kid != signing_kid for one in card.pay_batch if one.valid_from > now)
    if not rotated and card.pay_today(now) >= PAY_TODAY_REFILL_BELOW and \
            card.unused_pay(now) >= PAY_REFILL_BELOW:
        return card
    try:
        return refill_pay(card, now=now, client=client)
    except WalletError:
        return card


def refill_pay(card: Card, *, now: int, client: httpx.Client | None = None,
               count: int = PAY_BATCH_SIZE) -> Card:
    """Ask for ``count`` one-use pay credentials (P13.3), each for a fresh holder key made
    here; the request is signed by the card's device key. An authority that does not offer
    them (404 without a problem code) leaves the card as it is: it keeps showing its
    card-bound pay credential."""
    device = card.device
    holders = [Ed25519Signer.generate(kid="holder") for _ in range(count)]
    keys = [holder.public_key for holder in holders]
    request = {
        "card_number": card.card_number,
        "device_key": b64url_encode(device.public_key),
        "time": now,
        "proof": b64url_encode(device.sign(
            pay_batch_proof_message(card.card_number, device.public_key, now, keys))),
        "holder_keys": [b64url_encode(key) for key in keys],
    }
    try:
        unverified_answer = _post(card.server_url, PAY_BATCH_PATH, request, client,
                                  refresh=True)
    except WalletError as error:
        if error.code is WalletErrorCode.REFRESH_UNSUPPORTED:
            return card
        raise
    batch = _one_use_credentials(unverified_answer, holders)
    retired = _retired_keys(unverified_answer)
    # Kept: not expired, not signed for a day its key no longer covers (ended there).
    kept = tuple(one for one in card.pay_batch if one.expires_at > now and not (
        one.kid in retired and one.valid_from >= retired[one.kid or ""]))
    return replace(card, pay_batch=tuple(sorted(kept + batch, key=lambda one: one.valid_from)),
                   one_use_pay=True)


def _retired_keys(unverified_answer: Mapping[str, Any]) -> dict[str, int]:
    """The answer's ``retired_keys`` (kid -> end of its window); malformed: none."""
    unverified = unverified_answer.get("retired_keys")
    if not isinstance(unverified, dict):
        return {}
    return {kid: until for kid, until in unverified.items()
            if isinstance(kid, str) and isinstance(until, int) and not isinstance(until, bool)}


def _one_use_credentials(unverified_answer: Mapping[str, Any],
                         holders: list[Ed25519Signer]) -> tuple[OneUsePay, ...]:
    """The batch, checked: one-use pay credentials naming no card, bound in order to the
    holder keys this phone made (fewer than asked is fine: the outstanding cap)."""
    bad = WalletErrorCode.BAD_SERVER_RESPONSE
    unverified_list = unverified_answer.get("credentials")
    if not isinstance(unverified_list, list) or not 0 < len(unverified_list) <= len(holders):
        raise WalletError(bad, "the authority's answer holds no pay credentials")
    batch = []
    for unverified_jws, holder in zip(unverified_list, holders, strict=False):
        if not isinstance(unverified_jws, str) or len(unverified_jws) > 8192:
            raise WalletError(bad, "a one-use pay credential is not a compact JWS")
        try:
            claims = read_unverified_credential(unverified_jws)
        except FmcError as exc:
            raise WalletError(bad, f"a one-use pay credential is malformed ({exc.code})") \
                from exc
        if not claims.is_one_use or claims.holder_key != holder.public_key:
            raise WalletError(bad, "a pay credential is not one-use or not bound to its key")
        batch.append(OneUsePay(unverified_jws, holder.seed))
    return tuple(batch)


def _post(
    server: str,
    path: str,
    body: dict[str, Any],
    client: httpx.Client | None,
    *,
    refresh: bool,
) -> dict[str, Any]:
    own_client = client is None
    http = client or httpx.Client(timeout=_TIMEOUT, follow_redirects=False)
    try:
        try:
            response = http.post(server + path, json=body,
                                 headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise WalletError(WalletErrorCode.SERVER_UNREACHABLE,
                              f"cannot reach the authority at {server}: "
                              f"{type(exc).__name__}") from exc
    finally:
        if own_client:
            http.close()
    unverified_document = _json_object(response)
    if response.status_code in (200, 201):
        if unverified_document is None:
            raise WalletError(WalletErrorCode.BAD_SERVER_RESPONSE,
                              "the authority's answer is not a JSON object")
        return unverified_document
    problem_code = _problem_code(unverified_document)
    if refresh and (response.status_code in (404, 405, 501) and problem_code is None):
        raise WalletError(
            WalletErrorCode.REFRESH_UNSUPPORTED,
            f"the authority at {server} does not offer credential refresh; ask the registrar "
            "for a new provisioning code and run `provision` again",
        )
    title = _problem_text(unverified_document)
    raise WalletError(
        WalletErrorCode.SERVER_REFUSED,
        f"the authority refused (HTTP {response.status_code}"
        + (f", {problem_code}" if problem_code else "")
        + ")"
        + (f": {title}" if title else ""),
        server_code=problem_code,
    )


def _suspended(unverified_answer: Mapping[str, Any]) -> bool:
    # Display only: the verifier's status list, not this flag, decides at the counter.
    return unverified_answer.get("card_state") == "suspended"


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        document = response.json()
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _problem_code(unverified_problem: Mapping[str, Any] | None) -> str | None:
    if unverified_problem is None:
        return None
    code = unverified_problem.get("code")
    if isinstance(code, str) and re.fullmatch(r"[A-Z0-9_]{1,64}", code):
        return code
    return None


def _problem_text(unverified_problem: Mapping[str, Any] | None) -> str:
    if unverified_problem is None:
        return ""
    for name in ("detail", "title"):
        text = unverified_problem.get(name)
        if isinstance(text, str) and text:
            # Printable and short: the server's words end up on the user's terminal.
            return "".join(ch for ch in text[:300] if ch.isprintable())
    return ""


def _optional_text(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 2048 and value.isprintable():
        return value
    return None


def _bound_credentials(
    unverified_answer: Mapping[str, Any], device_key: bytes
) -> tuple[dict[Purpose, str], str]:
    """The answer's credentials, checked: right purpose, one card, bound to this device."""
    bad = WalletErrorCode.BAD_SERVER_RESPONSE
    unverified_credentials = unverified_answer.get("credentials")
    if not isinstance(unverified_credentials, dict) or not unverified_credentials:
        raise WalletError(bad, "the authority's answer holds no credentials")
    credentials: dict[Purpose, str] = {}
    card_numbers: set[str] = set()
    for name, unverified_jws in unverified_credentials.items():
        try:
            purpose = Purpose(name)
        except ValueError:
            continue  # a purpose this wallet does not know yet: ignore it, keep the rest
        if not isinstance(unverified_jws, str) or len(unverified_jws) > 8192:
            raise WalletError(bad, f"the {name} credential is not a compact JWS")
        try:
            claims = read_unverified_credential(unverified_jws)
        except FmcError as exc:
            raise WalletError(bad, f"the {name} credential is malformed ({exc.code})") from exc
        if claims.purpose is not purpose:
            raise WalletError(bad, f"the {name} credential is for {claims.purpose}")
        if claims.holder_key != device_key:
            raise WalletError(bad, f"the {name} credential is not bound to this phone's key")
        credentials[purpose] = unverified_jws
        card_numbers.add(claims.card_number)
    if not credentials:
        raise WalletError(bad, "the authority sent no pay, id or svc credential")
    if len(card_numbers) != 1:
        raise WalletError(bad, "the credentials name different cards")
    (card_number,) = card_numbers
    stated = unverified_answer.get("card_number")
    if stated is not None and stated != card_number:
        raise WalletError(bad, "the card number does not match the credentials")
    return credentials, card_number


def _portrait(unverified_answer: Mapping[str, Any], credentials: Mapping[Purpose, str]
              ) -> bytes | None:
    """The portrait, kept only when it matches the digest signed into the id credential."""
    encoded = unverified_answer.get("portrait")
    if not isinstance(encoded, str) or not encoded:
        return None
    if len(encoded) > _MAX_PORTRAIT_BYTES * 4 // 3 + 4:
        return None
    try:
        # The contract says base64; accept the standard and the URL-safe alphabets.
        portrait = base64.b64decode(encoded.replace("-", "+").replace("_", "/")
                                    + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    for purpose in (Purpose.ID, Purpose.SVC):
        if purpose in credentials:
            digest = read_unverified_credential(credentials[purpose]).portrait_digest
            return portrait if digest == portrait_digest(portrait) else None
    return None
