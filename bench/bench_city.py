"""A whole city, measured: issue Yiwu's 24,591 cards (the 2017 total) over HTTP with 16
clients, on SQLite and on PostgreSQL, then check what the database holds.

Not part of the default ``make bench`` (about a quarter of an hour on two cores); run it
with ``make bench-city`` or ``python -m bench city``. Each card is one enrolment, one
issuance and one provisioning (three requests, three authority signatures), exactly as
``bench_issuance``; that benchmark projects this figure from 800 operations, this one
does all of them. The floor is ``GET /v1/health`` on the same server with the same
clients, scaled to the same number of requests, sampled before the run and after it: the
faster of the two is the floor (one sample taken in a slow minute once made the city look
a third better than it was). PostgreSQL is served as it is deployed,
one uvicorn worker per core; SQLite by one worker (its writers share one file lock).
"""

from __future__ import annotations

import os
import sys

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench._table import BenchRow
from bench.bench_issuance import (
    CLIENTS,
    YIWU_CARDS_2017,
    _health,
    _operation,
    _run,
    running_authority,
    served_by,
)
from cardsvc.db import Database
from cardsvc.models import Card, Person
from cardsvc.services.audit import ChainCheck, verify_chain

_HEALTH_SAMPLE = 6000  # health requests timed for the floor, scaled to 3 per card


def _census(session: Session) -> tuple[int, int, ChainCheck]:
    persons = session.scalar(select(func.count()).select_from(Person)) or 0
    cards = session.scalar(select(func.count()).select_from(Card)) or 0
    return persons, cards, verify_chain(session)


def _city(backend: str, cards: int, workers: int = 1) -> list[BenchRow]:
    with running_authority(backend, "bench_city", workers=workers) as (server, token, settings):
        before, _ = _run(server.url, token, _health, CLIENTS, _HEALTH_SAMPLE, "H")
        rate, _latencies = _run(server.url, token, _operation, CLIENTS, cards, "CITY")
        after, _ = _run(server.url, token, _health, CLIENTS, _HEALTH_SAMPLE, "H")
        health_rate = max(before, after)
        database = Database.from_settings(settings)
        try:
            persons, issued, chain = database.transact(_census, readonly=True)
        finally:
            database.dispose()
    label = (f"issuing Yiwu's {cards:,} cards, {backend}, {CLIENTS} clients"
             f"{served_by(workers)} (measured)")
    return [
        BenchRow(label, cards / rate, "s",
                 f"{3 * cards:,} x GET /v1/health, {CLIENTS} clients{served_by(workers)}"
                 " (scaled)",
                 3 * cards / health_rate),
        BenchRow(f"city run {backend}: persons with a card afterwards",
                 float(min(persons, issued)), "cards", "cards requested", float(cards)),
        BenchRow(f"city run {backend}: audit entries verified afterwards",
                 float(chain.entries if chain.ok else 0), "entries",
                 "state changes made (3 per card, plus setup)", float(3 * cards)),
    ]


def run(quick: bool = False) -> list[BenchRow]:
    cards = 400 if quick else YIWU_CARDS_2017
    return _city("sqlite", cards) + _city("postgresql", cards, workers=os.cpu_count() or 1)


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row.name:<72} {row.value:>10.2f} {row.unit:<6} | {row.floor_name:<44} "
              f"{row.floor_value:>10.2f}  x{row.ratio}")
