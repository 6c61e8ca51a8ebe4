"""Three ``cardsvc serve`` processes on one PostgreSQL and one data dir are one authority.

Under concurrent load spread over the three nodes (enrolments, issues, provisioning,
top-ups, charges, revocations, list syncs), and while the test does the same from its own
threads: no two persons share a foreigner code and no two cards a status index; one pay
code sent to all three nodes at once is charged exactly once; a key rotation made with
``cardsvc keys rotate`` is what every node signs with and publishes next; a console
sign-out on one node ends the session on the others; and there is one audit chain, which
verifies.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cardsvc_kit import cli, server_env
from kit.postgres import pg_create, pg_drop, pg_url, unique_name
from sqlalchemy import select

from bench._loadgen import Acked, LoadGenerator, check_invariants
from cardsvc.console._auth import SESSION_COOKIE
from cardsvc.db import Database
from cardsvc.models import Card, IssuerKeyRecord
from verifier import TrustedSet

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fault_kit (not on pythonpath)
from fault_kit import (
    LoggedServer,
    Running,
    init_authority,
    phone_with_money,
    register_terminals,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

NODES = 3
_CSRF = '<input type="hidden" name="csrf" value="'


@pytest.fixture
def database_url() -> Iterator[str]:
    name = unique_name("nodes")
    pg_create(name)
    try:
        yield pg_url(name)
    finally:
        pg_drop(name)


def _charge_everywhere(nodes: list[str], terminals: list[str], pay_code: str) -> list[
        tuple[int, str | None]]:
    """The same pay code sent to every node at the same moment (a different till each)."""
    start = threading.Barrier(len(nodes))
    answers: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def charge(node: str, terminal: str) -> None:
        with httpx.Client(base_url=node, timeout=30) as client:
            start.wait()
            answer = client.post("/v1/payments", headers={"Authorization": f"Bearer {terminal}"},
                                 json={"pay_code": pay_code, "amount_fen": 100,
                                       "idempotency_key": secrets.token_hex(8)})
        with lock:
            answers.append((answer.status_code, answer.json().get("code")))

    threads = [threading.Thread(target=charge, args=pair) for pair in zip(nodes, terminals,
                                                                              strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(answers)


def _console_session(node: str, token: str) -> str:
    with httpx.Client(base_url=node, timeout=30) as client:
        page = client.get("/sign-in")
        csrf = page.text.split(_CSRF, 1)[1].split('"', 1)[0]
        signed_in = client.post("/sign-in", data={"csrf": csrf, "token": token, "next": "/"})
        assert signed_in.status_code == 303, signed_in.text
        return client.cookies[SESSION_COOKIE]


def _console_home(node: str, cookie: str) -> httpx.Response:
    with httpx.Client(base_url=node, timeout=30, cookies={SESSION_COOKIE: cookie}) as client:
        return client.get("/")


def _sign_out(node: str, cookie: str) -> None:
    with httpx.Client(base_url=node, timeout=30, cookies={SESSION_COOKIE: cookie}) as client:
        home = client.get("/")
        csrf = home.text.split(_CSRF, 1)[1].split('"', 1)[0]
        assert client.post("/sign-out", data={"csrf": csrf}).status_code == 303


def _active_kid(database_url: str) -> str:
    database = Database(database_url, pool_size=1)
    try:
        with database.sessions() as session:
            kid = session.scalar(select(IssuerKeyRecord.kid).where(
                IssuerKeyRecord.state == "active"))
            assert kid is not None
            return kid
    finally:
        database.dispose()


def _status_slots(database_url: str) -> tuple[int, int]:
    """(cards, distinct status list slots among them)."""
    database = Database(database_url, pool_size=1)
    try:
        with database.sessions() as session:
            slots = list(session.execute(select(Card.status_list_id, Card.status_index)))
    finally:
        database.dispose()
    return len(slots), len(set(slots))


def test_three_nodes_behave_as_one_authority(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "data"
    env = server_env(database_url)
    authority = init_authority(data_dir, env)
    servers = [LoggedServer(data_dir, env, tmp_path / f"node{i}.log") for i in range(NODES)]
    try:
        for server in servers:
            server.start()
        nodes = [server.url for server in servers]
        terminals = register_terminals(nodes[0], authority, NODES)
        loads = [LoadGenerator(node, admin_token=authority.admin_token,
                               terminal_tokens=terminals, revoke_every=3, timeout=30)
                 for node in nodes]
        running = [Running(load, workers=2) for load in loads]

        # One pay code, three nodes, three tills, one moment: charged once.
        phones = [phone_with_money(node, authority, f"{secrets.token_hex(4).upper()}{i}")
                  for i, node in enumerate(nodes)]
        races = [_charge_everywhere(nodes, terminals, phone.pay_code()) for phone in phones]

        # A console session signed in on node 0 and out on node 1 is over on node 2.
        cookie = _console_session(nodes[0], authority.admin_token)
        before_sign_out = [_console_home(node, cookie).status_code for node in nodes]
        _sign_out(nodes[1], cookie)
        after_sign_out = [_console_home(node, cookie).status_code for node in nodes]

        # A rotation by the CLI, under load: every node signs and publishes the new key.
        old_kid = phones[0].credential_kid
        cli(data_dir, env, "keys", "rotate")
        new_kid = _active_kid(database_url)
        rotated_phones = [phone_with_money(node, authority, f"{secrets.token_hex(4).upper()}R{i}")
                          for i, node in enumerate(nodes)]
        trusted = [TrustedSet(root_fingerprint=authority.root_fingerprint) for _ in nodes]
        published = [trust.update_trust_list(httpx.get(f"{node}/v1/trust-list").text,
                                             now=int(time.time()))
                     for trust, node in zip(trusted, nodes, strict=True)]

        reports = [run.stop() for run in running]
        acked = Acked.union([load.acked for load in loads])
        checks, problems = check_invariants(database_url, acked, server=nodes[2],
                                            root_fingerprint=authority.root_fingerprint)
        cards, slots = _status_slots(database_url)
    finally:
        for server in servers:
            server.stop()

    assert races == [[(201, None), (409, "PAY_CODE_USED"), (409, "PAY_CODE_USED")]] * NODES
    assert before_sign_out == [200] * NODES
    assert after_sign_out == [303] * NODES
    assert old_kid != new_kid
    assert [phone.credential_kid for phone in rotated_phones] == [new_kid] * NODES
    assert len({claims.version for claims in published}) == 1
    assert all(new_kid in claims.keys_by_kid for claims in published)
    assert [report.errors for report in reports] == [0] * NODES, [
        report.failures[:3] for report in reports]
    enrolled = sum(r.ops["enrol"].count - r.ops["enrol"].failures for r in reports)
    issued = sum(r.ops["issue"].count - r.ops["issue"].failures for r in reports)
    assert enrolled == len(acked.persons) > 0  # no foreigner code handed out twice
    assert issued == len(acked.cards) > 0
    assert cards == slots  # no status index handed out twice
    assert all(server.logged_bugs() == 0 for server in servers)
    assert problems == [] and checks > 20
    assert "audit chain OK" in cli(data_dir, env, "audit", "verify").stdout
