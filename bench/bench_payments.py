"""P5: charges per second and p50/p99 latency with 1, 8 and 32 concurrent terminals, on
SQLite and on PostgreSQL, each beside ``GET /v1/health`` on the same server at the same
concurrency (the floor: HTTP through uvicorn and FastAPI, no database, no signing).

A real ``cardsvc serve`` process with durable settings (SQLite WAL synchronous FULL;
PostgreSQL with synchronous_commit on). Each terminal has its own token and connection
and charges its own share of the cards (1 fen each, fresh pay codes), so the figures
show the per-charge work (verify the pay code, lock the card's balance row, the
double-entry posting, the signed receipt, the idempotency record) rather than queueing
on one card. One charge is one request.

Then 1 terminal paying one-use codes (P13.3, what a phone shows; its credentials for the
day drawn with refills between charges, outside the timing), beside health requests made
in the same blocks. On PostgreSQL two more figures (P11): a second floor, the same SQL
an accepted charge issues (the read and the compare-and-set write of
cardsvc/payments/_loop_charge.py, each committing by itself) sent bare through psycopg
by the same number of threads, each on its own connection; and charges/s at 8 terminals
with 1, 2 and 4 uvicorn workers beside health at 8 clients. For those the terminals speak
HTTP through the standard library (``KeepAliveClient``, "light"), not httpx: at ~1.2 ms of
CPU a request httpx took half of the two cores the extra workers were to use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

from bench._table import BenchRow
from bench._threads import KeepAliveClient, run_released
from cardsvc.payments._fast_charge import READ_FOR_CHARGE, WRITE_IF_UNCHANGED
from cardsvc.services.officers import hash_token

_TESTS = Path(__file__).resolve().parent.parent / "tests"
# payments_kit builds on cardsvc_kit and the shared test kit
sys.path[:0] = [str(_TESTS / "payments"), str(_TESTS / "cardsvc"), str(_TESTS)]
from kit.processes import CardsvcServer  # noqa: E402
from one_use_kit import OneUse, refill, take_for_today  # noqa: E402
from payments_kit import (  # noqa: E402
    FreshCodes,
    PayCard,
    PayWorld,
    TerminalHandle,
    served_by_a_process,
)

LEVELS = (1, 8, 32)
WORKERS = (1, 2, 4)

TOPUP = 10_000_000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _drive(
    world: PayWorld, tills: list[TerminalHandle], cards: list[PayCard], used: set[tuple[str, int]],
    concurrency: int, total: int, charge: bool, light: bool = False,
) -> tuple[float, list[float]]:
    """(requests per second, latencies in ms): ``concurrency`` terminals share ``total``.
    ``light``: the terminals talk through :class:`KeepAliveClient` instead of httpx."""
    lock = threading.Lock()
    remaining = [total]
    latencies: list[float] = []
    barrier = threading.Barrier(concurrency + 1)

    # The pay codes are made before the run (a phone makes them, not the till): the load
    # generator then spends on a charge what it spends on a health request, HTTP only.
    # (A terminal faster than its share makes the rest as it goes.)
    fresh = [FreshCodes(cards[i::concurrency], used) for i in range(concurrency)]
    share = (total // concurrency) * 5 // 4 + 1 if charge else 0
    codes = [[fresh[i].next()[1] for _ in range(share)] for i in range(concurrency)]

    def terminal(i: int) -> None:
        till = tills[i]
        mine = iter(codes[i])
        with contextlib.ExitStack() as stack:
            if light:
                light_client = stack.enter_context(KeepAliveClient(world.url, till.headers))
                post, get = light_client.post_json, light_client.get
            else:
                client = stack.enter_context(
                    httpx.Client(base_url=world.url, timeout=60, headers=till.headers))

                def post(path: str, body: object) -> tuple[int, bytes]:
                    answer = client.post(path, json=body)
                    return answer.status_code, answer.content

                def get(path: str) -> tuple[int, bytes]:
                    answer = client.get(path)
                    return answer.status_code, answer.content

            barrier.wait()
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                if charge:
                    code = next(mine, None) or fresh[i].next()[1]
                    body = {"pay_code": code, "amount_fen": 1,
                            "idempotency_key": f"b{time.monotonic_ns()}-{i}"}
                    started = time.perf_counter()
                    status, text = post("/v1/payments", body)
                    expected = 201
                else:
                    started = time.perf_counter()
                    status, text = get("/v1/health")
                    expected = 200
                elapsed = (time.perf_counter() - started) * 1000
                assert status == expected, text
                with lock:
                    latencies.append(elapsed)

    return total / run_released(concurrency, terminal, barrier), latencies


def _backend(backend: str, quick: bool) -> list[BenchRow]:
    per_level = 64 if quick else 480
    # A card gives one fresh pay code a second over a 45 s window (FreshCodes): a fast
    # machine charged more than 96 cards' 4,320 codes within one window.
    card_count = 32 if quick else 256
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
            _MEASURED[(label, "charges")] = rate
            _MEASURED[(label, "p50")] = statistics.median(lat)
            rows += [
                BenchRow(f"{label}: charges", rate, "charges/s", floor, floor_rate),
                BenchRow(f"{label}: p50 latency", statistics.median(lat), "ms",
                         f"{floor}, p50", statistics.median(floor_lat)),
                BenchRow(f"{label}: p99 latency", _pct(lat, 0.99), "ms", f"{floor}, p99",
                         _pct(floor_lat, 0.99)),
            ]
        rows += _one_use_level(world, tills[0], cards, per_level)
        if backend == "postgresql":
            rows += _bare_sql_floor(world, tills, cards, per_level)
            rows += _workers(world, _server, tills, cards, used, per_level)
        check = world.ledger()
        assert check.ok, check
    return rows


def _one_use_level(world: PayWorld, till: TerminalHandle, cards: list[PayCard],
                   total: int) -> list[BenchRow]:
    """1 terminal paying one-use codes (P13.3: what a phone shows), each beside health
    requests in the same blocks. A card's credentials for today are drawn with a refill
    between charges, outside the timing."""
    today: dict[str, list[OneUse]] = {}
    latencies: list[float] = []
    floor: list[float] = []
    with httpx.Client(base_url=world.url, timeout=60, headers=till.headers) as client:
        for n in range(total):
            card = cards[n % len(cards)]
            batch = today.setdefault(card.card_number, [])
            one = take_for_today(batch, int(time.time()))
            while one is None:
                batch[:] = refill(world, card, 20)
                one = take_for_today(batch, int(time.time()))
            body = {"pay_code": one.code(int(time.time())), "amount_fen": 1,
                    "idempotency_key": f"u{time.monotonic_ns()}"}
            for _ in range(2):
                started = time.perf_counter()
                assert client.get("/v1/health").status_code == 200
                floor.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            answer = client.post("/v1/payments", json=body)
            latencies.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 201, answer.text
    label = f"payments {world.backend}, 1 terminal, one-use codes"
    return [BenchRow(f"{label}: p50 latency", statistics.median(latencies), "ms",
                     "GET /v1/health, 1 client, p50", statistics.median(floor)),
            BenchRow(f"{label}: p99 latency", _pct(latencies, 0.99), "ms",
                     "GET /v1/health, 1 client, p99", _pct(floor, 0.99))]


def _bare_level(dsn: str, tills: list[TerminalHandle], cards: list[PayCard],
                concurrency: int, total: int) -> tuple[float, list[float]]:
    """The two statements an accepted charge sends (cardsvc/payments/_loop_charge.py: the
    read, then the compare-and-set write, each committing by itself), with no HTTP, no
    Python around them but psycopg's, no verification and no signing."""
    lock = threading.Lock()
    remaining = [total]
    latencies: list[float] = []
    barrier = threading.Barrier(concurrency + 1)
    with psycopg.connect(dsn) as conn:
        entries = {number: (list_id, idx) for number, list_id, idx in conn.execute(
            "SELECT card_number, status_list_id, status_index FROM cards").fetchall()}

    def thread(i: int) -> None:
        till = tills[i]
        mine = cards[i::concurrency]
        with psycopg.connect(dsn, autocommit=True) as conn:
            barrier.wait()
            n = 0
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                card = mine[n % len(mine)]
                n += 1
                list_id, idx = entries[card.card_number]
                read = {"token_hash": hash_token(till.token), "card_number": card.card_number,
                        "list_id": list_id, "idx": idx, "key": secrets.token_hex(8),
                        "replay_key": secrets.token_hex(32)}
                started = time.perf_counter()
                found = conn.execute(READ_FOR_CHARGE, read).fetchone()
                assert found is not None
                (officer_id, _roles, terminal_id, merchant_id, balance, card_account, card_id,
                 _number, status, version, merchant_account, _key_seen, _code_seen,
                 _handle_unused) = found
                now = datetime.now(UTC)
                written = conn.execute(WRITE_IF_UNCHANGED, read | {
                    "balance_after": balance - 1, "balance_before": balance, "now": now,
                    "card_id": card_id, "payment_id": f"pay_{secrets.token_hex(10)}",
                    "card_account": card_account, "merchant_account": merchant_account,
                    "amount": 1, "merchant_id": merchant_id, "terminal_id": terminal_id,
                    "proof_time": 0, "receipt": "bench", "officer_id": officer_id,
                    "digest": "bench", "response": "{}", "status": status,
                    "trust_version": version}).fetchone()
                assert written is not None
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)

    return total / run_released(concurrency, thread, barrier), latencies


