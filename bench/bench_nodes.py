"""P12: charges per second with 1, 2 and 3 ``cardsvc serve`` nodes on one PostgreSQL.

Three nodes (one process each, the same data dir) on a fresh database of the machine's
PostgreSQL. For n = 1, 2, 3 the same number of client threads (bench/_loadgen.py, the
full mix: enrol, issue, provision, top up, two charges, syncs, revocations) is spread over
the first n nodes for a bounded time. Rows: charges/s with 1 node beside the floor
``GET /v1/health`` on one node, and with 2 and 3 nodes beside 1 node (ratio = scaling).
Then the errors (must be 0) and the invariants over everything acknowledged by all runs
(must be 0 violations); the run fails loudly when either is not 0.

On a machine of two cores the nodes, PostgreSQL and the clients share the same CPUs, so
more nodes cannot add much here; on separate machines they would.
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
import threading
import time
from pathlib import Path

import httpx
import psycopg

from bench._loadgen import Acked, LoadGenerator, LoadReport, check_invariants
from bench._table import BenchRow

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
NODES = 3
CLIENT_THREADS = 6  # divisible by 1, 2 and 3: each node gets the same share


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


class _Cluster:
    """``cardsvc init`` on a new database, then ``cardsvc serve`` NODES times."""

    def __init__(self) -> None:
        self.db_name = f"fmc_bench_nodes_{secrets.token_hex(6)}"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.db_name}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="fmc-bench-nodes-"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
        self.env.update(CARDSVC_DATABASE_URL=self.url, CARDSVC_DATA_DIR=str(self.data_dir),
                        CARDSVC_KEY_PASSPHRASE="bench-nodes-pass", CARDSVC_DB_POOL_SIZE="4")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.nodes: list[str] = []
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
        for _ in range(NODES):
            port = _free_port()
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "cardsvc", "serve", "--port", str(port)], cwd=REPO,
                env=self.env, start_new_session=True, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
            self.nodes.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        for node, process in zip(self.nodes, self.processes, strict=True):
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"cardsvc serve for {node} did not start")
                try:
                    if httpx.get(node + "/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)

    def terminals(self, count: int) -> list[str]:
        admin = {"Authorization": f"Bearer {self.admin_token}"}
        with httpx.Client(base_url=self.nodes[0], headers=admin, timeout=30) as client:
            merchant = client.post("/v1/merchants", json={"name": "Nodes Market"}).json()
            return [client.post(f"/v1/merchants/{merchant['merchant_id']}/terminals",
                                json={"name": f"till {i}"}).json()["token"]
                    for i in range(count)]

    def stop(self) -> None:
        for process in self.processes:
            _stop(process)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _spread(cluster: _Cluster, nodes: int, terminals: list[str],
            seconds: float) -> tuple[list[LoadReport], list[Acked]]:
    """CLIENT_THREADS client threads spread over the first ``nodes`` nodes, all at once."""
    generators = [LoadGenerator(node, admin_token=cluster.admin_token,
                                terminal_tokens=terminals)
                  for node in cluster.nodes[:nodes]]
    reports: list[LoadReport] = []
    lock = threading.Lock()

    def drive(generator: LoadGenerator) -> None:
        report = generator.run(workers=CLIENT_THREADS // nodes, seconds=seconds)
        with lock:
            reports.append(report)

    threads = [threading.Thread(target=drive, args=(g,)) for g in generators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return reports, [g.acked for g in generators]


def _charges_per_second(reports: list[LoadReport]) -> float:
    return sum(r.ops["pay"].per_second(r.seconds) for r in reports)


def run(quick: bool = False) -> list[BenchRow]:
    seconds, floor_seconds = (5.0, 3.0) if quick else (20.0, 6.0)
    cluster = _Cluster()
    try:
        cluster.start()
        terminals = cluster.terminals(CLIENT_THREADS)
        _spread(cluster, NODES, terminals, 2)  # warm every node (imports, pools, lists)
        measured = {n: _spread(cluster, n, terminals, seconds) for n in range(1, NODES + 1)}
        floor = LoadGenerator(cluster.nodes[0], admin_token=cluster.admin_token,
                              terminal_tokens=[], floor_only=True).run(
            workers=CLIENT_THREADS, seconds=floor_seconds)
        acked = Acked.union([a for _, parts in measured.values() for a in parts])
        checks, problems = check_invariants(cluster.url, acked, server=cluster.nodes[-1],
                                            root_fingerprint=cluster.root_fingerprint)
    finally:
        cluster.stop()
    one = _charges_per_second(measured[1][0])
    rows = [BenchRow(f"nodes: charges/s, 1 app node ({CLIENT_THREADS} clients, full mix)", one,
                     "req/s", "floor: GET /v1/health throughput, 1 node",
                     floor.ops["health"].per_second(floor.seconds))]
    rows += [BenchRow(f"nodes: charges/s, {n} app nodes ({CLIENT_THREADS} clients, full mix)",
                      _charges_per_second(measured[n][0]), "req/s",
                      "charges/s, 1 app node (same run)", one)
             for n in range(2, NODES + 1)]
    reports = [r for parts, _ in measured.values() for r in parts] + [floor]
    errors = sum(r.errors for r in reports)
    rows += [
        BenchRow("nodes: errors (must be 0)", errors, "errors", "requests sent",
                 sum(r.requests for r in reports)),
        BenchRow("nodes: invariant violations after the runs (must be 0)", len(problems),
                 "violations", "invariant checks made", checks),
    ]
    if errors or problems:
        for report in reports:
            for failure in report.failures[:10]:
                print(f"  failure: {failure}", flush=True)
        for problem in problems[:20]:
            print(f"  invariant: {problem}", flush=True)
        raise RuntimeError(f"nodes: {errors} errors, {len(problems)} invariant violations")
    return rows
