"""P10: a cross-city charge beside a same-city charge on the same machine.

Yiwu and Hangzhou run as two ``cardsvc serve`` processes on two PostgreSQL databases
(durable), holding one national federation list. Yiwu terminals charge Hangzhou cards
(leg A to Yiwu, the outbox row committed, leg B a signed request to Hangzhou, which
charges and signs the receipt, then Yiwu's clearing transaction) and, as the floor, Yiwu
cards (the same-city path), at 1 and 8 concurrent terminals: charges/s, p50 and p99.
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
from bench._threads import run_released

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS / "payments"), str(_TESTS / "cardsvc"), str(_TESTS / "federation"),
                str(_TESTS)]
from interchange_processes_kit import two_city_processes  # noqa: E402
from payments_kit import FreshCodes, PayCard, PayWorld, TerminalHandle  # noqa: E402

LEVELS = (1, 8)
TOPUP = 10_000_000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _drive(acquirer: PayWorld, tills: list[TerminalHandle], cards: list[PayCard],
           used: set[tuple[str, int]], concurrency: int, total: int) -> tuple[float, list[float]]:
    lock = threading.Lock()
    remaining = [total]
    latencies: list[float] = []
    barrier = threading.Barrier(concurrency + 1)

    def terminal(i: int) -> None:
        codes = FreshCodes(cards[i::concurrency], used)
        with httpx.Client(base_url=acquirer.url, timeout=60,
                          headers=tills[i].headers) as client:
            barrier.wait()
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                _, code = codes.next()
                body = {"pay_code": code, "amount_fen": 1,
                        "idempotency_key": f"b{time.monotonic_ns()}-{i}"}
                started = time.perf_counter()
                answer = client.post("/v1/payments", json=body)
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.status_code == 201, answer.text
                with lock:
                    latencies.append(elapsed)

    return total / run_released(concurrency, terminal, barrier), latencies


def run(quick: bool = False) -> list[BenchRow]:
    per_level = 48 if quick else 320
    card_count = 16 if quick else 64
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="fmc-bench-ic-") as tmp, \
            two_city_processes(Path(tmp)) as (yw, hz):
        tills = yw.world.terminals(yw.world.merchant("Bench Market"), max(LEVELS))
        with ThreadPoolExecutor(8) as pool:
            foreign = list(pool.map(lambda _: hz.world.card(topup=TOPUP), range(card_count)))
            local = list(pool.map(lambda _: yw.world.card(topup=TOPUP), range(card_count)))
        used: set[tuple[str, int]] = set()
        _drive(yw.world, tills, foreign, used, 4, 16)  # warm up both paths
        _drive(yw.world, tills, local, used, 4, 16)
        for concurrency in LEVELS:
            floor_rate, floor_lat = _drive(yw.world, tills, local, used, concurrency,
                                           per_level)
            rate, lat = _drive(yw.world, tills, foreign, used, concurrency, per_level)
            label = f"cross-city charge pg, {concurrency} terminal" + (
                "s" if concurrency > 1 else "")
            floor = f"same-city charge, {concurrency} terminal" + (
                "s" if concurrency > 1 else "")
            rows += [
                BenchRow(f"{label}: charges", rate, "charges/s", floor, floor_rate),
                BenchRow(f"{label}: p50 latency", statistics.median(lat), "ms",
                         f"{floor}, p50", statistics.median(floor_lat)),
                BenchRow(f"{label}: p99 latency", _pct(lat, 0.99), "ms", f"{floor}, p99",
                         _pct(floor_lat, 0.99)),
            ]
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row.name:<48} {row.value:>10.2f} {row.unit:<10} | {row.floor_name:<32} "
              f"{row.floor_value:>10.2f}  x{row.ratio}")
