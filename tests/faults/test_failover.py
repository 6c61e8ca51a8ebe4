"""Fault: the database machine dies. A primary with a synchronous hot standby (streaming
replication, ``synchronous_commit = remote_apply``), both private clusters of this test;
the authority's URL lists both hosts with ``target_session_attrs=read-write``.

The primary is SIGKILLed under load (enrolments, issues, top-ups and charges from several
terminals) and the standby promoted. Shown: everything acknowledged with a 2xx before,
during or after is on the promoted standby (persons, cards, top-ups, payments with their
receipts, status entries, a ledger that sums to zero, an audit chain that verifies);
while no host accepts writes every request is refused with 503 DATABASE_UNAVAILABLE
problem+json, never a 500; and the same server process finds the new primary by itself.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest
from cardsvc_kit import cli, server_env
from sqlalchemy import func, select

from bench._loadgen import LoadGenerator, check_invariants
from cardsvc.db import Database
from cardsvc.payments.models import Payment

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fault_kit (not on pythonpath)
from fault_kit import (
    LoggedServer,
    Running,
    init_authority,
    phone_with_money,
    register_terminals,
    replicated_postgres,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _receipts_missing(database_url: str, payment_ids: set[str]) -> int:
    database = Database(database_url, pool_size=1)
    try:
        with database.sessions() as session:
            return len(payment_ids) - (session.scalar(
                select(func.count()).select_from(Payment).where(
                    Payment.id.in_(payment_ids), Payment.receipt != "")) or 0)
    finally:
        database.dispose()


def test_fault_primary_killed_standby_promoted(tmp_path: Path) -> None:
    with replicated_postgres() as pair:
        pair.primary.create_database("cardsvc")
        database_url = pair.database_url("cardsvc")
        data_dir = tmp_path / "data"
        env = server_env(database_url)
        authority = init_authority(data_dir, env)
        server = LoggedServer(data_dir, env, tmp_path / "server.log").start()
        try:
            terminals = register_terminals(server.url, authority, 3)
            load = LoadGenerator(server.url, admin_token=authority.admin_token,
                                 terminal_tokens=terminals, revoke_every=3, timeout=15)
            phone = phone_with_money(server.url, authority, "FAILOVER1")
            till = {"Authorization": f"Bearer {terminals[0]}"}
            running = Running(load, workers=4)
            wait_until(lambda: len(load.acked.payments) >= 4, timeout=60,
                       what="payments before the kill")
            pair.primary.kill()
            killed = time.monotonic()
            wait_until(lambda: len(load.failures) >= 4, timeout=30,
                       what="requests refused while no host accepts writes")
            with httpx.Client(base_url=server.url, headers=authority.admin) as client:
                down = client.get("/v1/cards/3300000000000000")
                # A till's charge during the outage, then the same request once it is over.
                charge = {"pay_code": phone.pay_code(), "amount_fen": 100,
                          "idempotency_key": "failover-charge-1"}
                refused = client.post("/v1/payments", headers=till, json=charge)
            pair.promote()
            acked_back = load.acked.writes
            wait_until(lambda: load.acked.writes >= acked_back + 8, timeout=60,
                       what="acknowledged writes on the promoted standby")
            with httpx.Client(base_url=server.url, headers=till) as client:
                wait_until(lambda: client.post("/v1/payments", json=charge).status_code == 201,
                           timeout=30, what="the till's charge on the promoted standby")
                again = client.post("/v1/payments", json=charge)
            load.acked.payments[again.json()["payment_id"]] = (phone.number, 100)
            report = running.stop()
            recovered = load.first_success_after(killed)
            checks, problems = check_invariants(database_url, load.acked, server=server.url,
                                                root_fingerprint=authority.root_fingerprint)
            receipts_missing = _receipts_missing(database_url, set(load.acked.payments))
        finally:
            server.stop()
        assert (down.status_code, down.json()["code"]) == (503, "DATABASE_UNAVAILABLE")
        assert down.headers["content-type"] == "application/problem+json"
        assert down.headers["retry-after"] == "1"
        assert (refused.status_code, refused.json()["code"]) == (503, "DATABASE_UNAVAILABLE")
        assert again.status_code == 201  # the retry is answered from the stored charge
        assert report.failures, "no request met the outage"
        unclean = [f for f in report.failures if not (
            f.status == 503 and f.code == "DATABASE_UNAVAILABLE"
            and f.content_type == "application/problem+json")]
        assert unclean == []
        assert server.logged_bugs() == 0
        assert recovered is not None
        assert problems == [] and checks > 20
        assert receipts_missing == 0
        verified = cli(data_dir, env, "audit", "verify")
        assert "audit chain OK" in verified.stdout
