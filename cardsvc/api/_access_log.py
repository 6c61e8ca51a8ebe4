"""One log line per request: method, route template, status, duration (docs/DESIGN.md section 9).

The line names the route template (``/v1/cards/{card_number}/revoke``), never the raw path
or query string: paths carry card numbers and foreigner codes, and no header, body or query
value (tokens, passport numbers, provisioning and pay codes) is ever read here. This
middleware is the single seam for request logging; structured JSON and request ids belong
in :func:`access_line` and the logger's formatter, not in the routes.

Example::

    app.add_middleware(AccessLog)      # outermost: it also sees 413s and 500s
    # cardsvc.access INFO POST /v1/cards/{card_number}/revoke 200 3.1 ms
"""

from __future__ import annotations

import logging
import time

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardsvc.api._request_id import REQUEST_ID, accept_or_make
from cardsvc.metrics import HTTP_LATENCY, HTTP_REQUESTS

__all__ = ["ACCESS_LOGGER", "AccessLog", "access_line"]

ACCESS_LOGGER = logging.getLogger("cardsvc.access")
_UNMATCHED = "<no-route>"


def access_line(*, method: str, route: str, status: int, duration_ms: float) -> str:
    """The words of one access line (the seam a structured formatter will replace)."""
    return f"{method} {route} {status} {duration_ms:.1f} ms"


def _route_template(routes: list[BaseRoute], scope: Scope) -> str:
    # The raw path may carry personal data; a path that matches no route is logged as such.
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        template = str(getattr(route, "path_format", getattr(route, "path", _UNMATCHED)))
        if match is Match.FULL:
            return template
        if match is Match.PARTIAL and partial is None:
            partial = template  # right path, wrong method (405)
    return partial or _UNMATCHED


class AccessLog:
    """ASGI middleware writing one ``cardsvc.access`` INFO line per HTTP request."""

    def __init__(self, app: ASGIApp, *, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering
        request_id = accept_or_make(next(
            (value for name, value in scope.get("headers", ()) if name == b"x-request-id"),
            None))
        token = REQUEST_ID.set(request_id)

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(name, value) for name, value in message.get("headers", [])
                           if name.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            REQUEST_ID.reset(token)
            seconds = time.perf_counter() - started
            method, route = str(scope["method"]), _route_template(self.routes, scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(seconds)
            ACCESS_LOGGER.info(
                access_line(method=method, route=route, status=status,
                            duration_ms=seconds * 1000),
                extra={"request_id": request_id, "method": method, "route": route,
                       "status": status, "duration_ms": round(seconds * 1000, 3)})
