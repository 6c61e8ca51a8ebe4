"""FastAPI app of the counter page. See the package docstring."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from verifier.cache import CacheError, portrait_digest_from_text
from verifier.checkpoint import CheckOutcome, Checkpoint, UnknownService, portrait_name
from verifier.messages import (
    ENTITLEMENT_NAMES,
    FIELD_LABELS,
    SCAN_AGAIN,
    SERVICE_NAMES,
    reason,
    verdict,
)
from verifier.policy import POLICIES
from verifier.qr import MAX_IMAGE_BYTES, ScanError, decode_qr
from verifier.replay_store import ReplayStoreError

_HERE = Path(__file__).resolve().parent
_MAX_BODY = MAX_IMAGE_BYTES + 64 * 1024
_MAX_TEXT = 8 * 1024
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:;"
        " style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none';"
        " base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}


def _problem(status: int, code: str, detail: str) -> JSONResponse:
    plain = reason(code)
    return JSONResponse(
        {"ok": False, "code": code, "detail": detail, "reason": {"en": plain.en, "zh": plain.zh}},
        status_code=status, headers={"Cache-Control": "no-store"},
    )


class _BadRequest(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def create_app(checkpoint: Checkpoint, *, clock: Callable[[], float] = time.time) -> FastAPI:
    """The counter page over ``checkpoint``; ``clock`` gives the time of each check."""
    app = FastAPI(title="FMC counter", docs_url=None, redoc_url=None, openapi_url=None)
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")

    @app.middleware("http")
    async def guard(request: Request,
                    call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method not in ("GET", "HEAD") and not _same_origin(request):
            response: Response = _problem(403, "CROSS_ORIGIN",
                                          "requests must come from the counter page itself")
        else:
            try:
                response = await call_next(request)
            except Exception:  # never a traceback to the page
                response = _problem(500, "INTERNAL", "internal error; see the server log")
        response.headers.update(_SECURITY_HEADERS)
        return response

    @app.exception_handler(_BadRequest)
    async def bad_request(request: Request, error: Exception) -> Response:
        assert isinstance(error, _BadRequest)
        return _problem(error.status, error.code, error.detail)

    @app.get("/", response_class=HTMLResponse)
    def page(service: str = "counter") -> HTMLResponse:
        selected = service if service in POLICIES else "counter"
        labels = {name: text._asdict() for name, text in FIELD_LABELS.items()}
        labels["accepted"] = verdict(True)._asdict()
        labels["refused"] = verdict(False)._asdict()
        labels["scan_again"] = SCAN_AGAIN._asdict()
        page_data = {
            "labels": labels,
            "entitlements": {k: v._asdict() for k, v in ENTITLEMENT_NAMES.items()},
            "services": {k: v._asdict() for k, v in SERVICE_NAMES.items()},
            "policies": {
                name: (None if policy.entitlement is None else policy.entitlement.value)
                for name, policy in POLICIES.items()
            },
        }
        html = templates.get_template("counter.html").render(
            services=[(name, SERVICE_NAMES[name]) for name in POLICIES if name in SERVICE_NAMES],
            selected=selected,
            labels=FIELD_LABELS,
            page_data=json.dumps(page_data, ensure_ascii=False),
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/status")
    def cache_status() -> Response:
        try:
            snapshot = checkpoint.snapshot()
        except CacheError as error:
            return _problem(503, error.code, error.detail)
        now = int(clock())
        return JSONResponse({
            "ok": True,
            "synced_at": snapshot.contents.synced_at,
            "cache_age_seconds": snapshot.age_seconds(now),
            "trust_list_version": snapshot.trust_list.version,
            "trust_list_expires_at": snapshot.trust_list.expires_at,
            "cache_fallback": snapshot.from_previous,
            "status_grace_seconds": checkpoint.status_grace,
            "timestamp_expires_at": (None if snapshot.state.timestamp is None
                                     else snapshot.state.timestamp.expires_at),
        }, headers={"Cache-Control": "no-store"})

    @app.post("/api/decode")
    async def decode(request: Request) -> Response:
        form = await _form(request)
        image = await _image(form.get("image"))
        if image is None:
            raise _BadRequest(400, "BAD_INPUT", "send the camera frame as 'image'")
        try:
            text = await run_in_threadpool(decode_qr, image)
        except ScanError as error:
            return _problem(422, error.code, error.detail)
        return JSONResponse({"ok": True, "text": text}, headers={"Cache-Control": "no-store"})

    @app.post("/api/check")
    async def check(request: Request) -> Response:
        form = await _form(request)
        service = form.get("service")
        if not isinstance(service, str):
            raise _BadRequest(400, "UNKNOWN_SERVICE", "choose a service")
        text = form.get("text")
        image = await _image(form.get("image"))
        if (image is None) == (not isinstance(text, str) or not text.strip()):
            raise _BadRequest(400, "BAD_INPUT", "send either 'text' or 'image'")
        now = int(clock())
        try:
            if image is not None:
                outcome = await run_in_threadpool(
                    lambda: checkpoint.check_image(image, service=service, now=now))
            else:
                assert isinstance(text, str)
                if len(text) > _MAX_TEXT:
                    raise _BadRequest(413, "BAD_INPUT", "text too long for a QR code")
                outcome = await run_in_threadpool(
                    lambda: checkpoint.check_text(text, service=service, now=now))
        except UnknownService as error:
            return _problem(400, error.code, str(error))
        except CacheError as error:
            return _problem(503, error.code, error.detail)
        except ReplayStoreError as error:
            return _problem(503, error.code, str(error))
        return JSONResponse(_answer(outcome), headers={"Cache-Control": "no-store"})

    @app.get("/api/portraits/{name}")
    def portrait(name: str) -> Response:
        digest = portrait_digest_from_text(name)
        image = None if digest is None else checkpoint.cache.portrait(digest)
        if image is None:
            return _problem(404, "NO_PORTRAIT", "no portrait with this digest in the cache")
        media = "image/png" if image.startswith(b"\x89PNG") else "image/jpeg"
        return Response(image, media_type=media, headers={"Cache-Control": "no-store"})

    return app


def _answer(outcome: CheckOutcome) -> dict[str, Any]:
    answer = outcome.to_json()
    credential = outcome.result.credential
    if outcome.portrait_source == "offline" and outcome.portrait is not None:
        # Opened from the sealed bundle for this code only: sent inline, never kept or
        # served by digest (the page cannot be asked for anyone not presented).
        answer["portrait_url"] = (f"data:{outcome.portrait_media_type};base64,"
                                  + base64.b64encode(outcome.portrait).decode("ascii"))
        return answer
    answer["portrait_url"] = (
        f"/api/portraits/{portrait_name(credential.portrait_digest)}"
        if outcome.portrait is not None and credential is not None
        and credential.portrait_digest is not None
        else None
    )
    return answer


def _same_origin(request: Request) -> bool:
    """A page on another site must not drive the counter (it would burn codes)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser cross-site request (curl, tests)
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


async def _form(request: Request) -> Any:
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise _BadRequest(411, "BAD_INPUT", "a Content-Length is required")
    if int(length) > _MAX_BODY:
        raise _BadRequest(413, "IMAGE_TOO_LARGE", f"uploads are limited to {_MAX_BODY} bytes")
    try:
        return await request.form(max_files=1, max_fields=4, max_part_size=_MAX_TEXT)
    except Exception as error:  # malformed multipart bodies raise several types
        raise _BadRequest(400, "BAD_INPUT", f"not a form upload ({type(error).__name__})") from None


async def _image(field: Any) -> bytes | None:
    if not isinstance(field, UploadFile):
        return None
    raw = await field.read(MAX_IMAGE_BYTES + 1)
    if len(raw) > MAX_IMAGE_BYTES:
        raise _BadRequest(413, "IMAGE_TOO_LARGE", "picture too large")
    return raw if raw else None
