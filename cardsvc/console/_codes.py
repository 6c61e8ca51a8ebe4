"""Provisioning codes as the console shows them once: text, expiry and a QR code."""

from __future__ import annotations

from fastapi import Response

from cardsvc.console._pages import Visit, render
from cardsvc.console._qr import qr_svg
from cardsvc.console._views import PersonView

__all__ = ["code_view", "provisioning_page"]


def code_view(card_number: str, code: str, expires: str) -> dict[str, str]:
    return {"card_number": card_number, "code": code, "expires": expires,
            "qr_svg": qr_svg(code, label=code)}


def provisioning_page(visit: Visit, holder: PersonView, codes: list[dict[str, str]], *,
                      heading: str) -> Response:
    return render(visit, "provisioning.html", nav="search", holder=holder, codes=codes,
                  heading=heading, server=visit.ctx.settings.public_base)
