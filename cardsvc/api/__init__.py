"""The HTTP API of the issuing authority (docs/DESIGN.md section 9).

Example::

    app = create_app(get_settings(data_dir=Path("data")))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from cardsvc.api._access_log import AccessLog
from cardsvc.api._body_limit import BodyLimit
from cardsvc.api._context import AppContext
from cardsvc.api.errors import install_error_handlers
from cardsvc.api.routes import (
    admin,
    api_docs,
    audit,
    cards,
    federation,
    interauth,
    meta,
    operations,
    persons,
    portrait_bundle,
    publication,
    wallet,
)
from cardsvc.console import router as console_router
from cardsvc.db import Database
from cardsvc.federation.fetch import keep_federation_fresh
from cardsvc.logs import configure_logging
from cardsvc.payments import interchange_routes
from cardsvc.payments import routes as payments
from cardsvc.services.bootstrap import open_keyring
from cardsvc.services.trust import Keyring
from cardsvc.settings import Settings, get_settings

__all__ = ["AppContext", "app_from_environment", "create_app", "settle_the_heap"]


def _system_clock() -> datetime:
    return datetime.now(UTC)


def app_from_environment() -> FastAPI:
    """The app with settings from ``CARDSVC_*`` only: what each uvicorn worker process
    builds under ``cardsvc serve --workers N`` (a factory import string, not an object)."""
    settings = get_settings()
    configure_logging(settings.log_format)  # a worker process starts with no logging
    app = create_app(settings)
    settle_the_heap()
    return app


def settle_the_heap() -> None:
    """What a served process holds from start-up on (modules, the app, its context) is
    moved out of the cyclic collector's sight: a full collection walked all of it and
    paused the event loop 60-240 ms about once a minute under load (P11.3,
    bench/findings.md round 5); garbage made later is collected as before."""
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    keyring: Keyring | None = None,
    clock: Callable[[], datetime] = _system_clock,
    http: httpx.Client | None = None,
) -> FastAPI:
    """Build the app. The database must already be migrated (``cardsvc init`` / serve).

    ``http`` sends requests to other cities' authorities (P10; default: a fresh client).
    With ``CARDSVC_FEDERATION_ROOT`` and ``CARDSVC_FEDERATION_URL`` set, the app keeps the
    held federation list fresh in the background while it runs (never delaying start-up).
    """
    context = AppContext(
        settings=settings,
        database=database or Database.from_settings(settings),
        keyring=keyring or open_keyring(settings),
        clock=clock,
        http=http or httpx.Client(timeout=settings.interauth_timeout_seconds),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        refresher = None
        if settings.federation_root and settings.federation_urls:
            refresher = asyncio.create_task(keep_federation_fresh(
                context.database, settings=settings, clock=clock))
        forwarder = None
        if settings.federation_root:
            forwarder = asyncio.create_task(interchange_routes.keep_forwarding(
                _app.state, context))
        await context.loop_charges.start()
        try:
            yield
        finally:
            await context.loop_charges.close()
            if forwarder is not None:
                forwarder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forwarder
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
            context.publisher.close()  # a background refresh under way ends first
            if http is None:
                context.http.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Foreign Merchant Card authority",
        version="1",
        description="Enrolment, cards, provisioning, revocation, trust and status lists.",
        docs_url=None,  # api_docs serves /docs without a CDN
        redoc_url=None,
    )
    app.state.context = context
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.request_max_bytes)
    app.add_middleware(AccessLog, routes=app.router.routes)  # last added: outermost
    # Assembled here, not in cardsvc.api.routes: area routers (payments, the console) build
    # on cardsvc.api's deps, so a list in the routes package would import them in a loop.
    # national-lookup before persons: /v1/persons/{foreigner_code} would take its path.
    for router in (interauth.officer_router, persons.router, cards.router, wallet.router,
                   publication.router, portrait_bundle.router, federation.router,
                   interauth.router, audit.router, admin.router, meta.router, operations.router,
                   interchange_routes.payments_router,  # before /payments/{payment_id}
                   payments.router, interchange_routes.router, api_docs.router,
                   console_router):  # the officer console, at /
        app.include_router(router)
    return app
