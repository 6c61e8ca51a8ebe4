"""P11.3: what verifiers sync, served from memory: the trust list, a status list and the
signed timestamp (full bodies and 304s on a matching ETag), each beside ``GET /v1/health``
on the same ``cardsvc serve`` process at the same concurrency (p50, p99, requests/s).

A real server process on PostgreSQL (durable), 1 and 8 clients, each on its own keep-alive
connection. Each target and its health floor take turns in short rounds (6000 requests
each, so p99 is the 60th worst, not noise). The goal: within 1.2x health at p50 and p99.

The clients speak HTTP through the standard library (``KeepAliveClient``), targets and
floor alike. Through httpx (~1.2 ms of CPU a request) 8 client threads were the
bottleneck themselves: one GIL for all 8 at ~2,300 requests/s, so the p99s measured the
bench's own queue (targets 1.40-1.54x health, whose slower thread-pool answers spaced the
clients out); with the light client targets ran at ~5,000 requests/s and 0.52-0.65x
health at p50 and p99 (bench/findings.md round 8).
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
from bench._threads import KeepAliveClient, run_released

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS / "payments"), str(_TESTS / "cardsvc"), str(_TESTS)]
from payments_kit import served_by_a_process  # noqa: E402

LEVELS = (1, 8)
ROUNDS = 12  # the target and its health floor take turns, so both see the same machine


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class _Conditional:
    """The ETag a verifier last saw: sent as If-None-Match, replaced when a 200 brings a
    new one (a list may be re-signed during a run: the status list every ttl/2)."""

    def __init__(self, etag: str | None) -> None:
        self.etag = etag
        self.lock = threading.Lock()

    def headers(self) -> dict[str, str]:
        return {} if self.etag is None else {"If-None-Match": self.etag}

    def saw(self, status: int, etag: str | None) -> None:
        if self.etag is not None and status == 200 and etag is not None:
            with self.lock:
                self.etag = etag


def _drive(url: str, path: str, conditional: _Conditional, concurrency: int,
           total: int) -> tuple[float, list[float]]:
    lock = threading.Lock()
    remaining = [total]
    latencies: list[float] = []
    barrier = threading.Barrier(concurrency + 1)
    expected = {304, 200} if conditional.etag is not None else {200}

    def client() -> None:
        with KeepAliveClient(url) as http:
            barrier.wait()
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                headers = conditional.headers()
                started = time.perf_counter()
                status, _body, answer_headers = http.fetch("GET", path, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                assert status in expected, (path, status)
                conditional.saw(status, answer_headers.get("etag"))
                with lock:
                    latencies.append(elapsed)

    return run_released(concurrency, lambda _client: client(), barrier), latencies


def _interleaved(url: str, path: str, conditional: _Conditional, concurrency: int,
                 total: int) -> tuple[tuple[float, list[float]], tuple[float, list[float]]]:
    """(requests/s, latencies) of ``path`` and of health, run in alternating rounds."""
    seconds = {"target": 0.0, "health": 0.0}
    latencies: dict[str, list[float]] = {"target": [], "health": []}
    share = max(1, total // ROUNDS)
    for _ in range(ROUNDS):
        for name, (route, condition) in (("health", ("/v1/health", _Conditional(None))),
                                         ("target", (path, conditional))):
            spent, lat = _drive(url, route, condition, concurrency, share)
            seconds[name] += spent
            latencies[name] += lat
    done = share * ROUNDS
    return ((done / seconds["target"], latencies["target"]),
            (done / seconds["health"], latencies["health"]))


def run(quick: bool = False) -> list[BenchRow]:
    total = 480 if quick else 6000
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="fmc-bench-pub-") as tmp, \
            served_by_a_process("postgresql", Path(tmp), durable=True) as (server, _world):
        url = server.url
        list_id = httpx.get(url + "/v1/status-lists").json()["status_lists"][0]["id"]
        targets = {"trust list": "/v1/trust-list",
                   f"status list {list_id}": f"/v1/status-lists/{list_id}",
                   "timestamp": "/v1/timestamp"}
        for concurrency in LEVELS:
            clients = f"{concurrency} client{'s' if concurrency > 1 else ''}"
            _drive(url, "/v1/health", _Conditional(None), concurrency, 200)  # warm up
            for name, path in targets.items():
                for conditional in (False, True):
                    # One GET first, like health's warm-up: the row then measures polling,
                    # not the read after an idle spell (8 clients waiting for it were the
                    # 5th worst of a --quick row's 480, i.e. its p99).
                    seen = httpx.get(url + path).headers["etag"]
                    etag = seen if conditional else None
                    (rate, lat), (floor_rate, floor) = _interleaved(
                        url, path, _Conditional(etag), concurrency, total)
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
