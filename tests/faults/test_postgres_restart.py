"""Fault: PostgreSQL goes down under load and comes back (a private cluster of this test,
never the machine's shared server).

While the database is down every request that needs it is refused cleanly: 503
problem+json DATABASE_UNAVAILABLE with Retry-After, never a 500 or a hung request.
When it is back the same server process answers again without a restart, and nothing
it acknowledged before, during or after the outage is lost.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest
from cardsvc_kit import cli, server_env

from bench._loadgen import LoadGenerator, check_invariants

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fault_kit (not on pythonpath)
from fault_kit import (
    LoggedServer,
    Running,
    init_authority,
    private_postgres,
    register_terminals,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def test_fault_postgres_restarted_under_load(tmp_path: Path) -> None:
    with private_postgres() as cluster:
        database_url = cluster.create_database("cardsvc")
        data_dir = tmp_path / "data"
        env = server_env(database_url)
        authority = init_authority(data_dir, env)
        server = LoggedServer(data_dir, env, tmp_path / "server.log").start()
        try:
            terminals = register_terminals(server.url, authority, 2)
            load = LoadGenerator(server.url, admin_token=authority.admin_token,
                                 terminal_tokens=terminals, revoke_every=2, timeout=15)
            running = Running(load, workers=4)
            wait_until(lambda: len(load.acked.payments) >= 2, timeout=60,
                       what="payments before the restart")
            cluster.stop("fast")  # pg_ctl restart -m fast, with the outage held open ...
            wait_until(lambda: len(load.failures) >= 4, timeout=30,
                       what="requests refused while the database is down")
            with httpx.Client(base_url=server.url, headers=authority.admin) as client:
                down = client.get("/v1/cards/3300000000000000")
            cluster.start()  # ... until the server has refused a few requests
            back = time.monotonic()
            acked_back = load.acked.writes
            wait_until(lambda: load.acked.writes >= acked_back + 8, timeout=60,
                       what="acknowledged writes after the restart")
            report = running.stop()
            assert load.first_success_after(back) is not None
            # The same process, never restarted, holds everything it acknowledged.
            checks, problems = check_invariants(database_url, load.acked, server=server.url,
                                                root_fingerprint=authority.root_fingerprint)
        finally:
            server.stop()
        assert (down.status_code, down.json()["code"]) == (503, "DATABASE_UNAVAILABLE")
        assert down.headers["content-type"] == "application/problem+json"
        assert down.headers["retry-after"] == "1"
        assert report.failures, "no request met the outage"
        unclean = [f for f in report.failures if not (
            f.status == 503 and f.code == "DATABASE_UNAVAILABLE"
            and f.content_type == "application/problem+json")]
        assert unclean == []
        assert server.logged_bugs() == 0
        assert problems == [] and checks > 20
        verified = cli(data_dir, env, "audit", "verify")
        assert "audit chain OK" in verified.stdout
