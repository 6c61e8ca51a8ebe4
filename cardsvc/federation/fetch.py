"""Fetching the national federation list over HTTP and keeping the held copy fresh.

``CARDSVC_FEDERATION_URL`` names the list itself (a static file of the national
publication, or another authority's ``/v1/federation-list``); several URLs, comma
separated, are tried in order until one yields a list the authority accepts. Where it
comes from does not matter: only the pinned national root's signature does.

Example::

    with httpx.Client(timeout=10) as http:
        claims = sync_federation(database, settings=settings, http=http, now=now_epoch)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import httpx
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.federation.state import accept_federation_list
from cardsvc.services.errors import DomainError, Unavailable
from cardsvc.settings import Settings
from schemas.federation import FederationClaims

__all__ = ["MAX_FEDERATION_LIST_BYTES", "keep_federation_fresh", "sync_federation"]

_log = logging.getLogger("cardsvc.federation")
MAX_FEDERATION_LIST_BYTES = 512 * 1024  # 50 cities are about 50 KB; the JWS cap is 400,000
FETCH_TIMEOUT_SECONDS = 10.0


def _fetch(http: httpx.Client, url: str) -> str:
    try:
        with http.stream("GET", url, headers={"Accept": "application/jwt"}) as response:
            if response.status_code != 200:
                raise Unavailable("FEDERATION_UNREACHABLE",
                                  f"{url} answered HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_FEDERATION_LIST_BYTES:
                    raise Unavailable("FEDERATION_UNREACHABLE",
                                      f"{url} sent more than {MAX_FEDERATION_LIST_BYTES} bytes")
    except httpx.HTTPError as error:
        raise Unavailable("FEDERATION_UNREACHABLE",
                          f"{url}: {type(error).__name__}") from None
    # Anything but a compact JWS is handed to the verifier as is: it answers MALFORMED.
    return body.decode("ascii", errors="replace").strip()


def sync_federation(
    database: Database,
    *,
    settings: Settings,
    http: httpx.Client,
    now: int,
    urls: tuple[str, ...] | None = None,
) -> FederationClaims:
    """Fetch and accept the federation list from the first URL that gives an acceptable one.

    Each try is its own transaction, so a refused list changes nothing. Raises the first
    refusal (the verifier's code, e.g. TRUST_LIST_ROLLBACK from a stale mirror) when no
    URL gave an acceptable list, else FEDERATION_UNREACHABLE; FEDERATION_NOT_CONFIGURED
    without ``CARDSVC_FEDERATION_ROOT`` or any URL.
    """
    root = settings.federation_root
    urls = settings.federation_urls if urls is None else urls
    if not root:
        raise Unavailable("FEDERATION_NOT_CONFIGURED", "CARDSVC_FEDERATION_ROOT is not set")
    if not urls:
        raise Unavailable("FEDERATION_NOT_CONFIGURED", "CARDSVC_FEDERATION_URL is not set")
    refusal: DomainError | None = None
    unreachable: DomainError | None = None
    for url in urls:
        try:
            jwt = _fetch(http, url)

            def accept(session: Session, jwt: str = jwt) -> FederationClaims:
                return accept_federation_list(session, unverified_jwt=jwt, pinned_root=root,
                                              now=now)

            return database.transact(accept)
        except Unavailable as error:
            _log.warning("federation list from %s not taken: %s", url, error.code)
            unreachable = unreachable or error
        except DomainError as error:
            _log.warning("federation list from %s refused: %s", url, error.code)
            refusal = refusal or error
    failure = refusal or unreachable
    assert failure is not None
    raise failure


async def keep_federation_fresh(
    database: Database,
    *,
    settings: Settings,
    clock: Callable[[], datetime],
    http: httpx.Client | None = None,
) -> None:
    """Sync at once, then every ``federation_refresh_seconds``, until cancelled.

    Failures are logged and the held copy is kept; nothing here blocks start-up (run it
    as a task). The blocking work runs in a thread so requests are served meanwhile.
    """
    own = http is None
    client = http or httpx.Client(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False)
    try:
        while True:
            def once() -> None:
                claims = sync_federation(database, settings=settings, http=client,
                                         now=int(clock().timestamp()))
                _log.info("federation list version %d held", claims.version)

            try:
                await asyncio.to_thread(once)
            except DomainError as error:
                _log.warning("federation list not refreshed: %s: %s", error.code, error.detail)
            except Exception:  # a bug must not end the loop: the next round may work
                _log.exception("federation list refresh failed")
            await asyncio.sleep(settings.federation_refresh_seconds)
    finally:
        if own:
            client.close()
