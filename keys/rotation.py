"""Issuer key rotation: next -> active -> retired, or compromised at any time.

The next key is always published one trust-list version before it signs, because an
offline verifier cannot fetch a kid it has never seen.

Example::

    keys = initial_keys(active_kid="k1", active_pub=pub1, next_kid="k2", next_pub=pub2, now=t)
    keys = rotate(keys, new_next_kid="k3", new_next_pub=pub3, now=t2)   # k2 active, k1 retired
"""

from __future__ import annotations

from dataclasses import replace

from schemas.trust_list import IssuerKey, KeyState

__all__ = ["RotationError", "active_key", "compromise", "initial_keys", "rotate"]


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
