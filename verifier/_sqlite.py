"""Opening the verifier's small SQLite files (replay store, offline payment queue).

Several processes on one device open them: the CLI, the counter page, a terminal. Turning
a new file to WAL takes a lock that SQLite's busy handler does not wait for, so two first
opens at the same moment can fail with "database is locked"; :func:`open_wal` retries
that for as long as a busy write would wait.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["open_wal"]


def open_wal(
    path: Path, *, busy_timeout_ms: int, synchronous: str, schema: Iterable[str]
) -> sqlite3.Connection:
    """A connection in autocommit, WAL mode, with the schema created.

    Raises ``sqlite3.Error`` or ``OSError``; the caller maps them to its own error.
    """
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError("synchronous must be NORMAL or FULL")
    statements = tuple(schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        db = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None,
                             check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {synchronous}")
            for statement in statements:
                db.execute(statement)
            return db
        except sqlite3.OperationalError as error:
            db.close()
            text = str(error)
            if ("locked" not in text and "busy" not in text) or time.monotonic() >= deadline:
                raise
        except BaseException:
            db.close()
            raise
        time.sleep(random.uniform(0.002, 0.02))
