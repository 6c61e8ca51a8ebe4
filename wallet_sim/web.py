"""``wallet-sim serve``: the phone's screen as a small web page.

One page shows the card (name, photo when present, foreigner code, card number) and
the dynamic QR for the chosen purpose; the QR is a PNG route renewed every 30 seconds
by a few lines of JavaScript (with a countdown), or by a meta refresh without it.
English, Chinese, Arabic (right to left) and Russian, by ``?lang=`` or the browser's
Accept-Language. The device key never reaches the page: only presentations do.

Example::

    app = create_app(open_wallet(path, pin), clock=lambda: int(time.time()))
    uvicorn.run(app, host="127.0.0.1", port=8766)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from schemas import FmcError, Purpose
from schemas.challenge import MAX_CHALLENGE_CHARS, Challenge, decode_challenge
from wallet_sim._i18n import RTL_LANGUAGES, choose_language, language_names, translations
from wallet_sim.card import (
    RENEW_SECONDS,
    Card,
    Freshness,
    OneUsePay,
    PayProofClock,
    present,
    take_one_use_pay,
)
from wallet_sim.errors import WalletError
from wallet_sim.qr import qr_png
from wallet_sim.wallet import Wallet

__all__ = ["LOCAL_HOSTS", "create_app"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("wallet_sim", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)
_SECURITY_HEADERS = {
    # Everything comes from this app; no inline script, no framing, no referrer.
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; "
    "script-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_SHOWING_GAP_SECONDS = 2 * RENEW_SECONDS + 15  # a longer pause starts a new pay showing
_IMAGE_TYPES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF8", "image/gif"),
)


class _LiveWallet:
    """The served wallet, re-read when another process (``refresh``) rewrites the file."""

    def __init__(self, wallet: Wallet) -> None:
        self._wallet = wallet
        self._lock = threading.Lock()
        # The one-use pay credential each card's pay screen is showing, and when its QR
        # was last fetched: renewals within a showing keep it (P13.3).
        self._showing: dict[str, tuple[OneUsePay, int]] = {}

    def one_use_pay(self, card_number: str, *, now: int, new_showing: bool = False
                    ) -> OneUsePay | None:
        """The credential of the current pay showing, or the next one (saved as taken).
        A sale challenge always starts a new showing: one sale per credential."""
        with self._lock:
            held = self._showing.get(card_number)
            if held is not None and not new_showing and 0 <= now - held[1] <= _SHOWING_GAP_SECONDS \
                    and held[0].expires_at > now:
                self._showing[card_number] = (held[0], now)
                return held[0]
            card = next((c for c in self._wallet.cards if c.card_number == card_number), None)
            if card is None:
                return None
            card, taken = take_one_use_pay(card, now=now)
            if taken is not None:
                self._wallet.put(card)
                self._showing[card_number] = (taken, now)
            return taken

    def cards(self) -> tuple[Card, ...]:
        with self._lock:
            if self._wallet.changed_on_disk():
                # On a bad file keep showing what we had; the CLI reports file problems.
                with contextlib.suppress(WalletError):
                    self._wallet.reload()
            return self._wallet.cards


def _portrait_type(portrait: bytes) -> str | None:
    for magic, media_type in _IMAGE_TYPES:
        if portrait.startswith(magic):
            return media_type
    if portrait[:4] == b"RIFF" and portrait[8:12] == b"WEBP":
        return "image/webp"
    return None


def _problem(status: int, code: str, title: str) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "status": status, "code": code, "title": title},
                        status_code=status, media_type="application/problem+json",
                        headers={"Cache-Control": "no-store"})


def _find(cards: tuple[Card, ...], card_number: str | None) -> Card | None:
    if not cards:
        return None
    if card_number is None:
        return cards[0]
    return next((c for c in cards if c.card_number == card_number), None)


def create_app(
    wallet: Wallet,
    *,
    clock: Callable[[], int],
    allowed_hosts: Sequence[str] = LOCAL_HOSTS,
) -> FastAPI:
    """The wallet page app. ``clock`` gives the proof time of each QR (seconds)."""
    live = _LiveWallet(wallet)
    pay_proofs = PayProofClock()  # every pay display a fresh code, not one per 30 s
    app = FastAPI(title="wallet-sim", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app.mount("/static", StaticFiles(packages=[("wallet_sim", "static")]), name="static")

    @app.get("/", response_class=HTMLResponse)
    def wallet_page(
        request: Request,
        card: str | None = Query(default=None, max_length=32),
        purpose: str = Query(default="id", max_length=8),
        lang: str | None = Query(default=None, max_length=16),
        challenge: str | None = Query(default=None, max_length=MAX_CHALLENGE_CHARS),
    ) -> Response:
        language = choose_language(lang, request.headers.get("accept-language"))
        chosen_purpose = Purpose(purpose) if purpose in {p.value for p in Purpose} else Purpose.ID
        cards = live.cards()
        shown = _find(cards, card)
        status = 200 if shown is not None or card is None else 404
        html = _TEMPLATES.get_template("wallet.html").render(
            **_page_context(cards, shown, chosen_purpose, language, clock(), challenge)
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    @app.get("/qr/{card_number}/{purpose}.png")
    def qr_image(
        card_number: str, purpose: str,
        challenge: str | None = Query(default=None, max_length=MAX_CHALLENGE_CHARS),
    ) -> Response:
        if purpose not in {p.value for p in Purpose}:
            return _problem(404, "UNKNOWN_PURPOSE", "purpose must be pay, id or svc")
        shown = _find(live.cards(), card_number)
        if shown is None:
            return _problem(404, "CARD_NOT_FOUND", "no such card in this wallet")
        sale = None if challenge is None else _sale(challenge)
        if challenge is not None and (sale is None or purpose != Purpose.PAY.value):
            return _problem(422, "BAD_CHALLENGE", "not a till's sale challenge")
        try:
            chosen = Purpose(purpose)
            now = clock()
            one_use = (live.one_use_pay(shown.card_number, now=now,
                                        new_showing=sale is not None)
                       if chosen is Purpose.PAY else None)
            if chosen is Purpose.PAY and one_use is None:  # the card-bound pay credential
                now = pay_proofs.next(shown.card_number, now=now)
            text = present(shown, chosen, now=now, challenge=sale, one_use=one_use)
        except WalletError as error:
            return _problem(409, error.code.value, error.message)
        return Response(qr_png(text), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    @app.get("/portrait/{card_number}")
    def portrait(card_number: str) -> Response:
        shown = _find(live.cards(), card_number)
        if shown is None or shown.portrait is None:
            return _problem(404, "NO_PORTRAIT", "no portrait for this card")
        media_type = _portrait_type(shown.portrait)
        if media_type is None:
            return _problem(404, "NO_PORTRAIT", "the portrait is not a displayable image")
        return Response(shown.portrait, media_type=media_type,
                        headers={"Cache-Control": "no-store"})

    return app


def _sale(unverified_challenge: str) -> Challenge | None:
    try:
        return decode_challenge(unverified_challenge)
    except FmcError:
        return None


def _page_context(
    cards: tuple[Card, ...], shown: Card | None, purpose: Purpose, language: str, now: int,
    challenge: str | None = None,
) -> dict[str, Any]:
    text = translations(language)
    context: dict[str, Any] = {
        "lang": language,
        "dir": "rtl" if language in RTL_LANGUAGES else "ltr",
        "t": text,
        "languages": language_names(),
        "cards": [c.card_number for c in cards],
        "card": None,
        "purpose": purpose.value,
        "purposes": [p.value for p in Purpose],
        "renew_seconds": RENEW_SECONDS,
        "sale": None,
        "bad_challenge": False,
    }
    if shown is None:
        return context
    holder = shown.holder
    available = purpose in shown.credentials
    expired = available and shown.claims(purpose).expires_at <= now
    context.update(
        card=shown.card_number,
        holder_name=holder.full_name,
        foreigner_code=holder.foreigner_code,
        birth_date=holder.birth_date,
        nationality=holder.nationality,
        has_portrait=shown.portrait is not None and _portrait_type(shown.portrait) is not None,
        available=available,
        expired=expired,
        card_state=("revoked" if shown.revoked_at is not None
                    else "suspended" if shown.suspended else None),
        expiring=not expired and shown.freshness(now) is not Freshness.VALID,
        expires_on=datetime.fromtimestamp(shown.expires_at, UTC).date().isoformat(),
        qr_src=f"/qr/{shown.card_number}/{purpose.value}.png",
        hint=text[f"hint_{purpose.value}"],
        qr_alt=text["qr_alt"].format(purpose=text[purpose.value]),
    )
    sale = None if challenge is None or purpose is not Purpose.PAY else _sale(challenge)
    if sale is not None:
        # What the holder agrees to, in their language, before the bound code is shown.
        context.update(
            sale=text["sale"].format(
                amount=f"{sale.amount_fen // 100}.{sale.amount_fen % 100:02d}",
                merchant=sale.merchant_id, terminal=sale.terminal_id),
            qr_src=f"/qr/{shown.card_number}/pay.png?challenge={quote(sale.text)}")
    elif challenge is not None and purpose is Purpose.PAY:
        context["bad_challenge"] = True
    return context
