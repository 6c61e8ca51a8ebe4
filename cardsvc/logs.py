"""Where the authority's log lines go: one line per event, JSON by default, set once per
process (``cardsvc serve``, every uvicorn worker, ``make run``'s demo).

A JSON line carries the request's fields when it has them (``request_id``, ``method``,
``route``, ``status``, ``duration_ms``); ``CARDSVC_LOG_FORMAT=text`` prints the same as
plain words. Nothing logs a token, passport number, pay or provisioning code: the
request line names the route template, never the raw path, query, headers or body.

Example::

    configure_logging("json")
    # {"ts": "2027-01-15T08:00:00.123Z", "level": "INFO", "logger": "cardsvc.access",
    #  "message": "POST /v1/persons 201 12.3 ms", "request_id": "9f0c...", ...}
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

__all__ = ["LOG_FORMAT", "JsonLines", "configure_logging"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_REQUEST_FIELDS = ("request_id", "method", "route", "status", "duration_ms")


class JsonLines(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _REQUEST_FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__  # the type only: no values, no paths
        return json.dumps(line, ensure_ascii=False)


def configure_logging(log_format: str = "json") -> None:
    """Send INFO and above to stderr in ``json`` or ``text``; a second call changes nothing."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
