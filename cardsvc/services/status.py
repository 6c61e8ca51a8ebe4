"""Status lists: random indices per bundle, statuses changed in the caller's transaction,
and the signed list (re-signed when a bit changed, the key rotated, or half the ttl passed).

Example::

    ref = reserve_status_entry(session, card_id=card.id, status=STATUS_VALID, now=now,
                               list_size=131072)
    set_entry_status(session, ref=ref, status=STATUS_REVOKED)
    signed = signed_status_list(session, list_id=ref.list_id, keyring=keyring, now=now,
                                uri=".../v1/status-lists/1", ttl=300, lifetime_seconds=86400)

Card bundles take entries in the numbered lists ("1", "2", ...). A one-use pay credential
valid on day D takes one in D's own list (``p20261129``, then ``p20261129-2``, ...: pass
``day``); once D has ended and the grace passed, that list is retired: it leaves the index,
is not served or signed any more, and ``retire_day_lists`` deletes its rows.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

import keys as keylib
from cardsvc.models import PayHandle, StatusEntry, StatusListRecord, UtcDateTime
from cardsvc.services import _published
from cardsvc.services._locking import for_update
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.errors import NotFound
from cardsvc.services.trust import Keyring, SignedObject, active_signer, signing_alg
from schemas import STATUS_REVOKED, StatusList, StatusListClaims, StatusRef
from schemas.status_list import day_list_day, day_list_id, day_list_retired

__all__ = [
    "cached_status_list",
    "create_status_list",
    "end_pay_handles",
    "list_status_list_ids",
    "open_day_lists",
    "propose_status_entry",
    "reserve_status_entry",
    "retire_day_lists",
    "set_entry_status",
    "set_pay_handle_statuses",
    "signed_status_list",
    "take_status_entry",
]


_DRAWS_BEFORE_COUNTING = 8  # 8 taken indices in a row: below half full, 1 time in 256


def _fill_limit(size: int) -> int:
    # Indices are drawn at random; stopping at three quarters keeps a draw to ~4 tries.
    return size * 3 // 4


def create_status_list(session: Session, *, list_id: str, size: int, now: datetime) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    _published.changed(session)
    session.execute(
        insert(StatusListRecord)
        .values(id=list_id, size=size, fill_limit=_fill_limit(size), allocated=0, revision=0,
                signed_revision=-1, signed_at=0, created_at=now)
        .on_conflict_do_nothing()
    )


def list_status_list_ids(session: Session, *, now: datetime) -> list[str]:
    """The lists published at ``now``: every numbered list and the day lists not retired."""
    epoch = int(now.timestamp())
    ids = [list_id for list_id in session.scalars(select(StatusListRecord.id))
           if not day_list_retired(list_id, epoch)]
    return sorted(ids, key=lambda list_id: (len(list_id), list_id))


def open_day_lists(session: Session, *, days: list[int], list_size: int,
                   now: datetime) -> None:
    """Make sure each of ``days`` (UTC midnights) has its first list, empty until its
    credentials are issued: published ahead, a till that synced before a day's first
    credential was issued still holds its list."""
    for day in days:
        create_status_list(session, list_id=day_list_id(day), size=list_size, now=now)


def retire_day_lists(session: Session, *, actor: Actor, now: datetime) -> list[str]:
    """Delete the rows of the day lists retired at ``now`` (their entries, then the list;
    the ``pay_handles`` rows stay, for the payments they made) and audit it. Run at
    issuance; a list another transaction is deleting is left to it. Returns the ids."""
    epoch = int(now.timestamp())
    candidates = [list_id for list_id in session.scalars(
        select(StatusListRecord.id).where(StatusListRecord.id.startswith("p")))
        if day_list_retired(list_id, epoch)]
    if not candidates:
        return []
    locked = sorted(session.scalars(
        select(StatusListRecord.id).where(StatusListRecord.id.in_(candidates))
        .with_for_update(skip_locked=True)))
    if not locked:
        return []
    session.execute(delete(StatusEntry).where(StatusEntry.list_id.in_(locked)))
    session.execute(delete(StatusListRecord).where(StatusListRecord.id.in_(locked)))
    for list_id in locked:
        loaded = session.identity_map.get(identity_key(StatusListRecord, list_id))
        if loaded is not None:
            session.expunge(loaded)
    _published.changed(session)
    append_audit(session, actor=actor, action="status.day_lists_retired",
                 subject="status-lists", details={"lists": locked}, now=now)
    return locked


# Built once, the same on SQLite and PostgreSQL (issuing a card runs it; a dialect's
# insert().on_conflict_do_nothing() is compiled again on every use, text is not).
_TAKE_ENTRY = text(
    "INSERT INTO status_entries (list_id, idx, status, card_id, created_at)"
    " VALUES (:list_id, :idx, :status, :card_id, :created_at)"
    " ON CONFLICT DO NOTHING RETURNING idx"
).bindparams(bindparam("created_at", type_=UtcDateTime))
_OPEN_LIST = (select(StatusListRecord)
              .where(StatusListRecord.allocated < StatusListRecord.fill_limit,
                     ~StatusListRecord.id.startswith("p"))  # not a day list
              .order_by(StatusListRecord.created_at, StatusListRecord.id)
              .limit(1))
_OPEN_LIST_SIZE = _OPEN_LIST.with_only_columns(StatusListRecord.id, StatusListRecord.size)
_BUMP = (update(StatusListRecord).where(StatusListRecord.id == bindparam("list_id"))
         .values(revision=StatusListRecord.revision + 1))


def reserve_status_entry(
    session: Session, *, card_id: int, status: int, now: datetime, list_size: int,
    day: int | None = None,
) -> StatusRef:
    """A fresh random index in the open numbered list (a new list once it is about 3/4
    full); with ``day`` (a UTC midnight), in that day's open list instead.

    No lock is taken: the entry's primary key settles races (ON CONFLICT DO NOTHING) and
    the list is only counted when random draws keep hitting taken indices.
    """
    while True:
        record = (_open_list(session, list_size=list_size, now=now) if day is None else
                  _open_day_list(session, day=day, list_size=list_size, now=now))
        for _ in range(_DRAWS_BEFORE_COUNTING):
            ref = StatusRef(record.id, secrets.randbelow(record.size))
            if take_status_entry(session, ref=ref, card_id=card_id, status=status, now=now):
                return ref
        _count(session, record)


def propose_status_entry(session: Session, *, list_size: int, now: datetime) -> StatusRef:
    """A random index in the open list, not taken yet (``take_status_entry`` takes it, or
    finds it taken): a new card can carry it from its INSERT, no UPDATE after."""
    # The open list's id and size only (not its signed list, kilobytes per issue).
    row = session.connection().execute(_OPEN_LIST_SIZE).first()
    if row is not None:
        return StatusRef(row.id, secrets.randbelow(row.size))
    record = _open_list(session, list_size=list_size, now=now)
    return StatusRef(record.id, secrets.randbelow(record.size))


def take_status_entry(session: Session, *, ref: StatusRef, card_id: int, status: int,
                      now: datetime) -> bool:
    """Take the entry ``ref`` for ``card_id``; False when another card holds it."""
    inserted = session.connection().execute(_TAKE_ENTRY, {
        "list_id": ref.list_id, "idx": ref.index, "status": status, "card_id": card_id,
        "created_at": now}).first()
    if inserted is not None and status != 0:
        _bump(session, ref.list_id)
    return inserted is not None


def set_entry_status(session: Session, *, ref: StatusRef, status: int) -> bool:
    """Set one entry; True when it changed (the list's revision then moves on)."""
    changed = session.execute(
        update(StatusEntry)
        .where(StatusEntry.list_id == ref.list_id, StatusEntry.idx == ref.index,
               StatusEntry.status != status)
        .values(status=status)
        .returning(StatusEntry.idx)
    ).first()
    if changed is not None:
        _bump(session, ref.list_id)
    return changed is not None


def set_pay_handle_statuses(session: Session, *, card_id: int, status: int,
                            now: datetime) -> int:
    """The card's state reaches every one-use pay credential it still has (P13.3): each
    live handle's own status entry is set, so verifiers learn it at their next sync (a
    used one stays invalid: reinstating the card does not revive it). Returns how many
    entries changed."""
    rows = session.execute(
        select(PayHandle.status_list_id, PayHandle.status_index)
        .where(PayHandle.card_id == card_id, PayHandle.ended_at.is_(None),
               PayHandle.used_at.is_(None), PayHandle.expires_at > now)).all()
    return sum(set_entry_status(session, ref=StatusRef(list_id, index), status=status)
               for list_id, index in rows)


def end_pay_handles(session: Session, *, card_id: int, now: datetime) -> int:
    """The card's one-use pay credentials end for good (another phone, new data, a
    transfer): their entries are revoked and they can never be reinstated."""
    changed = set_pay_handle_statuses(session, card_id=card_id, status=STATUS_REVOKED, now=now)
    session.execute(update(PayHandle).where(PayHandle.card_id == card_id,
                                            PayHandle.ended_at.is_(None))
                    .values(ended_at=now))
    return changed


def cached_status_list(
    session: Session, *, list_id: str, keyring: Keyring, now: datetime, ttl: int
) -> SignedObject | None:
    """The last signed list if it is still current (read only), else None."""
    record = _published_record(session, list_id, now)
    signer = active_signer(session, keyring=keyring)
    if record.signed_jwt is None or not _fresh(record, signer.kid, int(now.timestamp()), ttl):
        return None
    return SignedObject.of(record.signed_jwt, record.signed_at)


def signed_status_list(
    session: Session,
    *,
    list_id: str,
    keyring: Keyring,
    now: datetime,
    uri: str,
    ttl: int,
    lifetime_seconds: int,
) -> SignedObject:
    record = _published_record(session, list_id, now)
    epoch = int(now.timestamp())
    signer = active_signer(session, keyring=keyring)
    if _fresh(record, signer.kid, epoch, ttl):
        assert record.signed_jwt is not None
        return SignedObject.of(record.signed_jwt, record.signed_at)
    record = session.execute(
        for_update(select(StatusListRecord).where(StatusListRecord.id == list_id))
    ).scalar_one()
    if not _fresh(record, signer.kid, epoch, ttl):
        statuses = StatusList.empty(record.size, bits=2)
        rows = session.execute(
            select(StatusEntry.idx, StatusEntry.status)
            .where(StatusEntry.list_id == list_id, StatusEntry.status != 0)
        )
        for index, status in rows:
            statuses.set(index, status)
        claims = StatusListClaims(list_id, uri, epoch, epoch + lifetime_seconds, ttl, statuses)
        record.signed_jwt = keylib.sign_status_list(claims, signer,
                                                    alg=signing_alg(session, now=now))
        record.signed_revision, record.signed_at = record.revision, epoch
        record.signed_kid = signer.kid
        session.flush()
    assert record.signed_jwt is not None
    return SignedObject.of(record.signed_jwt, record.signed_at)


def _published_record(session: Session, list_id: str, now: datetime) -> StatusListRecord:
    """The list, unless it is unknown or a day list retired at ``now`` (not served, even
    before its rows are deleted)."""
    record = (session.get(StatusListRecord, list_id)
              if len(list_id) <= 16 and not day_list_retired(list_id, int(now.timestamp()))
              else None)
    if record is None:
        raise NotFound("STATUS_LIST_NOT_FOUND", "no status list with this id")
    return record


def _fresh(record: StatusListRecord, kid: str, epoch: int, ttl: int) -> bool:
    return (
        record.signed_jwt is not None
        and record.signed_revision == record.revision
        and record.signed_kid == kid
        and 0 <= epoch - record.signed_at < ttl // 2
    )


def _bump(session: Session, list_id: str) -> None:
    _published.changed(session)
    session.connection().execute(_BUMP, {"list_id": list_id})
    # Run on the connection, the statement leaves a list this session loaded untouched.
    loaded = session.identity_map.get(identity_key(StatusListRecord, list_id))
    if loaded is not None:
        session.expire(loaded, ["revision"])


def _open_list(session: Session, *, list_size: int, now: datetime) -> StatusListRecord:
    record = session.scalar(_OPEN_LIST)
    if record is not None:
        return record
    numbers = [int(i) for i in session.scalars(select(StatusListRecord.id)) if i.isdigit()]
    new_id = str(max(numbers, default=0) + 1)
    create_status_list(session, list_id=new_id, size=list_size, now=now)
    return session.execute(
        select(StatusListRecord).where(StatusListRecord.id == new_id)
    ).scalar_one()


def _open_day_list(session: Session, *, day: int, list_size: int,
                   now: datetime) -> StatusListRecord:
    """Day ``day``'s open list: ``p20261129``, then ``p20261129-2`` once that one is full."""
    first = day_list_id(day)
    lists = session.scalars(
        select(StatusListRecord).where(StatusListRecord.id.startswith(first))).all()
    mine = [record for record in lists if day_list_day(record.id) == day]
    open_lists = [record for record in mine if record.allocated < record.fill_limit]
    if open_lists:
        return min(open_lists, key=lambda record: (len(record.id), record.id))
    new_id = day_list_id(day, len(mine) + 1)
    create_status_list(session, list_id=new_id, size=list_size, now=now)
    return session.execute(
        select(StatusListRecord).where(StatusListRecord.id == new_id)
    ).scalar_one()


def _count(session: Session, record: StatusListRecord) -> None:
    """Record how many entries the list holds; at the fill limit it closes."""
    used = session.scalar(
        select(func.count()).select_from(StatusEntry).where(StatusEntry.list_id == record.id)
    )
    session.execute(
        update(StatusListRecord).where(StatusListRecord.id == record.id)
        .values(allocated=used or 0)
    )
    session.expire(record)
