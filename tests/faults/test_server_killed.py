"""Fault: the authority's server is killed (SIGKILL) under enrolment, issuance,
provisioning, top-up, payment and revocation load, then started again.

Every request that got a 2xx is in the database afterwards (persons, cards, bound phones,
top-ups, payments, revocations), each card's status entry and the served signed status
list agree with the card table, the ledger sums to zero, and ``cardsvc audit verify``
walks an unbroken chain. Requests in flight at the kill get no answer, never a wrong one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cardsvc_kit import cli, server_env
from kit.postgres import pg_create, pg_drop, pg_url, unique_name

from bench._loadgen import LoadGenerator, check_invariants

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fault_kit (not on pythonpath)
from fault_kit import LoggedServer, Running, init_authority, register_terminals, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'cardsvc.db'}"
        return
    name = unique_name("fault_kill")
    pg_create(name)
    try:
        yield pg_url(name)
    finally:
        pg_drop(name)


def test_fault_server_killed_under_load_loses_nothing_acknowledged(
    tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "data"
    env = server_env(None if database_url.startswith("sqlite") else database_url)
    authority = init_authority(data_dir, env)
    server = LoggedServer(data_dir, env, tmp_path / "server.log").start()
    try:
        terminals = register_terminals(server.url, authority, 2)
        load = LoadGenerator(server.url, admin_token=authority.admin_token,
                             terminal_tokens=terminals, revoke_every=2, timeout=10)
        running = Running(load, workers=4)
        wait_until(lambda: len(load.acked.payments) >= 4 and len(load.acked.revoked) >= 1,
                   timeout=90, what="payments and revocations under load")
        server.kill()  # requests are in flight: some transactions are half done
        report = running.stop()
    finally:
        server.stop()
    # Before the kill every answer was the expected one; at the kill, no answer at all.
    assert [f for f in report.failures if f.status is not None] == []
    assert report.errors >= 1, "the kill met no request in flight"

    restarted = LoggedServer(data_dir, env, tmp_path / "server.log").start()
    try:
        checks, problems = check_invariants(database_url, load.acked, server=restarted.url,
                                            root_fingerprint=authority.root_fingerprint)
        assert problems == []
        assert checks > 20
        # The restarted server works: a whole story goes through.
        after = LoadGenerator(restarted.url, admin_token=authority.admin_token,
                              terminal_tokens=terminals)
        after.run(workers=1, seconds=1)
        assert after.report(1).errors == 0 and after.acked.payments
        with httpx.Client(base_url=restarted.url) as client:
            assert client.get("/v1/health").status_code == 200
    finally:
        restarted.stop()
    assert server.logged_bugs() == 0 and restarted.logged_bugs() == 0
    verified = cli(data_dir, env, "audit", "verify")
    assert "audit chain OK" in verified.stdout
