"""P11.3: what verifiers sync, served from memory: the trust list, a status list and the
signed timestamp (full bodies and 304s on a matching ETag), each beside ``GET /v1/health``
on the same ``cardsvc serve`` process at the same concurrency (p50, p99, requests/s).

A real server process on PostgreSQL (durable), 1 and 8 clients, each on its own keep-alive
connection. The goal: within 1.2x health at p50 and p99.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench._table import BenchRow
from bench._threads import run_released

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS / "payments"), str(_TESTS / "cardsvc"), str(_TESTS)]
from payments_kit import served_by_a_process  # noqa: E402

LEVELS = (1, 8)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _drive(url: str, path: str, headers: dict[str, str], expected: int, concurrency: int,
           total: int) -> tuple[float, list[float]]:
    lock = threading.Lock()
    remaining = [total]
    latencies: list[float] = []
    barrier = threading.Barrier(concurrency + 1)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60, headers=headers) as http:
            barrier.wait()
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                started = time.perf_counter()
                answer = http.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.status_code == expected, (path, answer.status_code)
                with lock:
                    latencies.append(elapsed)

    return total / run_released(concurrency, lambda _client: client(), barrier), latencies


def run(quick: bool = False) -> list[BenchRow]:
    total = 400 if quick else 3000
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="fmc-bench-pub-") as tmp, \
            served_by_a_process("postgresql", Path(tmp), durable=True) as (server, _world):
        url = server.url
        list_id = httpx.get(url + "/v1/status-lists").json()["status_lists"][0]["id"]
        targets = {"trust list": "/v1/trust-list",
                   f"status list {list_id}": f"/v1/status-lists/{list_id}",
                   "timestamp": "/v1/timestamp"}
        etags = {name: httpx.get(url + path).headers["etag"] for name, path in targets.items()}
        for concurrency in LEVELS:
            clients = f"{concurrency} client{'s' if concurrency > 1 else ''}"
            _drive(url, "/v1/health", {}, 200, concurrency, 100)  # warm up
            for name, path in targets.items():
                for conditional in (False, True):
                    headers = {"If-None-Match": etags[name]} if conditional else {}
                    # interleaved with its own floor run, so both see the same machine
                    floor_rate, floor = _drive(url, "/v1/health", {}, 200, concurrency, total)
                    rate, lat = _drive(url, path, headers, 304 if conditional else 200,
                                       concurrency, total)
                    label = f"publication: GET {name}{' (304)' if conditional else ''}, {clients}"
                    health = f"GET /v1/health, {clients}"
                    rows += [
                        BenchRow(f"{label}: p50", statistics.median(lat), "ms",
                                 f"{health}, p50", statistics.median(floor)),
                        BenchRow(f"{label}: p99", _pct(lat, 0.99), "ms", f"{health}, p99",
                                 _pct(floor, 0.99)),
                        BenchRow(f"{label}: requests/s", rate, "requests/s", health,
                                 floor_rate),
                    ]
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row.name:<60} {row.value:>10.2f} {row.unit:<10} | {row.floor_name:<32} "
              f"{row.floor_value:>10.2f}  x{row.ratio}")
