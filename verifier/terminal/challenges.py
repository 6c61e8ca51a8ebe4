"""The challenges a till has shown, so that a bound pay code is taken only for its own sale.

A challenge is remembered when it is shown (``verifier terminal challenge``) and used at
most once: the first charge that presents a code bound to it claims it. A code bound to a
challenge this till never issued (another terminal's, another merchant's, a nonce made
up), issued for another amount, expired, or already used is refused before the code's
signatures are even looked at.

Example::

    with ChallengeStore(directory / CHALLENGE_DB) as store:
        store.remember(challenge)
        store.claim(challenge.digest, amount_fen=1250, now=now)   # the Challenge
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from schemas.challenge import Challenge, decode_challenge
from schemas.codes import ChallengeExpired, ChallengeMismatch, Replayed
from verifier._sqlite import open_wal

__all__ = ["CHALLENGE_DB", "ChallengeStore"]

CHALLENGE_DB = "terminal-challenges.sqlite"
_KEEP_SECONDS = 7 * 86_400  # used and expired challenges are forgotten after a week

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS challenge ("
    " digest BLOB PRIMARY KEY, text TEXT NOT NULL, expires_at INTEGER NOT NULL,"
    " used_at INTEGER)",
)


class ChallengeStore:
    """Challenges this till issued, in SQLite (WAL); safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_wal(path, busy_timeout_ms=10_000, synchronous="FULL", schema=_SCHEMA)

    def remember(self, challenge: Challenge) -> None:
        with self._lock:
            self._db.execute("DELETE FROM challenge WHERE expires_at < ?",
                             (challenge.issued_at - _KEEP_SECONDS,))
            self._db.execute("INSERT INTO challenge (digest, text, expires_at) VALUES (?,?,?)",
                             (challenge.digest, challenge.text, challenge.expires_at))

    def claim(self, unverified_digest: bytes, *, amount_fen: int, now: int) -> Challenge:
        """The challenge a code is bound to, now used. Raises ChallengeMismatch (not ours,
        or another amount), ChallengeExpired, Replayed (already used)."""
        with self._lock:
            row = self._db.execute("SELECT text, used_at FROM challenge WHERE digest = ?",
                                   (unverified_digest,)).fetchone()
            if row is None:
                raise ChallengeMismatch("this till did not show the challenge of this code")
            challenge = decode_challenge(row[0])
            if challenge.amount_fen != amount_fen:
                raise ChallengeMismatch("the code was made for another amount")
            if not challenge.issued_at <= now <= challenge.expires_at:
                raise ChallengeExpired("the sale's challenge has expired")
            cursor = self._db.execute(
                "UPDATE challenge SET used_at = ? WHERE digest = ? AND used_at IS NULL",
                (now, unverified_digest))
            if cursor.rowcount != 1:
                raise Replayed("this sale's challenge was already paid")
        return challenge

    def release(self, digest: bytes) -> None:
        """Unuse a challenge whose charge never reached the card (refused as a terminal)."""
        with self._lock:
            self._db.execute("UPDATE challenge SET used_at = NULL WHERE digest = ?", (digest,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ChallengeStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
