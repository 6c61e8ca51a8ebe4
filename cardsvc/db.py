"""The database: engine, sessions and a transaction runner that retries transient conflicts.

SQLite (the default) runs in WAL mode with foreign keys on and ``BEGIN IMMEDIATE`` so
that writers queue on the busy timeout instead of failing on a lock upgrade.
PostgreSQL is reached through psycopg 3 (``postgresql+psycopg://``). A primary with a hot
standby is one URL listing both hosts, as libpq allows, with
``target_session_attrs=read-write`` so that connections go to whichever accepts writes
(docs/OPERATIONS.md); a connection idle for a second is tested before use, and a
transaction whose connection turns out dead before its commit runs once more on a new
one, so the service reaches a promoted standby on its own.

Example::

    database = Database.from_settings(settings)
    code = database.transact(lambda session: enrol_person(session, ...))
    Database("postgresql://cardsvc@db1:5432,db2:5432/cardsvc"
             "?target_session_attrs=read-write")      # failover pair
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from cardsvc.models import SEALER_INFO
from cardsvc.settings import Settings, normalize_url

__all__ = ["Database", "RetryTransaction", "normalize_url"]

T = TypeVar("T")
_log = logging.getLogger(__name__)
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock timeout
_SQLITE_BUSY_SECONDS = 30
_BEGIN_OPTION = "cardsvc_sqlite_begin"
# A dead database machine does not refuse connections, it stays silent: give up on a
# connection attempt (then libpq tries the next host) and on a silent socket in seconds.
_POSTGRES_CONNECT_ARGS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10,
                          "keepalives_interval": 5, "keepalives_count": 3}
# A pooled connection back in use within this long is not pinged first (P11: a ping is a
# round trip on every transaction); one that died meanwhile fails its transaction's first
# statement, and the transaction runs again on a new connection (Database.transact).
PING_AFTER_IDLE_SECONDS = 1.0
_RETURNED_AT = "cardsvc_returned_at"
# How long a transaction waits for its turn (Database.transact) before it runs anyway: the
# gate only orders work, so nothing can ever deadlock on it.
ADMISSION_WAIT_SECONDS = 2.0


def _is_transient(error: DBAPIError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate in _TRANSIENT_SQLSTATES:
        return True
    text = str(error.orig).lower()
    return "database is locked" in text or "database is busy" in text


class RetryTransaction(Exception):
    """Raised by a transaction's work to have it rolled back and run again from the start
    (e.g. a unique key a concurrent transaction took first: the next run sees its row).
    Counted as an attempt; after the last one ``fallback`` is raised instead."""

    def __init__(self, fallback: Exception) -> None:
        super().__init__(str(fallback))
        self.fallback = fallback


class Database:
    """One engine and its session factory."""

    def __init__(
        self, url: str, *, pool_size: int = 10, echo: bool = False, sealer: Any = None,
        concurrent_transactions: int = 4,
    ) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {
                "timeout": _SQLITE_BUSY_SECONDS,
                "check_same_thread": False,
            }
        else:
            # LIFO: lend the connection returned last (P11). A sequential client then keeps
            # one warm backend (its statements prepared, its caches hot) instead of cycling
            # through every pooled connection: 1 terminal's charge p50 ~3.5 -> ~2.6 ms.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True,
                          connect_args={k: v for k, v in _POSTGRES_CONNECT_ARGS.items()
                                        if f"{k}=" not in self.url})
        self._connect_args: dict[str, Any] = dict(kwargs.get("connect_args", {}))
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        else:
            _ping_when_idle(self.engine)
        # sealer: opens the data keys that seal personal data (P13); from_settings gives
        # one from the key store; a Database without one cannot read passports/portraits.
        self.sealer = sealer
        info = {} if sealer is None else {SEALER_INFO: sealer}
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, info=info)
        # SQLite has one writer at a time and its busy handler waits by sleeping and
        # polling, which starves some writers for seconds under load. Queueing this
        # process's writers on a lock hands the database over at once instead.
        self._sqlite_writer = threading.RLock()
        # PostgreSQL: at most this many of this process's transactions run at once; the
        # rest wait their turn asleep. Sixteen at once only queued for the GIL and the
        # audit head's lock, each turn costing more CPU (P11: server CPU per issuance
        # ~17.5 -> ~16 ms at 16 clients, bench/findings.md round 7). SQLite's writers
        # already take turns on the writer lock above.
        self._admission = (None if self.is_sqlite
                           else threading.BoundedSemaphore(concurrent_transactions))
        self._admitted = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Database:
        """The settings' database, with the data keys of the settings' key store (opened
        on first use: a command that never reads personal data needs no passphrase)."""
        from cardsvc.services.sealing import data_keys_for

        kwargs.setdefault("sealer", data_keys_for(settings))
        kwargs.setdefault("concurrent_transactions", settings.db_concurrent_transactions)
        return cls(settings.database_url_or_default(),
                   pool_size=kwargs.pop("pool_size", settings.db_pool_size), **kwargs)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def driver_connect_kwargs(self) -> dict[str, Any]:
        """What ``psycopg.connect`` takes to reach this PostgreSQL database exactly as the
        engine's pool does (hosts, timeouts, keepalives): for code that talks to the
        driver directly (the charge made on the event loop)."""
        _args, params = self.engine.dialect.create_connect_args(self.engine.url)
        return {**params, **self._connect_args}

    def transact(
        self, work: Callable[[Session], T], *, attempts: int = 5, readonly: bool = False,
        single_read: bool = False,
    ) -> T:
        """Run ``work`` in one transaction; commit on return, roll back on any exception.

        Deadlocks, serialization failures and SQLite busy errors are retried with a short
        random backoff; so is, once and at once, work whose pooled connection turned out
        dead before the commit was sent (nothing of it was committed); nothing else is.
        ``readonly`` work on SQLite does not take the write lock (it must not write).
        ``single_read``: work that is one SELECT (a token check) runs on PostgreSQL without
        BEGIN and COMMIT, two round trips fewer. On PostgreSQL each attempt first waits its
        turn (``concurrent_transactions`` at once per process; a transaction run inside
        another's work is already admitted).
        """
        dead_retried = False
        for attempt in range(1, attempts + 1):
            session = self.sessions()
            writer = (self._sqlite_writer if self.is_sqlite and not (readonly or single_read)
                      else nullcontext())
            committing = False
            try:
                with self._turn(), writer, session.begin():
                    if (readonly or single_read) and self.is_sqlite:
                        options: dict[str, Any] = {_BEGIN_OPTION: "DEFERRED"}
                        session.connection(execution_options=options)
                    elif single_read:
                        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
                    done = work(session)
                    committing = True
                return done
            except RetryTransaction as retry:
                if attempt == attempts:
                    raise retry.fallback from retry
                _log.info("transaction asked to run again (attempt %d)", attempt)
            except DBAPIError as error:
                if (error.connection_invalidated and not committing and not dead_retried
                        and attempt < attempts):
                    # A pooled connection the database dropped while it sat idle (a
                    # restart, a failover): no COMMIT was sent, so nothing was written.
                    dead_retried = True
                    _log.info("pooled connection was dead, running the transaction again")
                    continue
                if attempt == attempts or not _is_transient(error):
                    raise
                _log.info("transient database conflict, retrying (attempt %d)", attempt)
                time.sleep(random.uniform(0.005, 0.02 * attempt))
            finally:
                session.close()
        raise AssertionError("unreachable")

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """This thread's turn to run a transaction (see ``transact``)."""
        if self._admission is None or getattr(self._admitted, "held", False):
            yield
            return
        admitted = self._admission.acquire(timeout=ADMISSION_WAIT_SECONDS)
        self._admitted.held = True
        try:
            yield
        finally:
            self._admitted.held = False
            if admitted:
                self._admission.release()

    def dispose(self) -> None:
        self.engine.dispose()


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled PostgreSQL connection before use only when it sat idle for
    PING_AFTER_IDLE_SECONDS (pool_pre_ping pings before every use); a dead one is replaced."""

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_RETURNED_AT, 0.0) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as dead:
            # The pool drops this connection and checks out another (a new one if need be).
            raise DisconnectionError("pooled connection is dead") from dead


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below); pysqlite's implicit BEGIN would be DEFERRED.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_SECONDS * 1000}")
        cursor.execute("PRAGMA synchronous=FULL")  # a committed card survives power loss
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: a deferred transaction that reads and then writes
        # fails at once with SQLITE_BUSY when another writer got in between.
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")
