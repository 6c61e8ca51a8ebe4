"""What operators watch, in Prometheus text format (``GET /metrics``).

Counters and histograms are kept in this process (one registry; under ``--workers N``
each worker writes to ``PROMETHEUS_MULTIPROC_DIR`` and a scrape adds them up). Gauges
that describe the authority rather than a process -- the age of the published lists,
the audit head, the database pool -- are read at scrape time.

No label ever holds personal data: routes are templates, outcomes are codes.

Example::

    HTTP_REQUESTS.labels("POST", "/v1/payments", "201").inc()
    body, media_type = render(database=database, now=time.time())
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.models import AuditHead, StatusListRecord, TrustState
from schemas.status_list import day_list_retired

__all__ = ["CHARGES", "CHARGES_ON_LOOP", "HTTP_LATENCY", "HTTP_REQUESTS", "OFFLINE_ITEMS", "render"]

HTTP_REQUESTS = Counter("fmc_http_requests", "HTTP requests answered",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("fmc_http_request_duration_seconds", "Time to answer a request",
                         ["method", "route"],
                         buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
CHARGES = Counter("fmc_charges", "Online charges by outcome (OK or the refusal code)",
                  ["outcome"])
CHARGES_ON_LOOP = Counter("fmc_charges_on_loop", "Accepted online charges made on the event"
                          " loop in two statements (the rest of outcome OK took the general"
                          " path)")
OFFLINE_ITEMS = Counter("fmc_offline_items",
                        "Offline payments uploaded, by outcome (settled, double_spend, refused)"
                        " and code", ["outcome", "code"])


class _AuthorityCollector(Collector):
    """Gauges read from the database when scraped."""

    def __init__(self, database: Database, now: float) -> None:
        self.database, self.now = database, now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        age = GaugeMetricFamily("fmc_list_publication_age_seconds",
                                "Seconds since each published list was signed", labels=["list"])
        head = GaugeMetricFamily("fmc_audit_head_sequence", "Sequence of the audit chain's head")
        def read(session: Session) -> None:
            trust = session.get(TrustState, 1)
            if trust is not None and trust.issued_at:
                age.add_metric(["trust"], self.now - trust.issued_at)
            for list_id, signed_at in session.execute(
                    select(StatusListRecord.id, StatusListRecord.signed_at)):
                if signed_at and not day_list_retired(list_id, int(self.now)):  # no longer signed
                    age.add_metric([f"status/{list_id}"], self.now - signed_at)
            audit = session.get(AuditHead, 1)
            head.add_metric([], float(audit.seq if audit is not None else 0))

        self.database.transact(read, readonly=True)
        yield age
        yield head
        pool = self.database.engine.pool
        in_use = GaugeMetricFamily("fmc_db_pool_connections_in_use",
                                   "Database connections checked out of this process's pool")
        checked_out = getattr(pool, "checkedout", None)
        in_use.add_metric([], float(checked_out() if callable(checked_out) else 0))
        yield in_use


def render(*, database: Database, now: float) -> tuple[bytes, str]:
    """The exposition text and its media type."""
    registry = CollectorRegistry()
    multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiprocess_dir:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    else:
        for metric in (HTTP_REQUESTS, HTTP_LATENCY, CHARGES, CHARGES_ON_LOOP, OFFLINE_ITEMS):
            registry.register(metric)
    registry.register(_AuthorityCollector(database, now))
    return generate_latest(registry), CONTENT_TYPE_LATEST
