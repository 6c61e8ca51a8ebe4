"""The terminal's durable offline queue: pay codes accepted offline, kept until uploaded."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from verifier._sqlite import open_wal

__all__ = ["QUEUE_DB", "OfflineQueue", "QueuedPayment"]

QUEUE_DB = "terminal-queue.sqlite"


@dataclass(frozen=True, slots=True)
class QueuedPayment:
    idempotency_key: str
    pay_code: str
    pay_code_key: str
    card_number: str
    amount_fen: int
    accepted_at: int
    state: str = "queued"  # queued | settled | double_spend | refused
    code: str | None = None
    payment_id: str | None = None
    receipt: str | None = None
    challenge: str | None = None  # the sale challenge a bound code was made for

    def upload_item(self) -> dict[str, Any]:
        item = {"pay_code": self.pay_code, "amount_fen": self.amount_fen,
                "accepted_at": datetime.fromtimestamp(self.accepted_at, UTC).isoformat(),
                "idempotency_key": self.idempotency_key}
        if self.challenge is not None:
            item["challenge"] = self.challenge
        return item


_QUEUE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS queued_payment ("
    " idempotency_key TEXT PRIMARY KEY, pay_code TEXT NOT NULL,"
    " pay_code_key TEXT NOT NULL UNIQUE, card_number TEXT NOT NULL,"
    " amount_fen INTEGER NOT NULL CHECK (amount_fen > 0), accepted_at INTEGER NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'queued', code TEXT, payment_id TEXT, receipt TEXT,"
    " uploaded_at INTEGER)",
    "CREATE INDEX IF NOT EXISTS queued_payment_state ON queued_payment (state, card_number)",
    # A table of its own, so queues written before challenges existed open unchanged.
    "CREATE TABLE IF NOT EXISTS queued_challenge ("
    " idempotency_key TEXT PRIMARY KEY, challenge TEXT NOT NULL)",
)
_COLUMNS = ("idempotency_key, pay_code, pay_code_key, card_number, amount_fen, accepted_at,"
            " state, code, payment_id, receipt")


class OfflineQueue:
    """Pay codes accepted offline, in SQLite (WAL, synchronous FULL): an accepted payment
    is on disk before the terminal says ACCEPTED. Safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_wal(path, busy_timeout_ms=10_000, synchronous="FULL",
                            schema=_QUEUE_SCHEMA)

    def enqueue(self, item: QueuedPayment) -> bool:
        """Keep one payment; False when this pay code is already in the queue."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # the payment and its challenge, or neither
            try:
                cursor = self._db.execute(
                    f"INSERT INTO queued_payment ({_COLUMNS}) VALUES (?,?,?,?,?,?,"  # noqa: S608
                    "'queued',NULL,NULL,NULL) ON CONFLICT DO NOTHING",
                    (item.idempotency_key, item.pay_code, item.pay_code_key, item.card_number,
                     item.amount_fen, item.accepted_at))
                added = cursor.rowcount == 1
                if added and item.challenge is not None:
                    self._db.execute("INSERT INTO queued_challenge VALUES (?,?)",
                                     (item.idempotency_key, item.challenge))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return added

    def queued_fen(self, card_number: str) -> int:
        """What this terminal accepted offline for the card and has not settled yet."""
        with self._lock:
            row = self._db.execute(
                "SELECT coalesce(sum(amount_fen), 0) FROM queued_payment"
                " WHERE state = 'queued' AND card_number = ?", (card_number,)).fetchone()
        return int(row[0])

    def seen(self, card_number: str) -> bool:
        """Whether this till has taken anything offline for this card or one-use handle,
        uploaded or not."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM queued_payment WHERE card_number = ? LIMIT 1",
                                   (card_number,)).fetchone()
        return row is not None

    def items(self, *, state: str | None = None) -> list[QueuedPayment]:
        query = (f"SELECT {_COLUMNS}, challenge FROM queued_payment"  # noqa: S608
                 " LEFT JOIN queued_challenge USING (idempotency_key)")
        args: tuple[str, ...] = ()
        if state is not None:
            query += " WHERE state = ?"
            args = (state,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY accepted_at, queued_payment.rowid",
                                    args).fetchall()
        return [QueuedPayment(*row) for row in rows]

    def record_outcome(
        self, idempotency_key: str, *, state: str, code: str | None, payment_id: str | None,
        receipt: str | None, now: int,
    ) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE queued_payment SET state = ?, code = ?, payment_id = ?, receipt = ?,"
                " uploaded_at = ? WHERE idempotency_key = ?",
                (state, code, payment_id, receipt, now, idempotency_key))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> OfflineQueue:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
