"""Idempotency keys: one stored answer per (officer or terminal, key), written in the same
transaction as the money it moved. The same key with the same request gives the same
answer; with another request it is refused (IDEMPOTENCY_KEY_REUSED). Refusals are not
stored: a failed request changes nothing, so its retry is simply judged again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from cardsvc.payments.models import IdempotencyRecord
from cardsvc.services.errors import Conflict

__all__ = ["Answer", "find_answer", "request_hash", "store_answer"]


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer as stored: status and JSON body (``replayed`` on a retry)."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_hash(operation: str, request: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical([operation, dict(request)]).encode("utf-8")).hexdigest()


def find_answer(session: Session, *, officer_id: int, key: str, digest: str) -> Answer | None:
    record = session.execute(
        select(IdempotencyRecord.request_hash, IdempotencyRecord.status_code,
               IdempotencyRecord.response)
        .where(IdempotencyRecord.officer_id == officer_id, IdempotencyRecord.key == key)
    ).first()
    if record is None:
        return None
    stored_hash, status_code, response = record
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
