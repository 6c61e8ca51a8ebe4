"""Fixed interchange keys for two cities and a federation list that names them."""

from __future__ import annotations

from dataclasses import replace

from federation_kit import federation, hangzhou, yiwu

from keys import Ed25519Signer
from schemas import IssuerKey, KeyState
from schemas.federation import FederationClaims, IssuerEntry, IssuerState
from support import DAY, NOW

YIWU_IK = Ed25519Signer(bytes(range(40, 72)), kid="ki1")
HANGZHOU_IK = Ed25519Signer(bytes(range(41, 73)), kid="hi1")
YW_API = "https://yw.example.cn"
HZ_API = "http://hz.example.cn"


def ik(signer: Ed25519Signer, state: KeyState = KeyState.ACTIVE) -> IssuerKey:
    return IssuerKey(signer.kid, signer.public_key, state, NOW - 30 * DAY)


def two_cities(*, yiwu_state: IssuerState = IssuerState.ACTIVE,
               hangzhou_state: IssuerState = IssuerState.ACTIVE,
               hangzhou_keys: tuple[IssuerKey, ...] | None = None) -> FederationClaims:
    yw: IssuerEntry = replace(yiwu(), state=yiwu_state, interchange_keys=(ik(YIWU_IK),))
    hz: IssuerEntry = replace(hangzhou(), state=hangzhou_state,
                              interchange_keys=hangzhou_keys or (ik(HANGZHOU_IK),))
    return federation(yw, hz)
