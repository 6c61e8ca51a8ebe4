"""P5: charges per second and p50/p99 latency with 1, 8 and 32 concurrent terminals, on
SQLite and on PostgreSQL, each beside ``GET /v1/health`` on the same server at the same
concurrency (the floor: HTTP through uvicorn and FastAPI, no database, no signing).

A real ``cardsvc serve`` process with durable settings (SQLite WAL synchronous FULL;
PostgreSQL with synchronous_commit on). Each terminal has its own token and connection
and charges its own share of the cards (1 fen each, fresh pay codes), so the figures
show the per-charge work (verify the pay code, lock the card's balance row, the
double-entry posting, the signed receipt, the idempotency record) rather than queueing
on one card. One charge is one request.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench._table import BenchRow

_TESTS = Path(__file__).resolve().parent.parent / "tests"
# payments_kit builds on cardsvc_kit and the shared test kit
sys.path[:0] = [str(_TESTS / "payments"), str(_TESTS / "cardsvc"), str(_TESTS)]
from payments_kit import (  # noqa: E402
    FreshCodes,
    PayCard,
    PayWorld,
    TerminalHandle,
    served_by_a_process,
)

LEVELS = (1, 8, 32)
TOPUP = 10_000_000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _drive(
    world: PayWorld, tills: list[TerminalHandle], cards: list[PayCard], used: set[tuple[str, int]],
    concurrency: int, total: int, charge: bool,
) -> tuple[float, list[float]]:
    """(requests per second, latencies in ms): ``concurrency`` terminals share ``total``."""
    lock = threading.Lock()
    remaining = [total]
    latencies: list[float] = []
    barrier = threading.Barrier(concurrency + 1)

    def terminal(i: int) -> None:
        till = tills[i]
        codes = FreshCodes(cards[i::concurrency], used)
        with httpx.Client(base_url=world.url, timeout=60, headers=till.headers) as client:
            barrier.wait()
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                if charge:
                    _, code = codes.next()
                    body = {"pay_code": code, "amount_fen": 1,
                            "idempotency_key": f"b{time.monotonic_ns()}-{i}"}
                    started = time.perf_counter()
                    answer = client.post("/v1/payments", json=body)
                    expected = 201
                else:
                    started = time.perf_counter()
                    answer = client.get("/v1/health")
                    expected = 200
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.status_code == expected, answer.text
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=terminal, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return total / (time.perf_counter() - started), latencies


def _backend(backend: str, quick: bool) -> list[BenchRow]:
    per_level = 64 if quick else 480
    card_count = 32 if quick else 96
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="fmc-bench-pay-") as tmp, \
            served_by_a_process(backend, Path(tmp), durable=True) as (_server, world):
        tills = world.terminals(world.merchant("Bench Market"), max(LEVELS))
        with ThreadPoolExecutor(8) as pool:
            cards = list(pool.map(lambda _: world.card(topup=TOPUP), range(card_count)))
        used: set[tuple[str, int]] = set()

        def run(concurrency: int, total: int, charge: bool) -> tuple[float, list[float]]:
            return _drive(world, tills, cards, used, concurrency, total, charge)

        run(4, 16, True)  # warm up
        for concurrency in LEVELS:
            floor_rate, floor_lat = run(concurrency, per_level * 2, False)
            rate, lat = run(concurrency, per_level, True)
            label = f"payments {backend}, {concurrency} terminal{'s' if concurrency > 1 else ''}"
            floor = f"GET /v1/health, {concurrency} client{'s' if concurrency > 1 else ''}"
            rows += [
                BenchRow(f"{label}: charges", rate, "charges/s", floor, floor_rate),
                BenchRow(f"{label}: p50 latency", statistics.median(lat), "ms",
                         f"{floor}, p50", statistics.median(floor_lat)),
                BenchRow(f"{label}: p99 latency", _pct(lat, 0.99), "ms", f"{floor}, p99",
                         _pct(floor_lat, 0.99)),
            ]
        check = world.ledger()
        assert check.ok, check
    return rows


def run(quick: bool = False) -> list[BenchRow]:
    return _backend("sqlite", quick) + _backend("postgresql", quick)


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row.name:<52} {row.value:>10.2f} {row.unit:<10} | {row.floor_name:<32} "
              f"{row.floor_value:>10.2f}  x{row.ratio}")
