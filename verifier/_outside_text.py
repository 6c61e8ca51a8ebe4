"""Outside text for the terminal: shown as plain data, never as rich markup or control codes.

Anything that came from outside (a QR header's ``alg`` or ``kid``, a credential's names, a
server's problem ``code``/``detail``, a path) goes through :func:`outside` before it is
printed. The value becomes a :class:`rich.text.Text`, so ``[green]`` is printed as those
characters, and every hidden character (``schemas.text``: ANSI escapes, newlines,
bidi overrides, zero-width joiners, lone surrogates) is replaced by a visible
``\\uXXXX``, so a refused answer cannot be painted, moved or reordered to look accepted.

Example::

    from verifier._outside_text import outside
    console.print(Text("REFUSED ", style="bold red") + outside(unverified_code))
    outside("[green]ACCEPTED\\x1b[0m").plain    # '[green]ACCEPTED\\\\u001b[0m'
"""

from __future__ import annotations

from rich.text import Text

from schemas.text import printable

__all__ = ["outside", "printable"]


def outside(unverified_value: object, style: str = "") -> Text:
    """A rich ``Text`` that shows the value literally: no markup, no hidden characters."""
    return Text(printable(unverified_value), style=style)
