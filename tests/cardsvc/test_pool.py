"""The PostgreSQL pool lends the connection returned last (P11): a sequential client keeps
one warm server backend (statements prepared, caches hot) instead of cycling through all
of them, which cost a terminal ~1 ms per charge after a busy spell."""

from __future__ import annotations

import pytest
from kit.postgres import pg_url
from sqlalchemy import text

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
