"""The officer console: the authority's work in the browser, served by cardsvc at ``/``.

Registrars enrol foreigners, resolve likely duplicates, record passport changes and issue
cards (the one-time provisioning code shown as a QR code and as text); supervisors
revoke, suspend and reinstate cards; auditors read the hash-chained audit log. Pages
are rendered on the server (Jinja2) in English or Chinese; every asset comes from the
app itself. Sign-in takes an officer token and keeps only a signed session cookie.

Example::

    app = create_app(settings)          # cardsvc.api: the console's router is included
    # then open http://127.0.0.1:8000/ and sign in with a token from `cardsvc officer add`
"""

from __future__ import annotations

from fastapi import APIRouter

from cardsvc.console.routes import audit, auth, cards, keys, officers, persons, search, static

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
for _area in (static, auth, search, persons, cards, audit, keys, officers):
    router.include_router(_area.router)
