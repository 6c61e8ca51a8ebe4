"""The API's routers. To add an area (payments, console), append its router here.

Example::

    for router in ROUTERS:
        app.include_router(router)
"""

from __future__ import annotations

from fastapi import APIRouter

from cardsvc.api.routes import admin, audit, cards, meta, persons, publication, wallet
from cardsvc.console import router as console_router
from cardsvc.payments import routes as payments

__all__ = ["ROUTERS"]

ROUTERS: list[APIRouter] = [
    persons.router,
    cards.router,
    wallet.router,
    publication.router,
    audit.router,
    admin.router,
    meta.router,
    payments.router,
    console_router,  # the officer console, at /
]
