"""Officers and their roles; bearer tokens are shown once and kept only as SHA-256.

Example::

    officer, token = create_officer(session, name="Wang Li", roles=["registrar"],
                                    actor=Actor.cli(), now=now)
    print(token)                                  # the only time it is shown
    assert authenticate(session, unverified_token=token).id == officer.id
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached

from cardsvc.models import ConsoleSignOut, Officer
from cardsvc.roles import ALL_ROLES
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.errors import Conflict, Invalid, NotFound, Unauthenticated

__all__ = [
    "MAX_TOKEN_CHARS",
    "authenticate",
    "check_may_deactivate",
    "console_session_ended",
    "create_officer",
    "deactivate_officer",
    "end_console_session",
    "hash_token",
    "list_officers",
]

MAX_TOKEN_CHARS = 200  # longer is refused before it is hashed


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_officer(
    session: Session, *, name: str, roles: Iterable[str], actor: Actor, now: datetime
) -> tuple[Officer, str]:
    """Create an officer; returns the officer and its token (print it once, never store it)."""
    role_set = sorted(set(roles))
    unknown = [role for role in role_set if role not in ALL_ROLES]
    if not role_set or unknown:
        raise Invalid("UNKNOWN_ROLE", f"roles must be among {sorted(ALL_ROLES)}")
    clean_name = " ".join(name.split())
    if not clean_name or len(clean_name) > 100 or not clean_name.isprintable():
        raise Invalid("INVALID_NAME", "an officer name is 1 to 100 printable characters")
    token = secrets.token_urlsafe(32)
    officer = Officer(name=clean_name, roles=",".join(role_set), token_hash=hash_token(token),
                      active=True, created_at=now, created_by=actor.officer_id)
    session.add(officer)
    session.flush()
    append_audit(session, actor=actor, action="officer.created", subject=f"officer:{officer.id}",
                 details={"name": clean_name, "roles": role_set}, now=now)
    return officer, token


# Built once: every request authenticates, and building a statement costs more than
# running it.
# The row by Core, not an ORM query (P11: the token check runs on every officer request,
# and the ORM's query machinery cost ~0.1 ms more than the statement itself).
_BY_TOKEN_HASH = select(*Officer.__table__.c).where(
    Officer.__table__.c.token_hash == bindparam("token_hash"))


def authenticate(session: Session, *, unverified_token: str) -> Officer:
    """The active officer holding this token, or Unauthenticated."""
    if not unverified_token or len(unverified_token) > MAX_TOKEN_CHARS:
        raise Unauthenticated("UNAUTHENTICATED", "a valid bearer token is required")
    row = session.connection().execute(
        _BY_TOKEN_HASH, {"token_hash": hash_token(unverified_token)}).first()
    if row is None or not row.active:
        raise Unauthenticated("UNAUTHENTICATED", "a valid bearer token is required")
    officer = Officer(**row._mapping)
    make_transient_to_detached(officer)  # a stored row: never inserted, even if added
    return officer


def list_officers(session: Session) -> list[Officer]:
    return list(session.scalars(select(Officer).order_by(Officer.id)))


def check_may_deactivate(*, officer_id: int, actor: Actor) -> None:
    """An officer cannot deactivate themself (nobody would be left to undo a slip)."""
    if actor.officer_id == officer_id:
        raise Conflict("OFFICER_IS_YOU", "an officer cannot deactivate themself")


def deactivate_officer(
    session: Session, *, officer_id: int, actor: Actor, now: datetime
) -> Officer:
    check_may_deactivate(officer_id=officer_id, actor=actor)
    officer = session.get(Officer, officer_id)
    if officer is None:
        raise NotFound("OFFICER_NOT_FOUND", "no such officer")
    if officer.active:
        officer.active = False
        append_audit(session, actor=actor, action="officer.deactivated",
                     subject=f"officer:{officer.id}", details={}, now=now)
    return officer


def end_console_session(
    session: Session, *, officer_id: int, session_id: str, expires_at: int, now: int
) -> None:
    """Record a console sign-out for every process; forget sign-outs past their expiry."""
    session.execute(delete(ConsoleSignOut).where(ConsoleSignOut.expires_at <= now))
    if expires_at <= now:
        return  # the session has ended by itself
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(  # two tabs signing out the same session at once: one row
        insert(ConsoleSignOut)
        .values(session_id=session_id, officer_id=officer_id, expires_at=expires_at)
        .on_conflict_do_nothing()
    )


def console_session_ended(session: Session, *, session_id: str) -> bool:
    """Whether this console session was signed out (by any process)."""
    return session.get(ConsoleSignOut, session_id) is not None
