"""Refuse request bodies over a size cap before they are buffered (413 problem+json)."""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardsvc.api._request_id import REQUEST_ID

__all__ = ["BodyLimit"]


class _TooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, "the request body is too large")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    await _refuse(send, 413 if declared > self.max_bytes else 400)
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPExceptions met while reading the body.
                    raise _TooLarge()
            return message

        await self.app(scope, limited, send)


async def _refuse(send: Send, status: int) -> None:
    code = "REQUEST_TOO_LARGE" if status == 413 else "BAD_REQUEST"
    problem = {"type": "about:blank", "title": "request refused", "status": status,
               "code": code, "detail": "bad or too large request body"}
    request_id = REQUEST_ID.get()
    if request_id is not None:
        problem["request_id"] = request_id
    body = json.dumps(problem).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
