"""Key rotation: next is published before use; retired keep verifying; compromised fail."""

from __future__ import annotations

import pytest

from keys import (
    KEY_RETENTION_SECONDS,
    RotationError,
    active_key,
    compromise,
    initial_keys,
    published_keys,
    rotate,
)
from schemas import IssuerKey, KeyState
from schemas.credential import MAX_CREDENTIAL_LIFETIME_SECONDS

PUB = {kid: bytes([n]) * 32 for n, kid in enumerate(["k1", "k2", "k3", "k4"], start=1)}


def test_rotation_sequence() -> None:
    keys = initial_keys(active_kid="k1", active_pub=PUB["k1"], next_kid="k2",
                        next_pub=PUB["k2"], now=100)
    assert [(k.kid, k.state) for k in keys] == [("k1", KeyState.ACTIVE), ("k2", KeyState.NEXT)]
    keys = rotate(keys, new_next_kid="k3", new_next_pub=PUB["k3"], now=200)
    states = {k.kid: k for k in keys}
    assert states["k1"].state is KeyState.RETIRED and states["k1"].valid_until == 200
    assert states["k2"].state is KeyState.ACTIVE
    assert states["k3"].state is KeyState.NEXT
    assert active_key(keys).kid == "k2"


def test_rotate_refuses_reused_kid() -> None:
    keys = initial_keys(active_kid="k1", active_pub=PUB["k1"], next_kid="k2",
                        next_pub=PUB["k2"], now=100)
    with pytest.raises(RotationError):
        rotate(keys, new_next_kid="k1", new_next_pub=PUB["k4"], now=200)


def test_compromise() -> None:
    keys = initial_keys(active_kid="k1", active_pub=PUB["k1"], next_kid="k2",
                        next_pub=PUB["k2"], now=100)
    keys = compromise(keys, "k1", now=300)
    assert {k.kid: k.state for k in keys}["k1"] is KeyState.COMPROMISED
    with pytest.raises(RotationError):
        active_key(keys)
    with pytest.raises(RotationError):
        compromise(keys, "nope", now=300)


def _stopped_at_1000() -> tuple[IssuerKey, ...]:
    return (
        IssuerKey("k1", PUB["k1"], KeyState.RETIRED, 100, 1000),
        IssuerKey("k2", PUB["k2"], KeyState.COMPROMISED, 100, 1000),
        IssuerKey("k3", PUB["k3"], KeyState.ACTIVE, 900),
        IssuerKey("k4", PUB["k4"], KeyState.NEXT, 900),
    )


@pytest.mark.parametrize(("now", "listed"), [
    (1000, ["k1", "k2", "k3", "k4"]),
    (1000 + KEY_RETENTION_SECONDS - 1, ["k1", "k2", "k3", "k4"]),
    (1000 + KEY_RETENTION_SECONDS, ["k3", "k4"]),  # every credential they signed is dead
    (10**12, ["k3", "k4"]),  # active and next keys are never dropped
])
def test_published_keys_drop_stopped_keys_after_their_retention(
    now: int, listed: list[str]
) -> None:
    assert [key.kid for key in published_keys(_stopped_at_1000(), now=now)] == listed


def test_retention_outlasts_the_longest_credential() -> None:
    assert KEY_RETENTION_SECONDS > MAX_CREDENTIAL_LIFETIME_SECONDS
