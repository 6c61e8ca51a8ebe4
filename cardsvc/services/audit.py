"""The tamper-evident audit log: every state change appends one hash-chained entry.

``hash = SHA-256(prev_hash || canonical entry)``. Appends are serialized by locking the
single chain-head row, which also records the last hash so that a deleted tail shows.
Append last in a transaction (after the other writes), so locks are always taken in
the same order.

Someone who can write the database could rewrite the whole chain and its head
consistently. Anchors catch that: ``cardsvc audit head`` prints ``seq:hash`` for a job to
append to a store the database's administrators cannot write (another host, WORM
storage, a printed register), and ``verify_chain(session, anchors=...)`` requires the
chain to still hold every anchored entry with the same hash.

Example::

    append_audit(session, actor=Actor.for_officer(officer), action="card.revoked",
                 subject=card.card_number, details={"reason": "lost"}, now=now)
    assert verify_chain(session).ok
    anchor = AuditAnchor.parse("42:" + "ab" * 32)
    assert verify_chain(session, anchors=[anchor]).ok
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from cardsvc.models import AuditEntry, AuditHead, Officer, UtcDateTime
from cardsvc.services.errors import Unavailable

__all__ = [
    "AUDIT_PAGE_SIZE",
    "GENESIS_HASH",
    "SUBJECT_ENTRIES_CAP",
    "Actor",
    "AuditAnchor",
    "AuditPage",
    "ChainCheck",
    "append_audit",
    "audit_page",
    "canonical_json",
    "create_chain_head",
    "entry_hash",
    "list_audit",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
AUDIT_PAGE_SIZE = 50
SUBJECT_ENTRIES_CAP = 1000  # a subject's pages hold at most this many entries


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: an officer, the command line, or a wallet proving a device key."""

    label: str
    officer_id: int | None = None

    @staticmethod
    def for_officer(officer: Officer) -> Actor:
        return Actor.for_officer_id(officer.id)

    @staticmethod
    def for_officer_id(officer_id: int) -> Actor:
        return Actor(f"officer:{officer_id}", officer_id)

    @staticmethod
    def cli() -> Actor:
        return Actor("cli")

    @staticmethod
    def wallet() -> Actor:
        return Actor("wallet")


_ANCHOR_RE = re.compile(r"^([1-9][0-9]{0,17}):([0-9a-f]{64})$")


@dataclass(frozen=True, slots=True, order=True)
class AuditAnchor:
    """An entry's hash recorded outside the database: ``seq:hash``."""

    seq: int
    hash: str

    @staticmethod
    def parse(unverified_text: str) -> AuditAnchor:
        match = _ANCHOR_RE.fullmatch(unverified_text.strip())
        if match is None:
            raise ValueError("an anchor is SEQ:HASH (a sequence number, a SHA-256 in hex)")
        return AuditAnchor(int(match[1]), match[2])

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


@dataclass(frozen=True, slots=True)
class ChainCheck:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    broken_at: int | None = None
    reason: str | None = None


