"""Outside text for the terminal: shown as plain data, never as rich markup or control codes.

Anything that came from outside (a QR header's ``alg`` or ``kid``, a credential's names, a
server's problem ``code``/``detail``, a path) goes through :func:`outside` before it is
printed. The value becomes a :class:`rich.text.Text`, so ``[green]`` is printed as those
characters, and every control or format character (Unicode Cc/Cf: ANSI escapes, newlines,
bidi overrides, zero-width joiners) is replaced by a visible ``\\uXXXX`` so a refused answer
cannot be painted, moved or reordered to look accepted.

Example::

    from verifier._outside_text import outside
    console.print(Text("REFUSED ", style="bold red") + outside(unverified_code))
    outside("[green]ACCEPTED\\x1b[0m").plain    # '[green]ACCEPTED\\\\u001b[0m'
"""

from __future__ import annotations

import unicodedata

from rich.text import Text

__all__ = ["outside", "printable"]

_HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs")  # controls, format (bidi, zero-width), lone surrogates


def printable(unverified_value: object) -> str:
    """``str(unverified_value)`` with every control/format character spelled ``\\uXXXX``."""
    text = str(unverified_value)
    if all(unicodedata.category(char) not in _HIDDEN_CATEGORIES for char in text):
        return text
    return "".join(f"\\u{ord(char):04x}" if unicodedata.category(char) in _HIDDEN_CATEGORIES
                   else char for char in text)


def outside(unverified_value: object, style: str = "") -> Text:
    """A rich ``Text`` that shows the value literally: no markup, no control characters."""
    return Text(printable(unverified_value), style=style)
