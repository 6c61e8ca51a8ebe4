"""Merchants and their terminals. A terminal is an officer with the role ``terminal`` (it
authenticates like any officer, with its own token) linked to one merchant, with its own
floor for offline payments.

Example::

    merchant = create_merchant(session, name="Yiwu Beads Co.", actor=actor, now=now)
    terminal, token = register_terminal(session, merchant_id=merchant.id, name="till 1",
                                        offline_floor_fen=20_000, actor=actor, now=now)
    print(token)                                      # shown once
    terminal_of(session, officer)                     # the Terminal behind a token
    TerminalDirectory().of(session, officer)          # the same, held after the first read
"""

from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.models import Officer
from cardsvc.payments.ledger import merchant_account
from cardsvc.payments.models import Merchant, Terminal
from cardsvc.roles import Role
from cardsvc.services.audit import Actor, append_audit
from cardsvc.services.errors import Forbidden, Invalid, NotFound
from cardsvc.services.officers import create_officer

__all__ = [
    "MAX_FLOOR_FEN",
    "TerminalDirectory",
    "create_merchant",
    "get_merchant",
    "register_terminal",
    "terminal_of",
]

MAX_FLOOR_FEN = 1_000_000  # 10,000 yuan: what one terminal may take per offline payment


def _clean_name(name: str) -> str:
    clean = " ".join(name.split())
    if not clean or len(clean) > 100 or not clean.isprintable():
        raise Invalid("INVALID_NAME", "a name is 1 to 100 printable characters")
    return clean


def create_merchant(session: Session, *, name: str, actor: Actor, now: datetime) -> Merchant:
    merchant = Merchant(name=_clean_name(name), created_at=now, created_by=actor.officer_id)
    session.add(merchant)
    session.flush()
    merchant_account(session, merchant_id=merchant.id, now=now)
    append_audit(session, actor=actor, action="merchant.created",
                 subject=f"merchant:{merchant.id}", details={"name": merchant.name}, now=now)
    return merchant


def get_merchant(session: Session, *, merchant_id: int) -> Merchant:
    merchant = session.get(Merchant, merchant_id) if 0 < merchant_id < 2**31 else None
    if merchant is None:
        raise NotFound("MERCHANT_NOT_FOUND", "no merchant with this id")
    return merchant


def register_terminal(
    session: Session, *, merchant_id: int, name: str, offline_floor_fen: int, actor: Actor,
    now: datetime,
) -> tuple[Terminal, str]:
    """A new terminal of a merchant and its token (print it once, never store it)."""
    if not 0 <= offline_floor_fen <= MAX_FLOOR_FEN:
        raise Invalid("INVALID_FLOOR", f"the offline floor is 0 to {MAX_FLOOR_FEN} fen")
    merchant = get_merchant(session, merchant_id=merchant_id)
    clean = _clean_name(name)
    officer, token = create_officer(session, name=f"terminal {clean}"[:100],
                                    roles=[Role.terminal], actor=actor, now=now)
    terminal = Terminal(officer_id=officer.id, merchant_id=merchant.id, name=clean,
                        offline_floor_fen=offline_floor_fen, created_at=now)
    session.add(terminal)
    session.flush()
    append_audit(session, actor=actor, action="terminal.registered",
                 subject=f"terminal:{terminal.id}",
                 details={"merchant_id": merchant.id, "officer_id": officer.id, "name": clean,
                          "offline_floor_fen": offline_floor_fen}, now=now)
    return terminal, token


def terminal_of(session: Session, officer: Officer) -> Terminal:
    """The terminal an officer token belongs to (Forbidden for a terminal never registered)."""
    terminal = session.scalar(select(Terminal).where(Terminal.officer_id == officer.id))
    if terminal is None:
        raise Forbidden("NOT_A_TERMINAL", "this token is not registered to a merchant")
    return terminal


class TerminalDirectory:
    """The terminal behind each terminal officer, held in memory after its first read (one
    per app): a charge then makes no statement for it.

    Safe to hold because a terminal row is never changed or deleted once registered (its
    officer, merchant and floor are fixed). What can change is whether its token is still
    good, and that is not held here: the officer is authenticated from the database on
    every request, so a deactivated terminal is refused at once. A token with no terminal
    is not remembered (it may be registered later)."""

    def __init__(self) -> None:
        self._held: dict[int, Terminal] = {}
        self._lock = threading.Lock()

    def of(self, session: Session, officer: Officer) -> Terminal:
        held = self._held.get(officer.id)
        if held is not None:
            return held
        terminal = terminal_of(session, officer)
        session.expunge(terminal)  # read-only from here on, shared by requests
        with self._lock:
            self._held[officer.id] = terminal
        return terminal
