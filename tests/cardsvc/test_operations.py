"""What operators see (P12.3): request ids, JSON log lines, readiness, Prometheus metrics;
and a SIGTERM that finishes what is in flight."""

from __future__ import annotations

import json
import logging
import re
import signal
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest
from cardsvc_kit import Authority, device_key
from fastapi.testclient import TestClient
from kit.names import in_letters
from kit.processes import CardsvcServer, clean_env, run_cli

from cardsvc.api import create_app
from cardsvc.db import Database
from cardsvc.logs import JsonLines


def test_every_answer_carries_a_request_id_echoed_in_problems(authority: Authority) -> None:
    made = authority.client.get("/v1/health")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    given = authority.client.get("/v1/cards/0000000000000000", headers={
        **authority.admin, "X-Request-ID": "ticket-4711.a"})
    assert given.headers["x-request-id"] == "ticket-4711.a"
    assert given.status_code == 404 and given.json()["request_id"] == "ticket-4711.a"
    # A client's id goes into logs and bodies: anything but a plain token is replaced.
    hostile_ids: list[str | bytes] = ["<script>", "a b c d e f g h", "x" * 65, "short",
                                      "é".encode() * 10]
    for hostile in hostile_ids:
        answer = authority.client.get("/v1/persons/X", headers={"X-Request-ID": hostile})
        assert answer.headers["x-request-id"] != hostile
        assert answer.json()["request_id"] == answer.headers["x-request-id"]


def test_the_access_line_is_json_with_the_request_id(
        authority: Authority, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cardsvc.access"):
        answer = authority.client.get("/v1/health", headers={"X-Request-ID": "trace-000001"})
    record = next(r for r in caplog.records if r.name == "cardsvc.access")
    line = json.loads(JsonLines().format(record))
    assert line | {"request_id": "trace-000001", "method": "GET", "route": "/v1/health",
                   "status": 200, "logger": "cardsvc.access", "level": "INFO"} == line
    assert answer.headers["x-request-id"] == line["request_id"]


def test_ready_checks_database_keys_and_lists(authority: Authority) -> None:
    ready = authority.client.get("/v1/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready",
                            "checks": {"database": "ok", "keys": "ok", "lists": "ok"}}


def test_not_ready_without_a_database_is_a_503_never_a_500(authority: Authority) -> None:
    unreachable = Database("postgresql+psycopg://postgres@127.0.0.1:1/none", pool_size=1)
    app = create_app(authority.settings, database=unreachable, clock=authority.clock)
    with TestClient(app) as client:
        answer = client.get("/v1/ready")
        live = client.get("/v1/health")
    unreachable.dispose()
    assert answer.status_code == 503 and answer.json()["code"] == "NOT_READY"
    assert answer.json()["checks"]["database"] != "ok"
    assert live.status_code == 200  # liveness is not readiness


def test_metrics_count_requests_charges_and_read_the_authority(authority: Authority) -> None:
    person = authority.enrol()
    issued = authority.issue(person["foreigner_code"])
    authority.provision(issued["provisioning_code"], device_key(41))
    charge = authority.client.post("/v1/payments", headers=authority.admin, json={
        "pay_code": "FMC1:123", "amount_fen": 100, "idempotency_key": "metrics-k1"})
    assert charge.status_code in (403, 422)
    assert authority.client.get("/v1/trust-list").status_code == 200
    text = authority.client.get("/metrics").text
    assert re.search(r'fmc_http_requests_total\{method="POST",route="/v1/persons",'
                     r'status="201"\} [1-9]', text)
    assert re.search(r'fmc_http_request_duration_seconds_count\{method="POST",'
                     r'route="/v1/persons"\} [1-9]', text)
    assert re.search(r'fmc_charges_total\{outcome="(NOT_A_TERMINAL|FORBIDDEN|MALFORMED)"\}'
                     r' [1-9]', text)
    assert re.search(r'fmc_list_publication_age_seconds\{list="trust"\} \d', text)
    head = re.search(r"^fmc_audit_head_sequence (\d+)", text, re.M)
    assert head is not None and int(float(head.group(1))) >= 3
    assert "fmc_db_pool_connections_in_use" in text
    # Counts and templates only: no card number, foreigner code or token.
    for secret in (person["foreigner_code"], issued["card_number"], authority.admin_token):
        assert secret not in text


@pytest.mark.e2e
def test_sigterm_finishes_what_is_in_flight_and_loses_nothing(tmp_path: Path) -> None:
    env = clean_env(CARDSVC_KEY_PASSPHRASE="graceful", CARDSVC_STATUS_LIST_SIZE="1024")
    data_dir = tmp_path / "data"
    init = run_cli("cardsvc", "init", "--data-dir", str(data_dir), env=env)
    assert init.returncode == 0, init.stderr
    token = re.search(r"admin token:\s+(\S+)", init.stdout)
    assert token is not None
    server = CardsvcServer(data_dir, env, tmp_path / "serve.log").start()
    acknowledged: list[str] = []
    stop = threading.Event()

    def enrol(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30, headers={
                "Authorization": f"Bearer {token.group(1)}"}) as client:
            for n in range(200):
                if stop.is_set():
                    return
                try:
                    answer = client.post("/v1/persons", json={
                        "surname": f"GRACE{in_letters(worker)}",
                        "given_names": f"N{in_letters(n)}", "nationality": "NGA",
                        "birth_date": "1991-02-03", "sex": "F",
                        "passport": {"number": f"G{worker}{n:06d}", "country": "NGA",
                                     "expires": "2031-01-01"}, "confirm_new": True})
                except httpx.TransportError:
                    return  # the server has stopped listening: no answer, no promise
                assert answer.status_code in (201, 503), answer.text  # never a 500
                if answer.status_code == 201:
                    acknowledged.append(answer.json()["foreigner_code"])

    threads = [threading.Thread(target=enrol, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 10:
        threading.Event().wait(0.02)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    # uvicorn finishes the requests in flight, then re-raises the SIGTERM it caught.
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    with sqlite3.connect(data_dir / "cardsvc.db") as db:
        stored = {row[0] for row in db.execute("SELECT foreigner_code FROM persons")}
    assert set(acknowledged) <= stored  # every acknowledged enrolment was kept
    assert run_cli("cardsvc", "audit", "verify", "--data-dir", str(data_dir),
                   env=env).returncode == 0
