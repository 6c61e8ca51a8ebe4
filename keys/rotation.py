"""Issuer key rotation: next -> active -> retired, or compromised at any time.

The next key is always published one trust-list version before it signs, because an
offline verifier cannot fetch a kid it has never seen. A retired or compromised key stays
on the trust list until every credential it may have signed has expired (its window end
plus the longest credential lifetime plus clock skew), then drops off, so the list does
not grow forever; its private part is destroyed as soon as it stops signing.

Example::

    keys = initial_keys(active_kid="k1", active_pub=pub1, next_kid="k2", next_pub=pub2, now=t)
    keys = rotate(keys, new_next_kid="k3", new_next_pub=pub3, now=t2)   # k2 active, k1 retired
    listed = published_keys(keys, now=t3)        # k1 gone once t3 >= t2 + KEY_RETENTION_SECONDS
"""

from __future__ import annotations

from dataclasses import replace

from schemas.credential import MAX_CREDENTIAL_LIFETIME_SECONDS
from schemas.trust_list import IssuerKey, KeyState

__all__ = [
    "KEY_RETENTION_SECONDS",
    "RotationError",
    "active_key",
    "compromise",
    "initial_keys",
    "published_keys",
    "rotate",
    "stopped_signing",
]

# A day of skew: far more than any verifier's leeway (seconds) or a counter's clock drift.
_SKEW_SECONDS = 86_400
# How long a key stays listed after its window ends: a credential signed at the last
# moment of the window lives at most MAX_CREDENTIAL_LIFETIME_SECONDS.
KEY_RETENTION_SECONDS = MAX_CREDENTIAL_LIFETIME_SECONDS + _SKEW_SECONDS


class RotationError(Exception):
    """The key set is not in a state that allows this change."""


def initial_keys(
    *, active_kid: str, active_pub: bytes, next_kid: str, next_pub: bytes, now: int
) -> tuple[IssuerKey, ...]:
    return (
        IssuerKey(active_kid, active_pub, KeyState.ACTIVE, now),
        IssuerKey(next_kid, next_pub, KeyState.NEXT, now),
    )


def active_key(keys: tuple[IssuerKey, ...]) -> IssuerKey:
    active = [key for key in keys if key.state is KeyState.ACTIVE]
    if len(active) != 1:
        raise RotationError(f"expected one active key, found {len(active)}")
    return active[0]


def rotate(
    keys: tuple[IssuerKey, ...], *, new_next_kid: str, new_next_pub: bytes, now: int
) -> tuple[IssuerKey, ...]:
    """Promote the published next key, retire the active one, publish a new next key."""
    current = active_key(keys)
    upcoming = [key for key in keys if key.state is KeyState.NEXT]
    if len(upcoming) != 1:
        raise RotationError("no published next key to switch to")
    if any(key.kid == new_next_kid for key in keys):
        raise RotationError("kid already used")
    rotated = []
    for key in keys:
        if key.kid == current.kid:
            rotated.append(replace(key, state=KeyState.RETIRED, valid_until=now))
        elif key.kid == upcoming[0].kid:
            rotated.append(replace(key, state=KeyState.ACTIVE, valid_from=min(key.valid_from, now)))
        else:
            rotated.append(key)
    rotated.append(IssuerKey(new_next_kid, new_next_pub, KeyState.NEXT, now))
    return tuple(rotated)


def compromise(keys: tuple[IssuerKey, ...], kid: str, *, now: int) -> tuple[IssuerKey, ...]:
    """Mark a key compromised: nothing it ever signed is accepted any more."""
    if not any(key.kid == kid for key in keys):
        raise RotationError(f"no key {kid!r}")
    return tuple(
        replace(key, state=KeyState.COMPROMISED, valid_until=key.valid_until or now)
        if key.kid == kid
        else key
        for key in keys
    )


def stopped_signing(key: IssuerKey) -> bool:
    """Retired or compromised: nothing needs its private part any more."""
    return key.state in (KeyState.RETIRED, KeyState.COMPROMISED)


def published_keys(
    keys: tuple[IssuerKey, ...], *, now: int, retention_seconds: int = KEY_RETENTION_SECONDS
) -> tuple[IssuerKey, ...]:
    """The keys a trust list signed at ``now`` names.

    A retired key is dropped once every credential it may have signed has expired; its
    credentials then fail UNKNOWN_KEY, as expired ones. A compromised key is kept (as
    compromised, so its forgeries fail KEY_COMPROMISED) for the same time and then dropped:
    by then a forgery dated inside its window is expired or LIFETIME_TOO_LONG, and one
    dated outside it would fail KEY_NOT_VALID_AT_ISSUE, so UNKNOWN_KEY loses nothing.
    """
    return tuple(
        key for key in keys
        if not (stopped_signing(key) and key.valid_until is not None
                and key.valid_until + retention_seconds <= now)
    )
