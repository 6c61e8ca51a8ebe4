"""Where the authority's log lines go: one format, set once per process.

``cardsvc serve``, ``make run``'s demo and every uvicorn worker process call
:func:`configure_logging`; a second call changes nothing.

Example::

    configure_logging()
    # 2027-01-15 08:00:00,123 INFO cardsvc.access POST /v1/persons 201 12.3 ms
"""

from __future__ import annotations

import logging

__all__ = ["LOG_FORMAT", "configure_logging"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
