"""Key rotation: next is published before use; retired keep verifying; compromised fail."""

from __future__ import annotations

import pytest

from keys import RotationError, active_key, compromise, initial_keys, rotate
from schemas import KeyState

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