def canonical_json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def entry_hash(
    *, prev_hash: str, seq: int, at: datetime, officer_id: int | None, actor: str,
    action: str, subject: str, details: str,
) -> str:
    body = json.dumps(
        [seq, at.astimezone(UTC).isoformat(timespec="microseconds"), officer_id, actor,
         action, subject, details],
        separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256((prev_hash + "\n" + body).encode("utf-8")).hexdigest()


def create_chain_head(session: Session) -> None:
    if session.get(AuditHead, 1) is None:
        session.add(AuditHead(id=1, seq=0, hash=GENESIS_HASH))
        session.flush()


def append_audit(
    session: Session,
    *,
    actor: Actor,
    action: str,
    subject: str,
    details: Mapping[str, Any],
    now: datetime,
) -> int:
    """Append one entry in the caller's transaction (it commits or rolls back with it);
    returns its sequence number.

    The chain head is locked from here to the commit, so every writer queues on it: the
    append is kept short. On PostgreSQL it is one statement (the head is locked, moved on
    and the entry written with the hash computed by the database, the same function as
    :func:`entry_hash`, which :func:`verify_chain` recomputes); on SQLite, where the
    transaction already holds the database's write lock, three plain statements.
    """
    if len(subject) > 128:
        raise ValueError("audit subject too long")
    details_text = canonical_json(details)
    session.flush()  # the caller's writes first: the head is always the last lock taken
    if session.get_bind().dialect.name == "postgresql":
        seq = _append_in_one_statement(session, actor=actor, action=action, subject=subject,
                                       details=details_text, now=now)
    else:
        seq = _append_read_then_write(session, actor=actor, action=action, subject=subject,
                                      details=details_text, now=now)
    # An AuditHead this session loaded earlier is stale now.
    loaded = session.identity_map.get(identity_key(AuditHead, 1))
    if loaded is not None:
        session.expire(loaded)
    return seq


def _hashed_tail(*, at: datetime, officer_id: int | None, actor: str, action: str,
                 subject: str, details: str) -> str:
    """What follows ``[seq,`` in the hashed body of :func:`entry_hash`."""
    return json.dumps(
        [at.astimezone(UTC).isoformat(timespec="microseconds"), officer_id, actor, action,
         subject, details],
        separators=(",", ":"), ensure_ascii=False,
    )[1:]


# sha256(prev_hash || "\n[" || seq || "," || tail) in hex: entry_hash, in SQL.
_APPEND_POSTGRES = text("""
WITH old AS (
    SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE
), head AS (
    UPDATE audit_head
    SET seq = old.seq + 1,
        hash = encode(sha256(convert_to(
            old.hash || E'\\n[' || (old.seq + 1)::text || ',' || CAST(:tail AS text),
            'UTF8')), 'hex')
    FROM old
    WHERE audit_head.id = 1
    RETURNING audit_head.seq, audit_head.hash, old.hash AS prev_hash
)
INSERT INTO audit_entries (seq, at, officer_id, actor, action, subject, details, prev_hash,
                           hash)
SELECT head.seq, CAST(:at AS timestamptz), CAST(:officer_id AS integer),
       CAST(:actor AS text), CAST(:action AS text), CAST(:subject AS text),
       CAST(:details AS text), head.prev_hash, head.hash
FROM head
RETURNING seq
""").bindparams(bindparam("at", type_=UtcDateTime))


def _append_in_one_statement(session: Session, *, actor: Actor, action: str, subject: str,
                             details: str, now: datetime) -> int:
    tail = _hashed_tail(at=now, officer_id=actor.officer_id, actor=actor.label,
                        action=action, subject=subject, details=details)
    seq = session.connection().execute(_APPEND_POSTGRES, {
        "tail": tail, "at": now, "officer_id": actor.officer_id, "actor": actor.label,
        "action": action, "subject": subject, "details": details}).scalar()
    if seq is None:
        raise Unavailable("NOT_INITIALISED", "the audit chain has no head; run cardsvc init")
    return int(seq)


# Built once (plain Core on the tables): building and running ORM statements per append
# cost more than the database's own work.
_READ_HEAD = select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)
_MOVE_HEAD = update(AuditHead).where(AuditHead.id == 1).values(
    seq=bindparam("new_seq"), hash=bindparam("new_hash"))
_WRITE_ENTRY = insert(AuditEntry)


def _append_read_then_write(session: Session, *, actor: Actor, action: str, subject: str,
                            details: str, now: datetime) -> int:
    connection = session.connection()
    head = connection.execute(_READ_HEAD).one_or_none()
    if head is None:
        raise Unavailable("NOT_INITIALISED", "the audit chain has no head; run cardsvc init")
    seq = int(head.seq) + 1
    digest = entry_hash(prev_hash=head.hash, seq=seq, at=now, officer_id=actor.officer_id,
                        actor=actor.label, action=action, subject=subject, details=details)
    connection.execute(_WRITE_ENTRY, {
        "seq": seq, "at": now, "officer_id": actor.officer_id, "actor": actor.label,
        "action": action, "subject": subject, "details": details, "prev_hash": head.hash,
        "hash": digest})
    connection.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": digest})
    return seq


