"""P2: enrolment + issue + provision over HTTP on SQLite and PostgreSQL, one client and 16.

Each figure sits beside ``GET /v1/health`` on the same server in the same run (the cost
of an HTTP round trip through uvicorn and FastAPI with no database and no signing). One
operation is three requests: enrol a new person, issue a card, redeem its code with a
device key and proof (three Ed25519 signatures by the authority). The time to issue
Yiwu's 24,591 cards (the 2017 total) is projected from the 16-client rate.

PostgreSQL, the production database, is measured twice: with one uvicorn worker, and as
it is deployed, one worker per core (``cardsvc serve --workers N``; the health floor is
then measured on that same server). SQLite runs one worker: its writers share one file
lock, so more processes only queue on it (``cardsvc serve`` warns).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench._table import BenchRow
from bench._threads import run_released
from cardsvc.services.bootstrap import initialise
from cardsvc.settings import Settings, get_settings
from keys import Ed25519Signer

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS / "cardsvc"), str(_TESTS)]  # cardsvc_kit builds on the test kit
from cardsvc_kit import provision_request, server_env  # noqa: E402
from kit.names import in_letters  # noqa: E402
from kit.postgres import pg_create, pg_drop, pg_url, unique_name  # noqa: E402
from kit.processes import CardsvcServer  # noqa: E402

YIWU_CARDS_2017 = 24_591
CLIENTS = 16


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = 0

    def next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n


def _operation(client: httpx.Client, n: int, prefix: str) -> None:
    person = client.post("/v1/persons", json={
        "surname": "BENCH", "given_names": f"Holder {in_letters(n)}", "nationality": "NGA",
        "birth_date": f"19{60 + n % 40:02d}-0{1 + n % 9}-1{n % 10}", "sex": "F",
        "confirm_new": True,
        "passport": {"number": f"{prefix}{n:08d}", "country": "NGA", "expires": "2032-01-01"}})
    assert person.status_code == 201, person.text
    issued = client.post("/v1/cards", json={
        "foreigner_code": person.json()["foreigner_code"], "valid_until": "2030-12-31",
        "entitlements": ["healthcare", "education", "payment"]})
    assert issued.status_code == 201, issued.text
    device = Ed25519Signer.generate(kid="device")
    bundle = client.post("/v1/provision",
                         json=provision_request(issued.json()["provisioning_code"], device))
    assert bundle.status_code == 200, bundle.text


def _health(client: httpx.Client, _n: int, _prefix: str) -> None:
    assert client.get("/v1/health").status_code == 200


def _run(url: str, token: str, work: Callable[[httpx.Client, int, str], None], clients: int,
         total: int, prefix: str) -> tuple[float, list[float]]:
    """(operations per second, latencies in ms) with ``clients`` threads sharing ``total``."""
    counter = _Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            barrier.wait()
            while (n := counter.next()) <= total:
                started = time.perf_counter()
                work(client, n, prefix)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)

    return total / run_released(clients, lambda _client: client_loop(), barrier), latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def running_authority(backend: str, purpose: str, *,
                      workers: int = 1) -> Iterator[tuple[CardsvcServer, str, Settings]]:
    """A freshly initialised authority served by ``cardsvc serve`` (``workers`` processes)
    on SQLite or a new PostgreSQL database: (server, admin token, settings); everything
    is removed after."""
    with tempfile.TemporaryDirectory(prefix=f"fmc-{purpose}-") as tmp:
        data_dir = Path(tmp) / "data"
        pg_name = unique_name(purpose) if backend == "postgresql" else None
        url = f"sqlite:///{data_dir / 'cardsvc.db'}"
        if pg_name is not None:
            pg_create(pg_name)
            url = pg_url(pg_name)
        server = None
        try:
            env = server_env(url if pg_name else None)
            settings = get_settings(data_dir=data_dir, database_url=url,
                                    key_passphrase=env["CARDSVC_KEY_PASSPHRASE"])
            token = initialise(settings, now=datetime.now(UTC)).admin_token
            assert token is not None
            server = CardsvcServer(data_dir, env, args=("--workers", str(workers))).start()
            yield server, token, settings
        finally:
            if server is not None:
                server.stop()
            if pg_name is not None:
                pg_drop(pg_name)


def served_by(workers: int) -> str:
    """What a row's name adds for a server of several workers (nothing for one)."""
    return "" if workers == 1 else f", {workers} workers"


def _backend(backend: str, quick: bool, workers: int = 1) -> list[BenchRow]:
    single, concurrent = (20, 96) if quick else (150, 800)
    with running_authority(backend, "bench_issuance", workers=workers) as (server, token, _):
        # Warm up every worker: its connections, its prepared statements, its caches.
        _run(server.url, token, _operation, 4, 8 * workers, f"W{workers}X")
        rows = []
        for clients, total in ((1, single), (CLIENTS, concurrent)):
            floor_rate, floor_lat = _run(server.url, token, _health, clients, total * 3, "H")
            rate, lat = _run(server.url, token, _operation, clients, total,
                             f"C{clients}W{workers}X")
            label = (f"issuance {backend}, {clients} client{'s' if clients > 1 else ''}"
                     f"{served_by(workers)}")
            floor = (f"GET /v1/health, {clients} client{'s' if clients > 1 else ''}"
                     f"{served_by(workers)}")
            rows += [
                BenchRow(f"{label}: enrol+issue+provision", rate, "ops/s",
                         f"{floor} (/3: 3 requests per op)", floor_rate / 3),
                BenchRow(f"{label}: p50 latency", statistics.median(lat), "ms",
                         f"{floor} x3, p50", 3 * statistics.median(floor_lat)),
                BenchRow(f"{label}: p99 latency", _pct(lat, 0.99), "ms",
                         f"{floor} x3, p99", 3 * _pct(floor_lat, 0.99)),
            ]
            if clients == CLIENTS:
                rows.append(BenchRow(
                    f"issuing Yiwu's {YIWU_CARDS_2017:,} cards, {backend}, {clients} "
                    f"clients{served_by(workers)} (projected)", YIWU_CARDS_2017 / rate, "s",
                    f"{YIWU_CARDS_2017 * 3:,} x {floor}", YIWU_CARDS_2017 * 3 / floor_rate))
        return rows


def run(quick: bool = False) -> list[BenchRow]:
    rows = _backend("sqlite", quick) + _backend("postgresql", quick)
    cores = os.cpu_count() or 1
    if cores > 1:
        rows += _backend("postgresql", quick, workers=cores)
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row.name:<66} {row.value:>10.2f} {row.unit:<6} | {row.floor_name:<44} "
              f"{row.floor_value:>10.2f}  x{row.ratio}")
