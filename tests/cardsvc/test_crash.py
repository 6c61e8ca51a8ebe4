"""SIGKILL in the middle of issuing: after a restart no card lacks its status entry or its
audit entry, states and status bits agree, and the audit chain verifies."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cardsvc_kit import server_env
from kit.names import in_letters
from kit.postgres import pg_create, pg_drop, pg_url, unique_name
from kit.processes import CardsvcServer
from sqlalchemy import select

from cardsvc.db import Database
from cardsvc.models import AuditEntry, Card, StatusEntry
from cardsvc.services.audit import verify_chain
from cardsvc.services.bootstrap import initialise
from cardsvc.settings import get_settings


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    name = unique_name("cardsvc_crash")
    pg_create(name)
    try:
        yield pg_url(name)
    finally:
        pg_drop(name)


def _issue_until_stopped(url: str, token: str, stop: threading.Event, worker: int,
                         done: list[str], interrupted: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                person = client.post("/v1/persons", json={
                    "surname": f"CRASH{in_letters(worker)}X{in_letters(n)}",
                    "given_names": "Test", "nationality": "GHA",
                    "birth_date": "1991-02-03", "sex": "F", "confirm_new": True,
                    "passport": {"number": f"C{worker}{n:06d}", "country": "GHA",
                                 "expires": "2031-01-01"}})
                issued = client.post("/v1/cards", json={
                    "foreigner_code": person.json()["foreigner_code"],
                    "entitlements": ["healthcare", "payment"], "valid_until": "2030-01-01"})
                done.append(issued.json()["card_number"])
            except (httpx.HTTPError, KeyError, ValueError):
                interrupted.append(f"{worker}:{n}")
                return


@pytest.mark.e2e
def test_sigkill_while_issuing_leaves_no_half_card(tmp_path: Path,
                                                   database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    env = server_env(database_url)
    settings = get_settings(data_dir=data_dir, key_passphrase=env["CARDSVC_KEY_PASSPHRASE"],
                            database_url=database_url or f"sqlite:///{data_dir / 'cardsvc.db'}")
    token = initialise(settings, now=datetime.now(UTC)).admin_token
    assert token is not None
    server = CardsvcServer(data_dir, env).start()
    stop = threading.Event()
    done: list[str] = []
    interrupted: list[str] = []
    try:
        workers = [threading.Thread(target=_issue_until_stopped,
                                    args=(server.url, token, stop, i, done,
                                          interrupted)) for i in range(4)]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 30
        while len(done) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # requests are in flight: some transactions are half done
        stop.set()
        for worker in workers:
            worker.join(timeout=15)
    finally:
        stop.set()
        server.stop()
    assert len(done) >= 8

    restarted = CardsvcServer(data_dir, env).start()  # migrations and recovery on start
    try:
        assert httpx.get(restarted.url + "/v1/status-lists/1").status_code == 200
    finally:
        restarted.stop()
    database = Database.from_settings(settings)
    try:
        with database.sessions() as session:
            cards = session.scalars(select(Card)).all()
            issued = set(session.scalars(
                select(AuditEntry.subject).where(AuditEntry.action == "card.issued")))
            for card in cards:
                entry = session.get(StatusEntry, (card.status_list_id, card.status_index))
                assert entry is not None and entry.card_id == card.id and entry.status == 0
                assert card.card_number in issued
            assert {card.card_number for card in cards} == issued
            assert set(done) <= issued  # every card the client saw survived
            assert verify_chain(session).ok
    finally:
        database.dispose()