def list_audit(
    session: Session, *, after_seq: int = 0, limit: int = 100, subject: str | None = None
) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.seq > after_seq)
    if subject is not None:
        query = query.where(AuditEntry.subject == subject)
    return list(session.scalars(query.order_by(AuditEntry.seq).limit(limit)))


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of the log, newest entry first; ``page`` is 1-based, within ``pages``."""

    entries: list[AuditEntry]
    page: int
    pages: int


def audit_page(
    session: Session, *, page: int, subject: str | None = None,
    page_size: int = AUDIT_PAGE_SIZE,
) -> AuditPage:
    """Page ``page`` of the log counted from the newest entry (a page past the end is the
    last one). With ``subject``, its first ``SUBJECT_ENTRIES_CAP`` entries are paged."""
    if subject:
        entries = list_audit(session, subject=subject, limit=SUBJECT_ENTRIES_CAP)
        entries.reverse()
        pages = max(1, -(-len(entries) // page_size))
        page = min(max(page, 1), pages)
        return AuditPage(entries[(page - 1) * page_size: page * page_size], page, pages)
    head = session.get(AuditHead, 1)
    head_seq = 0 if head is None else head.seq
    pages = max(1, -(-head_seq // page_size))
    page = min(max(page, 1), pages)
    after = max(0, head_seq - page * page_size)
    entries = list_audit(session, after_seq=after,
                         limit=max(1, head_seq - (page - 1) * page_size - after))
    entries.reverse()
    return AuditPage(entries, page, pages)


def verify_chain(session: Session, *, anchors: Iterable[AuditAnchor] = ()) -> ChainCheck:
    """Walk the whole chain: contiguous seq, links, hashes, the head at the end, and each
    anchor (an entry's hash kept outside the database) still in it."""
    head = session.get(AuditHead, 1)
    if head is None:
        return ChainCheck(False, 0, 0, GENESIS_HASH, 0, "no chain head")
    anchored: dict[int, str] = {}
    for anchor in anchors:
        if anchored.setdefault(anchor.seq, anchor.hash) != anchor.hash:
            return _broken(head, 0, anchor.seq, "two anchors disagree about this entry")
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    rows = session.execute(select(AuditEntry).order_by(AuditEntry.seq)).yield_per(1000)
    for entry in rows.scalars():
        if entry.seq != expected_seq:
            return _broken(head, count, expected_seq, "an entry is missing")
        if entry.prev_hash != prev_hash:
            return _broken(head, count, entry.seq, "link to the previous entry broken")
        recomputed = entry_hash(prev_hash=prev_hash, seq=entry.seq, at=entry.at,
                                officer_id=entry.officer_id, actor=entry.actor,
                                action=entry.action, subject=entry.subject,
                                details=entry.details)
        if recomputed != entry.hash:
            return _broken(head, count, entry.seq, "entry was altered")
        if anchored.get(entry.seq, entry.hash) != entry.hash:
            return _broken(head, count, entry.seq,
                           "history was rewritten: the entry differs from its anchor")
        prev_hash, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    if head.seq != count or head.hash != prev_hash:
        return _broken(head, count, count + 1, "entries after the last one were removed")
    beyond = [seq for seq in anchored if seq > count]
    if beyond:
        return _broken(head, count, min(beyond),
                       "an anchored entry is gone: the chain was cut back")
    return ChainCheck(True, count, head.seq, head.hash)


def _broken(head: AuditHead, count: int, seq: int, reason: str) -> ChainCheck:
    return ChainCheck(False, count, head.seq, head.hash, seq, reason)
