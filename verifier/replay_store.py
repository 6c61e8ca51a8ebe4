"""A replay cache that lasts across runs and processes: SQLite in the cache directory.

Implements :class:`verifier.replay.ReplayCache`. One ``INSERT ... ON CONFLICT`` decides
atomically whether a proof is new, so two processes (the CLI and the counter page, or
two terminals on one cache) never both accept the same code. Entries whose window has
passed are dropped.

Example::

    from verifier.replay_store import SqliteReplayCache
    with SqliteReplayCache(cache_dir / "replay.sqlite") as replay:
        result = verify_presentation(text, state=state, policy=policy, now=now,
                                     replay_cache=replay)
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from types import TracebackType

from verifier._sqlite import open_wal

__all__ = ["ReplayStoreError", "SqliteReplayCache"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS seen_proof ("
    " proof_key BLOB PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS seen_proof_expiry ON seen_proof (expires_at)",
)
# A new row, or an expired row with the same key taken over; a live row is left alone
# and the statement changes nothing (changes() == 0 means: already seen).
_CLAIM = (
    "INSERT INTO seen_proof (proof_key, expires_at) VALUES (?, ?) "
    "ON CONFLICT (proof_key) DO UPDATE SET expires_at = excluded.expires_at "
    "WHERE seen_proof.expires_at <= ?"
)
_PURGE_INTERVAL = 30  # seconds of the caller's clock between purges of expired rows


class ReplayStoreError(Exception):
    """The replay database cannot be opened or written (code ``REPLAY_STORE``)."""

    code = "REPLAY_STORE"


class SqliteReplayCache:
    """Seen holder proofs in SQLite (WAL, busy timeout), safe across threads and processes."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._next_purge = 0
        try:
            self._db = open_wal(path, busy_timeout_ms=busy_timeout_ms, synchronous="NORMAL",
                                schema=_SCHEMA)
        except (sqlite3.Error, OSError) as error:
            raise ReplayStoreError(f"cannot open the replay store {path}: {error}") from None

    def check_and_add(self, key: bytes, *, expires_at: int, now: int) -> bool:
        """Record ``key`` until ``expires_at``; False if a live entry already holds it."""
        with self._lock:
            try:
                if now >= self._next_purge:
                    self._db.execute("DELETE FROM seen_proof WHERE expires_at <= ?", (now,))
                    self._next_purge = now + _PURGE_INTERVAL
                cursor = self._db.execute(_CLAIM, (key, expires_at, now))
                return cursor.rowcount == 1
            except sqlite3.Error as error:
                # Fail closed: a code that cannot be recorded is not accepted.
                raise ReplayStoreError(f"replay store unavailable: {error}") from None

    def release(self, key: bytes) -> None:
        """Forget ``key``: for a code that was never really used (the terminal's own
        token was refused before the card was looked at), so it can be shown again."""
        with self._lock:
            try:
                self._db.execute("DELETE FROM seen_proof WHERE proof_key = ?", (key,))
            except sqlite3.Error as error:
                raise ReplayStoreError(f"replay store unavailable: {error}") from None

    def __len__(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM seen_proof").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteReplayCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