def _bare_sql_floor(world: PayWorld, tills: list[TerminalHandle], cards: list[PayCard],
                    per_level: int) -> list[BenchRow]:
    """The same statements as an accepted charge, bare through psycopg: what the database
    costs."""
    dsn = world.database.url.replace("postgresql+psycopg://", "postgresql://")
    rows: list[BenchRow] = []
    for concurrency in LEVELS:
        rate, latencies = _bare_level(dsn, tills, cards, concurrency, per_level)
        plural = "s" if concurrency > 1 else ""
        label = f"payments postgresql, {concurrency} terminal{plural}"
        floor = f"bare SQL of a charge (psycopg), {concurrency} thread{plural}"
        rows += [BenchRow(f"{label}: charges (beside bare SQL)", _last(label, "charges"),
                          "charges/s", floor, rate),
                 BenchRow(f"{label}: p50 latency (beside bare SQL)", _last(label, "p50"), "ms",
                          f"{floor}, p50", statistics.median(latencies))]
    return rows


_MEASURED: dict[tuple[str, str], float] = {}


def _last(label: str, what: str) -> float:
    return _MEASURED[(label, what)]


def _workers(world: PayWorld, server: CardsvcServer, tills: list[TerminalHandle],
             cards: list[PayCard], used: set[tuple[str, int]], per_level: int) -> list[BenchRow]:
    """Charges/s at 8 terminals with 1, 2, 4 uvicorn workers (health at 8 clients beside)."""
    rows: list[BenchRow] = []
    for workers in WORKERS:
        extra = CardsvcServer(server.data_dir, server.env, args=("--workers", str(workers)))
        try:
            extra.start()
            other = dataclasses.replace(world, url=extra.url)
            # Warm up every worker: its trust list, its connections (opened on first use,
            # statements prepared by psycopg after 5 uses of a connection).
            # The terminals talk through the light client here: with httpx they took
            # about half a core at these rates, cores the extra workers need.
            _drive(other, tills, cards, used, 8, 128, True, light=True)
            floor_rate, _ = _drive(other, tills, cards, used, 8, per_level * 2, False,
                                   light=True)
            busy_before = _machine_busy_seconds()
            started = time.perf_counter()
            rate, _ = _drive(other, tills, cards, used, 8, per_level, True, light=True)
            busy = (_machine_busy_seconds() - busy_before) / (time.perf_counter() - started)
        finally:
            extra.stop()
        label = (f"payments postgresql, 8 light terminals, {workers} "
                 f"worker{'s' if workers > 1 else ''}")
        cores = os.cpu_count() or 1
        rows += [
            BenchRow(f"{label}: charges", rate, "charges/s",
                     f"GET /v1/health, 8 light clients, {workers} workers", floor_rate),
            # What caps the figure: more workers cannot use cores the machine has not got
            # (the terminals, the server and PostgreSQL share them).
            BenchRow(f"{label}: machine CPU busy", 100 * busy, "%",
                     f"all {cores} cores", 100.0 * cores)]
    return rows


def _machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy (not idle, not waiting on
    I/O) since boot, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def run(quick: bool = False) -> list[BenchRow]:
    return _backend("sqlite", quick) + _backend("postgresql", quick)


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row.name:<52} {row.value:>10.2f} {row.unit:<10} | {row.floor_name:<32} "
              f"{row.floor_value:>10.2f}  x{row.ratio}")
