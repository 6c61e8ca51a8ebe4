"""RFC 9457 problem+json for every error, with a stable ``code``; a domain error's HTTP
status is its class's ``status``. A 500 is only ever a bug: it is logged and answered
without details.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from cardsvc.api._request_id import REQUEST_ID
from cardsvc.api.deps import refused_before_validation
from cardsvc.services.errors import DomainError

__all__ = ["PROBLEM_MEDIA_TYPE", "install_error_handlers", "problem"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_log = logging.getLogger("cardsvc.api")

_CODE_BY_HTTP_STATUS = {
    400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 406: "NOT_ACCEPTABLE", 413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE", 422: "VALIDATION_FAILED", 429: "TOO_MANY_REQUESTS",
}


def problem(
    status: int, code: str, detail: str = "", *, headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
        "detail": detail or HTTPStatus(status).description,
    }
    body.update(extra)
    request_id = REQUEST_ID.get()
    if request_id is not None:
        body["request_id"] = request_id  # the same id as the X-Request-ID header and the log
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE,
                        headers=headers)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = exc.status
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return problem(status, exc.code, exc.detail, headers=headers, **exc.extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    refusal = await refused_before_validation(request)
    if refusal is not None:  # a bad token is refused before the body is judged
        return await _domain_error(request, refusal)
    # Locations and reasons only: the rejected values may be secrets or personal data.
    errors = [
        {"loc": [str(part) for part in error.get("loc", ())], "type": error.get("type", ""),
         "msg": error.get("msg", "")}
        for error in exc.errors()
    ]
    return problem(422, "VALIDATION_FAILED", "the request does not match the schema",
                   errors=errors)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODE_BY_HTTP_STATUS.get(exc.status_code, "HTTP_ERROR")
    detail = exc.detail if isinstance(exc.detail, str) else ""
    return problem(exc.status_code, code, detail,
                   headers=None if exc.headers is None else dict(exc.headers))


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    _log.error("database error: %s", type(exc).__name__, exc_info=exc)
    return problem(503, "DATABASE_UNAVAILABLE", "the database could not complete the request",
                   headers={"Retry-After": "1"})


async def _bug(_request: Request, exc: Exception) -> JSONResponse:
    _log.error("unhandled error", exc_info=exc)
    return problem(500, "INTERNAL_ERROR", "an unexpected error occurred; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    # Every pooled connection busy (e.g. all waiting on a database that went silent).
    app.add_exception_handler(PoolTimeout, _database_error)
    app.add_exception_handler(Exception, _bug)
