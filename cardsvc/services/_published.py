"""A process-wide counter of committed changes to what verifiers sync (internal).

Services that change a status entry, a status list, the trust state or the timestamp
state call :func:`changed` inside their transaction; once that transaction commits the
counter moves on, and the in-memory copies the publisher holds are asked for again
(``cardsvc.publisher``). Another process's changes are seen within the publisher's
recheck interval instead.

Example::

    changed(session)          # in the transaction that bumps a list's revision
    generation()              # -> 7, then 8 once it has committed
"""

from __future__ import annotations

import itertools
import threading

from sqlalchemy import event
from sqlalchemy.orm import Session

__all__ = ["changed", "changed_now", "generation"]

_counter = itertools.count(1)
_current = 0
_lock = threading.Lock()
_MARK = "cardsvc_published_changed"


def generation() -> int:
    return _current


def _bump(_: Session | None) -> None:
    global _current
    with _lock:
        _current = next(_counter)


def changed_now() -> None:
    """A change committed outside any session (a driver statement): move on at once."""
    _bump(None)


def changed(session: Session) -> None:
    """Move the counter on when ``session``'s transaction commits (once per session)."""
    if session.info.get(_MARK):
        return
    session.info[_MARK] = True
    event.listen(session, "after_commit", _bump, once=True)

    def clear(_session: Session, *_args: object) -> None:
        session.info.pop(_MARK, None)

    event.listen(session, "after_soft_rollback", clear, once=True)
    event.listen(session, "after_commit", clear, once=True)
