"""P7 load: cardsvc with several uvicorn workers on a fresh PostgreSQL database, driven from
this (second) process over 127.0.0.1 for a bounded time.

The mix (bench/_loadgen.py): enrol, issue, provision, top up, two payments, verifier sync
(trust list and status list, with and without ETag) and every fourth card revoked. Rows:
per operation the throughput and p50/p99 latency, beside the floor measured on the same
server with the same generator: ``GET /v1/health`` (no database) and the trust list with
a matching ETag (304). The server is uvicorn with several workers on the app that
``cardsvc serve`` runs, on a socket with TCP_NODELAY (bench/_loadgen.serve); one more row
shows the same floor under ``uvicorn --workers``, whose own socket lacks it.
Then the errors (must be 0) and the invariants after the run
(every acknowledged write present, status lists == cards table, ledger sums to zero, audit
chain intact; violations must be 0). The run fails loudly when either is not 0.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from bench._loadgen import FLOOR_OPS, STORY_OPS, LoadGenerator, LoadReport, check_invariants
from bench._table import BenchRow

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
SERVER_WORKERS = 2
CLIENT_THREADS = 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Authority:
    """``cardsvc init`` on a new database, then uvicorn with several workers."""

    def __init__(self) -> None:
        self.db_name = f"fmc_bench_load_{secrets.token_hex(6)}"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.db_name}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="fmc-bench-load-"))
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
        self.env.update(CARDSVC_DATABASE_URL=self.url, CARDSVC_DATA_DIR=str(self.data_dir),
                        CARDSVC_KEY_PASSPHRASE="bench-load-pass", CARDSVC_PUBLIC_URL=self.base,
                        CARDSVC_DB_POOL_SIZE="6")
        self.process: subprocess.Popen[bytes] | None = None
        self.admin_token = ""
        self.root_fingerprint = ""

    def start(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        init = subprocess.run([sys.executable, "-m", "cardsvc", "init"], env=self.env,
                              capture_output=True, text=True, timeout=120, check=True)
        token = re.search(r"admin token:\s+(\S+)", init.stdout)
        root = re.search(r"root fingerprint:\s+(\S+)", init.stdout)
        assert token and root, init.stdout
        self.admin_token, self.root_fingerprint = token.group(1), root.group(1)
        self.process = self.spawn([sys.executable, "-m", "bench._loadgen", "--port",
                                   str(self.port), "--workers", str(SERVER_WORKERS)], self.base)

    def spawn(self, command: list[str], base: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, cwd=REPO, env=self.env, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited at start")
            try:
                if httpx.get(base + "/v1/health", timeout=2).status_code == 200:
                    return process
            except httpx.HTTPError:
                time.sleep(0.1)
        _stop(process)
        raise RuntimeError("the authority did not start")

    def plain_uvicorn_floor(self, seconds: float) -> LoadReport:
        """The floor mix against the same app under ``uvicorn --workers N`` itself: the
        socket it binds for its workers lacks TCP_NODELAY (single-process ``cardsvc serve``
        is not affected: asyncio's own listening socket gets it)."""
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        process = self.spawn([sys.executable, "-m", "uvicorn", "bench._loadgen:authority_app",
                              "--factory", "--workers", str(SERVER_WORKERS), "--port", str(port),
                              "--log-level", "warning", "--no-access-log"], base)
        try:
            return LoadGenerator(base, admin_token=self.admin_token, terminal_tokens=[],
                                 floor_only=True).run(workers=CLIENT_THREADS, seconds=seconds)
        finally:
            _stop(process)

    def terminals(self, count: int) -> list[str]:
        admin = {"Authorization": f"Bearer {self.admin_token}"}
        with httpx.Client(base_url=self.base, headers=admin, timeout=30) as client:
            merchant = client.post("/v1/merchants", json={"name": "Load Market"}).json()
            return [client.post(f"/v1/merchants/{merchant['merchant_id']}/terminals",
                                json={"name": f"till {i}"}).json()["token"]
                    for i in range(count)]

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # the uvicorn manager and its workers
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _rows(load: LoadReport, floor: LoadReport) -> list[BenchRow]:
    health, cached = floor.ops["health"], floor.ops["trust_list_304"]
    health_rate = health.per_second(floor.seconds)
    rows = []
    for op in STORY_OPS:
        stats = load.ops[op]
        if not stats.count:
            continue
        rows += [
            BenchRow(f"load: {op} throughput", stats.per_second(load.seconds), "req/s",
                     "floor: GET /v1/health throughput", health_rate),
            BenchRow(f"load: {op} p50", stats.percentile_ms(0.50), "ms",
                     "floor: GET /v1/health p50", health.percentile_ms(0.50)),
            BenchRow(f"load: {op} p99", stats.percentile_ms(0.99), "ms",
                     "floor: GET /v1/health p99", health.percentile_ms(0.99)),
        ]
    everything = load.requests - load.errors
    rows += [
        BenchRow(f"load: all requests ({CLIENT_THREADS} clients, {SERVER_WORKERS} workers)",
                 everything / load.seconds, "req/s",
                 "floor: trust list 304 (ETag) throughput", cached.per_second(floor.seconds)),
        BenchRow("load: trust list 304 p50 (floor mix)", cached.percentile_ms(0.50), "ms",
                 "floor: GET /v1/health p50", health.percentile_ms(0.50)),
    ]
    return rows


def run(quick: bool = False) -> list[BenchRow]:
    seconds, floor_seconds = (6.0, 3.0) if quick else (25.0, 8.0)
    authority = _Authority()
    try:
        authority.start()
        terminals = authority.terminals(CLIENT_THREADS)
        # Warm both workers (imports, pools, the first signed lists) before measuring.
        LoadGenerator(authority.base, admin_token=authority.admin_token,
                      terminal_tokens=terminals).run(workers=CLIENT_THREADS, seconds=2)
        generator = LoadGenerator(authority.base, admin_token=authority.admin_token,
                                  terminal_tokens=terminals)
        load = generator.run(workers=CLIENT_THREADS, seconds=seconds)
        floor = LoadGenerator(authority.base, admin_token=authority.admin_token,
                              terminal_tokens=[], floor_only=True).run(
            workers=CLIENT_THREADS, seconds=floor_seconds)
        plain = authority.plain_uvicorn_floor(floor_seconds)
        checks, problems = check_invariants(authority.url, generator.acked,
                                            server=authority.base,
                                            root_fingerprint=authority.root_fingerprint)
    finally:
        authority.stop()
    rows = _rows(load, floor)
    rows.append(BenchRow("`uvicorn --workers` own socket (no TCP_NODELAY): GET /v1/health p50",
                         plain.ops["health"].percentile_ms(0.50), "ms",
                         "floor: GET /v1/health p50", floor.ops["health"].percentile_ms(0.50)))
    errors = load.errors + floor.errors + plain.errors
    rows += [
        BenchRow("load: errors (must be 0)", errors, "errors", "requests sent",
                 load.requests + floor.requests + plain.requests),
        BenchRow("load: invariant violations after the run (must be 0)", len(problems),
                 "violations", "invariant checks made", checks),
        BenchRow("load: acknowledged writes checked after the run", generator.acked.writes,
                 "writes", "requests sent in the mix", load.requests),
    ]
    print("  errors per operation: " + ", ".join(
        f"{op} {stats.failures}/{stats.count}" for op, stats in load.ops.items()), flush=True)
    print(f"  load: {load.requests} requests in {load.seconds:.1f} s, {load.errors} errors; "
          f"floor mix {floor.requests} requests ({', '.join(FLOOR_OPS)}); "
          f"{checks} invariant checks, {len(problems)} violations", flush=True)
    if errors or problems:
        for failure in (load.failures + floor.failures + plain.failures)[:20]:
            print(f"  failure: {failure}", flush=True)
        for problem in problems[:20]:
            print(f"  invariant: {problem}", flush=True)
        for row in rows:
            print(f"  {row.name}: {row.value:.3f} {row.unit}", flush=True)
        raise RuntimeError(f"load: {errors} errors, {len(problems)} invariant violations")
    return rows
