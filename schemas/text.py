"""The one rule for signed free text (names, issuer): no character a reader cannot see.

The authority refuses such a name at enrolment and the verifier refuses a credential that
holds one (MALFORMED), so both sides apply the same rule: no control characters (Cc: ANSI
escapes, newlines), format characters (Cf: bidi overrides, zero-width joiners), lone
surrogates (Cs), private-use (Co) or unassigned (Cn) code points.

Example::

    from schemas.text import has_hidden_characters
    has_hidden_characters("Müller 李")       # False
    has_hidden_characters("Ali\\u202eevil")   # True
    printable("Ali\\x1b[32m")                # 'Ali\\\\u001b[32m', safe for a terminal or a log
"""

from __future__ import annotations

import unicodedata

__all__ = ["HIDDEN_CATEGORIES", "has_hidden_characters", "printable"]

HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def has_hidden_characters(text: str) -> bool:
    """True when ``text`` holds a character of a category in :data:`HIDDEN_CATEGORIES`."""
    if text.isascii() and text.isprintable():
        return False  # the common case, without a per-character lookup
    return any(unicodedata.category(char) in HIDDEN_CATEGORIES for char in text)


def printable(unverified_value: object) -> str:
    """``str(unverified_value)`` with every hidden character spelled ``\\uXXXX``.

    For showing outside text (a server's error, a header field) in a terminal or a log: an
    ANSI escape, a newline or a bidi override cannot recolour, move or reorder the output.
    """
    text = str(unverified_value)
    if not has_hidden_characters(text):
        return text
    return "".join(f"\\u{ord(char):04x}" if unicodedata.category(char) in HIDDEN_CATEGORIES
                   else char for char in text)
