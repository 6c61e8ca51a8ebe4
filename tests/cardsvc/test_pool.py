"""The PostgreSQL pool (P11). It lends the connection returned last: a sequential client
keeps one warm server backend (statements prepared, caches hot) instead of cycling through
all of them, which cost a terminal ~1 ms per charge after a busy spell. It pings a
connection only when it sat idle, and a transaction whose connection turns out dead
before its commit runs again on a new one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from kit.postgres import conninfo, pg_url
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from cardsvc import db as db_module
from cardsvc.db import Database


@pytest.mark.postgres
def test_the_postgresql_pool_lends_the_connection_returned_last() -> None:
    database = Database(pg_url("test"), pool_size=4)
    try:
        held = [database.engine.connect() for _ in range(3)]
        pids = [c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in held]
        for connection in held:  # returned in order: the third is the last one back
            connection.close()
        for _ in range(2):
            with database.engine.connect() as connection:
                assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() \
                    == pids[-1]
    finally:
        database.dispose()


# --- a pooled connection is pinged only after sitting idle (P11) ------------------------

@pytest.fixture
def one_connection_pool() -> Iterator[Database]:
    """A PostgreSQL pool of one connection (so each test knows which one it gets)."""
    database = Database(pg_url("test"), pool_size=1)
    try:
        yield database
    finally:
        database.dispose()


def _pings(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the pool's pings (SQLAlchemy's do_ping, sent on a raw cursor)."""
    pings: list[int] = []
    ping = database.engine.dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(database.engine.dialect, "do_ping", counted)
    return pings


def _backend_pid(database: Database) -> int:
    return database.transact(
        lambda session: session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pid: int) -> None:
    with psycopg.connect(conninfo("test"), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.1)  # the backend is gone before the pool lends its connection again


@pytest.mark.postgres
def test_a_connection_back_in_use_at_once_is_not_pinged(
        one_connection_pool: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    database = one_connection_pool
    pings = _pings(database, monkeypatch)
    for _ in range(5):
        _backend_pid(database)
    assert pings == []
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # every use is late
    _backend_pid(database)
    assert pings == [1]


@pytest.mark.postgres
def test_a_connection_that_died_while_idle_is_replaced_before_use(
        one_connection_pool: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    database = one_connection_pool
    dead = _backend_pid(database)
    _terminate(dead)
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    runs: list[int] = []

    def work(session: Session) -> int:
        runs.append(1)
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())

    assert database.transact(work) != dead
    assert runs == [1]  # the ping found it dead: the work ran once, on a new connection


@pytest.mark.postgres
def test_work_on_a_connection_found_dead_runs_again_on_a_new_one(
        one_connection_pool: Database) -> None:
    database = one_connection_pool
    dead = _backend_pid(database)
    _terminate(dead)  # returned a moment ago: not pinged, its first statement fails
    pids: list[int] = []

    def work(session: Session) -> int:
        pids.append(0)
        pids[-1] = int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
        return pids[-1]

    assert database.transact(work) not in (0, dead)
    assert len(pids) == 2 and pids[0] == 0  # the first run failed on its first statement


@pytest.mark.postgres
def test_a_connection_lost_at_commit_is_not_run_again(
        one_connection_pool: Database) -> None:
    """Whether a COMMIT that got no answer took effect is unknown: the work is not run a
    second time (it might be written twice); the caller gets the error."""
    database = one_connection_pool
    runs: list[int] = []

    def work(session: Session) -> None:
        runs.append(1)
        _terminate(session.execute(text("SELECT pg_backend_pid()")).scalar_one())

    with pytest.raises(DBAPIError) as lost:
        database.transact(work)
    assert lost.value.connection_invalidated
    assert runs == [1]


@pytest.mark.postgres
def test_work_whose_new_connection_dies_too_is_not_run_a_third_time(
        one_connection_pool: Database) -> None:
    """Once, not in a loop: a database that drops every connection gets its 503 at once."""
    database = one_connection_pool
    runs: list[int] = []

    def work(session: Session) -> None:
        runs.append(1)
        _terminate(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
        session.execute(text("SELECT 1"))  # on the connection just cut off

    with pytest.raises(DBAPIError) as lost:
        database.transact(work)
    assert lost.value.connection_invalidated
    assert runs == [1, 1]


# --- transactions take turns (P11): a few at once, the rest wait asleep --------------------

@pytest.mark.postgres
def test_no_more_transactions_run_at_once_than_are_admitted() -> None:
    database = Database(pg_url("test"), pool_size=4, concurrent_transactions=2)
    lock = threading.Lock()
    running = [0]
    most = [0]

    def work(session: Session) -> None:
        session.execute(text("SELECT 1"))
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    try:
        with ThreadPoolExecutor(6) as pool:  # map's results raise what a transaction raised
            list(pool.map(lambda _: database.transact(work), range(6)))
    finally:
        database.dispose()
    assert most[0] == 2


@pytest.mark.postgres
def test_a_transaction_run_within_another_needs_no_turn_of_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_module, "ADMISSION_WAIT_SECONDS", 600)  # a deadlock would hang
    database = Database(pg_url("test"), pool_size=2, concurrent_transactions=1)
    try:
        inner = database.transact(lambda outer: database.transact(
            lambda session: session.execute(text("SELECT 7")).scalar_one()))
    finally:
        database.dispose()
    assert inner == 7


@pytest.mark.postgres
def test_a_transaction_kept_waiting_too_long_runs_anyway(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The turns only order work: one that never ends cannot stop the others."""
    monkeypatch.setattr(db_module, "ADMISSION_WAIT_SECONDS", 0.05)
    database = Database(pg_url("test"), pool_size=2, concurrent_transactions=1)
    entered, release = threading.Event(), threading.Event()

    def hold_the_turn(session: Session) -> None:
        session.execute(text("SELECT 1"))
        entered.set()
        assert release.wait(60)

    holder = threading.Thread(target=database.transact, args=(hold_the_turn,))
    holder.start()
    try:
        assert entered.wait(60)
        assert database.transact(lambda s: s.execute(text("SELECT 8")).scalar_one()) == 8
        assert holder.is_alive()  # the other transaction still held the only turn
    finally:
        release.set()
        holder.join()
        database.dispose()
