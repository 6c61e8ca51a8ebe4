"""Fixed keys and builders for federation tests: a national root and two cities.

Kids are unique nationally: Yiwu mints ``k1, k2 ...`` and Hangzhou ``h1, h2 ...``
(``CARDSVC_KID_PREFIX``), so the kid alone names the city.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from keys import Ed25519Signer, jwk_thumbprint, public_jwk, sign_status_list
from keys.jws import sign_federation_list
from schemas import IssuerKey, KeyState, StatusList, StatusListClaims
from schemas.federation import FederationClaims, IssuerEntry, IssuerState, SequenceBlock
from schemas.status_list import STATUS_REVOKED
from support import DAY, ISSUER_KEY, NOW, ROOT
from verifier.trust import VerifierState, verify_status_list

NATIONAL_ROOT = Ed25519Signer(bytes(range(10, 42)), kid="national-root")
NATIONAL_FINGERPRINT = jwk_thumbprint(public_jwk(NATIONAL_ROOT.public_key))
OTHER_NATIONAL_ROOT = Ed25519Signer(bytes(range(11, 43)), kid="national-root")
HANGZHOU_ROOT = Ed25519Signer(bytes(range(20, 52)), kid="root")
HANGZHOU_KEY = Ed25519Signer(bytes(range(21, 53)), kid="h1")
HANGZHOU_ONLY_KEY = Ed25519Signer(bytes(range(22, 54)), kid="h7")  # no Yiwu key has kid h7


def yiwu(**overrides: Any) -> IssuerEntry:
    entry = IssuerEntry(
        "CN-YW", "Yiwu", "义乌", IssuerState.ACTIVE, ROOT.public_key,
        (IssuerKey("k1", ISSUER_KEY.public_key, KeyState.ACTIVE, NOW - 30 * DAY),),
        "https://yw.example.cn/v1/status-lists", "https://yw.example.cn",
        (SequenceBlock(1, 100),), 3,
    )
    return replace(entry, **overrides)


def hangzhou(**overrides: Any) -> IssuerEntry:
    entry = IssuerEntry(
        "CN-HZ", "Hangzhou", "杭州", IssuerState.ACTIVE, HANGZHOU_ROOT.public_key,
        (IssuerKey("h1", HANGZHOU_KEY.public_key, KeyState.ACTIVE, NOW - 30 * DAY),
         IssuerKey("h7", HANGZHOU_ONLY_KEY.public_key, KeyState.NEXT, NOW - DAY)),
        "http://hz.example.cn/v1/status-lists", "http://hz.example.cn",
        (SequenceBlock(101, 200),), 1,
    )
    return replace(entry, **overrides)


def federation(*entries: IssuerEntry, version: int = 1, issued_at: int = NOW - DAY,
               expires_at: int = NOW + 7 * DAY) -> FederationClaims:
    return FederationClaims("CN", version, issued_at, expires_at,
                            entries or (yiwu(), hangzhou()))


def federation_jwt(claims: FederationClaims | None = None,
                   root: Ed25519Signer = NATIONAL_ROOT) -> str:
    return sign_federation_list(claims or federation(), root)


# -- a verifier pinned nationally ------------------------------------------------------

REVOKED_IN_HANGZHOU = 4_242  # index revoked in Hangzhou's list "1", valid in Yiwu's "1"


def status_list_jwt(entry_code: str, signer: Ed25519Signer, *, list_id: str = "1",
                    revoked: tuple[int, ...] = (), issued_at: int = NOW - 60,
                    expires_at: int = NOW + DAY) -> str:
    """City ``entry_code``'s status list ``list_id`` (ids repeat across cities)."""
    statuses = StatusList.empty(131_072)
    for index in revoked:
        statuses.set(index, STATUS_REVOKED)
    host = "yw" if entry_code == "CN-YW" else "hz"
    claims = StatusListClaims(list_id, f"https://{host}.example.cn/v1/status-lists/{list_id}",
                              issued_at, expires_at, 3600, statuses)
    return sign_status_list(claims, signer)


def federated_state(claims: FederationClaims | None = None, *,
                    cities: tuple[str, ...] = ("CN-YW", "CN-HZ")) -> VerifierState:
    """A national verifier holding ``claims`` and list "1" of each city in ``cities``,
    each verified with its own city's keys."""
    claims = claims or federation()
    lists = {}
    for code in cities:
        jwt = (status_list_jwt(code, ISSUER_KEY) if code == "CN-YW" else
               status_list_jwt(code, HANGZHOU_KEY, revoked=(REVOKED_IN_HANGZHOU,)))
        entry = claims.issuers_by_code[code]
        lists[(code, "1")] = verify_status_list(jwt, trust_list=entry.as_trust_list(claims))
    return VerifierState.of_federation(claims, lists)
