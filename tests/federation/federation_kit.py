"""Fixed keys and builders for federation tests: a national root and two cities.

Kids are unique nationally: Yiwu mints ``k1, k2 ...`` and Hangzhou ``h1, h2 ...``
(``CARDSVC_KID_PREFIX``), so the kid alone names the city.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from keys import Ed25519Signer, jwk_thumbprint, public_jwk
from keys.jws import sign_federation_list
from schemas import IssuerKey, KeyState
from schemas.federation import FederationClaims, IssuerEntry, IssuerState, SequenceBlock
from support import DAY, ISSUER_KEY, NOW, ROOT

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
