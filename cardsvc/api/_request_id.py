"""The request id: taken from a sane ``X-Request-ID`` or made, echoed in the answer's
header, every problem+json body and the request's log line, so one id ties a user's
report, the server's log and the operator's trace together."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

__all__ = ["REQUEST_ID", "REQUEST_ID_HEADER", "accept_or_make"]

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID: ContextVar[str | None] = ContextVar("fmc_request_id", default=None)
# A client's id is echoed into logs and bodies: only short, plain tokens are kept
# (no spaces, quotes, control characters or markup), anything else gets a new id.
_SANE = re.compile(r"[A-Za-z0-9._-]{8,64}")


def accept_or_make(unverified_header: bytes | None) -> str:
    if unverified_header is not None:
        try:
            text = unverified_header.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if _SANE.fullmatch(text):
            return text
    return uuid.uuid4().hex
