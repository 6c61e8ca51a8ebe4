"""Idempotency keys: one stored answer per (officer or terminal, key), written in the same
transaction as the money it moved. The same key with the same request gives the same
answer; with another request it is refused (IDEMPOTENCY_KEY_REUSED). Refusals are not
stored: a failed request changes nothing, so its retry is simply judged again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ScalarSelect, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.payments.models import IdempotencyRecord
from cardsvc.services.errors import Conflict

__all__ = ["Answer", "answer_columns", "canonical_json", "find_answer", "read_answer",
           "request_hash", "store_answer", "transact_settling_races"]

T = TypeVar("T")


def transact_settling_races(database: Database, work: Callable[[Session], T]) -> T:
    """One transaction; a unique-key race (two requests creating the same row, e.g. the
    same idempotency key) is run again, and the second run finds what the first wrote.
    (On SQLite, ``Database.transact`` queues this process's writers on its own lock.)"""
    for attempt in range(3):
        try:
            return database.transact(work)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer as stored: status and JSON body (``replayed`` on a retry)."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False


def canonical_json(value: Any) -> str:
    """How answers are stored (sorted keys, compact, UTF-8)."""
    return _canonical(value)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_hash(operation: str, request: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical([operation, dict(request)]).encode("utf-8")).hexdigest()


def answer_columns(*, officer_id: int, key: str) -> tuple[ScalarSelect[Any], ...]:
    """The stored (hash, status, response) as scalar subqueries, to read in a statement
    made anyway (one round trip fewer); NULLs when there is none."""
    where = (IdempotencyRecord.officer_id == officer_id, IdempotencyRecord.key == key)
    return tuple(select(column).where(*where).scalar_subquery() for column in (
        IdempotencyRecord.request_hash, IdempotencyRecord.status_code,
        IdempotencyRecord.response))


def find_answer(session: Session, *, officer_id: int, key: str, digest: str) -> Answer | None:
    record = session.execute(
        select(IdempotencyRecord.request_hash, IdempotencyRecord.status_code,
               IdempotencyRecord.response)
        .where(IdempotencyRecord.officer_id == officer_id, IdempotencyRecord.key == key)
    ).first()
    return None if record is None else read_answer(*record, digest=digest)


def read_answer(stored_hash: str | None, status_code: int | None, response: str | None, *,
                digest: str) -> Answer | None:
    """The stored answer for this request (None: none stored); IDEMPOTENCY_KEY_REUSED
    when the key was used for another request."""
    if stored_hash is None or status_code is None or response is None:
        return None
    if stored_hash != digest:
        raise Conflict("IDEMPOTENCY_KEY_REUSED",
                       "this idempotency key was used for another request")
    return Answer(status_code, json.loads(response), replayed=True)


def store_answer(
    session: Session, *, officer_id: int, key: str, digest: str, answer: Answer, now: datetime
) -> Answer:
    session.execute(insert(IdempotencyRecord).values(
        officer_id=officer_id, key=key, request_hash=digest, status_code=answer.status_code,
        response=_canonical(answer.body), created_at=now))
    return answer
