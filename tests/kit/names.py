"""Names for test people: a name holds letters, never digits (the enrolment refuses them),
so a serial number is written in letters."""

from __future__ import annotations

__all__ = ["in_letters"]


def in_letters(n: int) -> str:
    """``n`` (>= 0) in base 26 with the letters A-Z as digits: 0 -> "A", 27 -> "BB"."""
    if n < 0:
        raise ValueError("a serial number is >= 0")
    out = ""
    while True:
        n, rest = divmod(n, 26)
        out = chr(65 + rest) + out
        if n == 0:
            return out
