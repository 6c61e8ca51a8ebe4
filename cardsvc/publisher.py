"""What verifiers sync, signed when something changed (or half-way to expiry) and served
from memory: the trust list, each status list, their index, the signed timestamp and the
national federation list as held.

The database stays the source of truth (``services.trust``, ``services.status``,
``services.timestamp`` decide when a list is re-signed, under their row locks). This
layer keeps the last answer of each in memory (an immutable snapshot per object, swapped
whole) and asks the database again only when

* a change was committed in this process (``services._published.generation()`` moved):
  the next request reads it at once,
* ``recheck_seconds`` of wall time have passed (another worker or a CLI may have changed
  something: that is the bound on how late another process's change shows here), or
* the injected clock left the window in which the answer was checked (a list due for
  re-signing is re-signed on time, and tests that move their clock see it at once).

The recheck is done ahead of time, off the request path: once a held answer is half-way
to its recheck, the request that notices still answers from memory and wakes the
background refresher, which reads (and, when due, re-signs) the objects asked for within
the last ``ASKED_WINDOW_SECONDS`` and swaps the new answers in, every half recheck, for
as long as something was asked for within that window (then it stops until asked
again). So neither steady traffic nor traffic with pauses longer than the recheck waits
for the database. Only a request that finds its answer past the recheck (after an idle
spell longer than the window, a change in this process, a moved clock) reads the
database itself, and then one at a time: the others wait for that one's answer instead
of all asking at once.

Several workers each hold their own copies: for up to ``recheck_seconds`` after another
worker re-signed a list, a verifier that gets the new timestamp from one worker and the
list from another may find the list older than named; its sync is then refused with the
last good cache kept, and the next poll succeeds. ``recheck_seconds=0`` reads the
database on every request.

``write_static`` writes the same objects as files named like the URLs, for any web
server or CDN to mirror (``cardsvc publish --out DIR``; ``verifier sync --mirror URL``),
and removes the files of day lists retired since (``schemas.status_list``). A retired
day list leaves the held index at once and is answered STATUS_LIST_NOT_FOUND, whatever
is held.

Example::

    publisher = Publisher(settings, database, keyring, clock=clock, recheck_seconds=1.0)
    signed = publisher.trust_list(now)            # SignedObject: jwt, etag, issued_at
    publisher.refresh()                           # the background refresh, in this thread
    publisher.write_static(Path("/srv/mirror"), now)
    publisher.close()                             # waits for a refresh under way
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.federation.state import held_federation_jwt
from cardsvc.models import FederationState, StatusListRecord, TimestampState, TrustState
from cardsvc.services import _published, status, timestamp, trust
from cardsvc.services.errors import NotFound
from cardsvc.services.trust import Keyring, SignedObject
from cardsvc.settings import Settings
from schemas.status_list import day_list_day, day_list_id, day_list_retired

__all__ = ["ASKED_WINDOW_SECONDS", "FULL_REFRESH_SECONDS", "STATIC_INDEX", "Publisher",
           "SignedObject"]

# The status list index as a file a static server can serve beside the lists themselves
# (``/v1/status-lists`` itself cannot be both a file and a folder).
STATIC_INDEX = "v1/status-lists/index.json"

# How long an object asked for once is kept fresh in the background. Refreshed only
# while asked (keys asked since the last refresh, before), a list polled in bursts a
# second or more apart was past its recheck at every burst's start: its first requests
# read the database, and the burst's others waited for them (P11.3, bench/findings.md
# round 5).
ASKED_WINDOW_SECONDS = 10.0
# A refresh first reads one fingerprint of everything published (trust, timestamp and
# federation state, each status list's revision and signature). When it has not moved,
# the answers held are what a full read would give and are only marked checked: the
# full read (~40 statements, ~15 ms of CPU competing with the event loop for the GIL,
# twice a second: P11.3, bench/findings.md round 5) is made at least this often anyway,
# for what falls due by time alone (a list half-way to its ttl is re-signed on read).
FULL_REFRESH_SECONDS = 10.0

_TIMESTAMP = "timestamp"
_NOT_HELD = object()
_LOG = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Held:
    value: object
    generation: int
    checked_mono: float
    checked_epoch: int


def _published_state(session: Session) -> tuple[object, ...]:
    """What every published object follows, in one read-only transaction: a change of any
    (a key, a revocation, a re-signature, a list opened or retired, a federation list
    accepted), in this process or another, changes it."""
    return (
        tuple(session.execute(select(TrustState.version, TrustState.signed_version,
                                     TrustState.issued_at)).all()),
        tuple(session.execute(select(TimestampState.version, TimestampState.issued_at,
                                     TimestampState.kid)).all()),
        tuple(session.execute(select(StatusListRecord.id, StatusListRecord.revision,
                                     StatusListRecord.signed_revision,
                                     StatusListRecord.signed_at)
                              .order_by(StatusListRecord.id)).all()),
        tuple(session.execute(select(FederationState.version,
                                     FederationState.accepted_at)).all()),
    )


class Publisher:
    """One per process (the app's context holds it); thread safe.

    ``clock`` is what the background refresh reads as now; without one (``cardsvc
    publish``) every recheck is done on the request path."""

    def __init__(self, settings: Settings, database: Database, keyring: Keyring, *,
                 clock: Callable[[], datetime] | None = None,
                 recheck_seconds: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.database = database
        self.keyring = keyring
        self.clock = clock
        self.monotonic = monotonic  # the age of a held answer (tests pass their own)
        self.recheck_seconds = (settings.publication_recheck_seconds
                                if recheck_seconds is None else recheck_seconds)
        # Read without a lock (one dict lookup); replaced entry by entry under _lock.
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        # One database read of the published objects at a time (a request's or the
        # background refresh's): a burst of requests past the recheck asks once, and a
        # refresh never swaps in answers older than one a request just read.
        self._loading = threading.RLock()
        self._refresher: threading.Thread | None = None
        self._closed = threading.Event()
        # key -> when it was last asked for (monotonic); a plain dict write per request
        self._asked: dict[str, float] = {}
        # The fingerprint the last full refresh read first, and when (monotonic, epoch).
        self._state: tuple[object, ...] | None = None
        self._state_mono = 0.0
        self._state_epoch = 0

    # -- the cache --------------------------------------------------------------------

    def _usable(self, held: _Held | None, epoch: int, generation: int,
                mono: float) -> bool:
        return (held is not None and held.generation == generation
                and mono - held.checked_mono < self.recheck_seconds
                # the wall clock moves the epoch by at most the age: more means the
                # injected clock jumped (or went back)
                and 0 <= epoch - held.checked_epoch <= max(self.recheck_seconds, 1))

    def _fresh(self, key: str, now: datetime) -> object:
        """The held answer while it is usable, else ``_NOT_HELD``: never reads the
        database nor waits for a lock, so an async route may call it on the event loop."""
        epoch = int(now.timestamp())
        mono = self.monotonic()
        held = self._held.get(key)
        if held is None:  # never an unknown key: the path's list id is the caller's
            return _NOT_HELD
        self._asked[key] = mono  # refreshed ahead only while asked for
        if self._usable(held, epoch, _published.generation(), mono):
            assert held is not None
            if mono - held.checked_mono >= self.recheck_seconds / 2:
                self._refresh_ahead()
            return held.value
        return _NOT_HELD

    def _cached(self, key: str, now: datetime, load: Callable[[], T]) -> T:
        fresh = self._fresh(key, now)
        if fresh is not _NOT_HELD:
            return fresh  # type: ignore[return-value]
        epoch = int(now.timestamp())
        with self._loading:
            generation = _published.generation()  # before reading: a commit after moves it
            mono = self.monotonic()
            held = self._held.get(key)
            if self._usable(held, epoch, generation, mono):  # another request just read it
                assert held is not None
                return held.value  # type: ignore[return-value]
            value = load()
            self._hold(key, _Held(value, generation, mono, epoch))
            self._asked[key] = mono
            return value

    def _hold(self, key: str, held: _Held) -> None:
        with self._lock:
            self._held[key] = held

    def forget(self) -> None:
        with self._loading, self._lock:
            self._held.clear()

    # -- the background refresh -------------------------------------------------------

    def _refresh_ahead(self) -> None:
        """Wake the background refresher unless it is running (never waits)."""
        if self.clock is None or self.recheck_seconds <= 0:
            return
        with self._lock:
            if self._closed.is_set() or (self._refresher is not None
                                         and self._refresher.is_alive()):
                return
            self._refresher = threading.Thread(target=self._keep_fresh, daemon=True,
                                               name="publication-refresh")
            self._refresher.start()

    def _keep_fresh(self) -> None:
        """Refresh every half recheck while something was asked for within the window."""
        while not self._closed.is_set():
            try:
                self.refresh()
            except Exception as error:  # the request path reads (and reports) it when due
                _LOG.warning("publication refresh failed: %s", type(error).__name__)
                return  # the next request half-way to its recheck wakes it again
            if self._closed.wait(self.recheck_seconds / 2) or not self._recently_asked():
                return

    def _recently_asked(self) -> list[str]:
        since = self.monotonic() - ASKED_WINDOW_SECONDS
        # list() copies the dict in one step: requests write to it meanwhile
        return [key for key, asked in list(self._asked.items()) if asked >= since]

    def refresh(self, now: datetime | None = None) -> None:
        """Read the held objects asked for within ``ASKED_WINDOW_SECONDS`` again
        (re-signing what is due) and swap the answers in. The timestamp first: the lists
        held after it are at least as new as it names (those not read again are dropped,
        to be read on request). An object that cannot be read now keeps its answer until
        that expires; one not asked for within the window expires unread."""
        if now is None:
            assert self.clock is not None, "a publisher without a clock refreshes on request"
            now = self.clock()
        epoch = int(now.timestamp())
        with self._loading:
            asked = set(self._recently_asked())
            for key in [key for key in list(self._asked) if key not in asked]:
                self._asked.pop(key, None)  # not asked for a while: forgotten
            generation = _published.generation()
            mono = self.monotonic()
            keys = sorted(asked & self._held.keys(), key=lambda key: key != _TIMESTAMP)
            if not keys:
                return
            state = self.database.transact(_published_state, readonly=True)
            if (state == self._state and mono - self._state_mono < FULL_REFRESH_SECONDS
                    and 0 <= epoch - self._state_epoch < FULL_REFRESH_SECONDS):
                self._mark_checked(keys, now, generation, mono)
                return
            self._state, self._state_mono, self._state_epoch = state, mono, epoch
            fresh: dict[str, _Held] = {}
            for key in keys:
                try:
                    value = self._load(key, now)
                except NotFound:  # gone meanwhile (e.g. a list id): asked for on request
                    continue
                fresh[key] = _Held(value, generation, mono, epoch)
            with self._lock:
                if _TIMESTAMP in fresh:
                    for key in self._held.keys() - fresh.keys():
                        del self._held[key]
                self._held.update(fresh)

    def _mark_checked(self, keys: list[str], now: datetime, generation: int,
                      mono: float) -> None:
        """Nothing published changed since the last full refresh read its fingerprint:
        an answer read after that read is current, and counts as checked now. One read
        before it (on request, of a key not asked for then) is read again."""
        epoch = int(now.timestamp())
        stale = []
        with self._lock:
            for key in keys:
                held = self._held.get(key)
                if held is None:
                    continue
                if held.checked_mono >= self._state_mono:
                    self._held[key] = _Held(held.value, generation, mono, epoch)
                else:
                    stale.append(key)
        for key in stale:
            try:
                value = self._load(key, now)
            except NotFound:
                continue
            self._hold(key, _Held(value, generation, mono, epoch))

    def _load(self, key: str, now: datetime) -> object:
        if key == _TIMESTAMP:
            return self._timestamp(now)
        if key == "trust":
            return self._trust_list(now)
        if key == "ids":
            return self._status_list_ids(now)
        if key == "federation":
            return self._federation_list()
        assert key.startswith("status:"), key
        return self._status_list(key.removeprefix("status:"), now)

    def close(self) -> None:
        """No refresh starts after this; one under way is waited for."""
        with self._lock:
            self._closed.set()
            refresher = self._refresher
        if refresher is not None:
            refresher.join()

    # -- the objects ------------------------------------------------------------------

    def held(self, name: str, now: datetime) -> SignedObject | None:
        """``trust``, ``timestamp`` or ``status:ID`` as held in memory, while usable; None
        when it must be read (call the method of that name, off the event loop)."""
        if name.startswith("status:") and not self._servable(name.removeprefix("status:"),
                                                              now):
            return None  # status_list() then answers STATUS_LIST_NOT_FOUND
        fresh = self._fresh(name, now)
        return fresh if isinstance(fresh, SignedObject) else None

    @staticmethod
    def _servable(list_id: str, now: datetime) -> bool:
        return len(list_id) <= 16 and not day_list_retired(list_id, int(now.timestamp()))

    def trust_list(self, now: datetime) -> SignedObject:
        return self._cached("trust", now, lambda: self._trust_list(now))

    def status_list_ids(self, now: datetime) -> list[str]:
        # A day list held from before its retirement is dropped at once.
        epoch = int(now.timestamp())
        return [list_id for list_id in self._cached("ids", now, lambda: self._status_list_ids(now))
                if not day_list_retired(list_id, epoch)]

    def status_list(self, list_id: str, now: datetime) -> SignedObject:
        if not self._servable(list_id, now):
            raise NotFound("STATUS_LIST_NOT_FOUND", "no status list with this id")
        return self._cached(f"status:{list_id}", now, lambda: self._status_list(list_id, now))

    def timestamp(self, now: datetime) -> SignedObject:
        def load() -> SignedObject:
            signed = self._timestamp(now)
            # The lists it names were just read: never serve older ones after it.
            with self._lock:
                for key in [key for key in self._held if key != _TIMESTAMP]:
                    del self._held[key]
            return signed

        return self._cached(_TIMESTAMP, now, load)

    def federation_list(self, now: datetime) -> SignedObject | None:
        """The national federation list as held (None when none was ever accepted)."""
        return self._cached("federation", now, self._federation_list)

    def status_list_url(self, list_id: str) -> str:
        return self.settings.public_base + f"/v1/status-lists/{list_id}"

    def index(self, now: datetime) -> dict[str, list[dict[str, str]]]:
        return {"status_lists": [{"id": list_id, "uri": self.status_list_url(list_id)}
                                 for list_id in self.status_list_ids(now)]}

    # -- from the database (re-signing when due) --------------------------------------

    def _trust_list(self, now: datetime) -> SignedObject:
        lifetime = self.settings.trust_list_lifetime_days * 86_400
        signed = self.database.transact(lambda session: trust.cached_trust_list(
            session, now=now, lifetime_seconds=lifetime), readonly=True)
        if signed is None:
            signed = self.database.transact(lambda session: trust.signed_trust_list(
                session, keyring=self.keyring, issuer=self.settings.issuer, now=now,
                lifetime_seconds=lifetime))
        return signed

    def _federation_list(self) -> SignedObject | None:
        jwt = self.database.transact(held_federation_jwt, readonly=True)
        return None if jwt is None else SignedObject.of(jwt, 0)

    def _status_list_ids(self, now: datetime) -> tuple[str, ...]:
        """The published ids; the day lists of the horizon (today and the days one-use
        pay credentials are pre-issued for) are opened first if missing (once a day)."""
        ids = self.database.transact(
            lambda session: status.list_status_list_ids(session, now=now), readonly=True)
        today = int(now.timestamp()) // 86_400 * 86_400
        days = [today + n * 86_400 for n in range(self.settings.one_use_pay_lifetime_days)]
        if any(day_list_id(day) not in ids for day in days):
            self.database.transact(lambda session: status.open_day_lists(
                session, days=days, list_size=self.settings.status_list_size, now=now))
            ids = self.database.transact(
                lambda session: status.list_status_list_ids(session, now=now), readonly=True)
        return tuple(ids)

    def _status_list(self, list_id: str, now: datetime) -> SignedObject:
        settings = self.settings

        def work(session: Session) -> SignedObject:  # re-sign (or take another's fresh one)
            return status.signed_status_list(
                session, list_id=list_id, keyring=self.keyring, now=now,
                uri=self.status_list_url(list_id), ttl=settings.status_ttl_seconds,
                lifetime_seconds=settings.status_lifetime_seconds)

        signed = self.database.transact(lambda session: status.cached_status_list(
            session, list_id=list_id, keyring=self.keyring, now=now,
            ttl=settings.status_ttl_seconds), readonly=True)
        return signed if signed is not None else self.database.transact(work)

    def _timestamp(self, now: datetime) -> SignedObject:
        """The lists it names are brought up to date first (re-signed when due), so a
        verifier that fetches this, then the lists, gets lists at least as new."""
        lifetime = self.settings.timestamp_lifetime_seconds
        self._trust_list(now)
        for list_id in self._status_list_ids(now):
            self._status_list(list_id, now)
        signed = self.database.transact(lambda session: timestamp.cached_timestamp(
            session, now=now, lifetime_seconds=lifetime), readonly=True)
        if signed is None:
            signed = self.database.transact(lambda session: timestamp.signed_timestamp(
                session, keyring=self.keyring, issuer=self.settings.issuer, now=now,
                lifetime_seconds=lifetime))
        return signed

    # -- static files -----------------------------------------------------------------

    def write_static(self, out: Path, now: datetime) -> list[str]:
        """Write every object under ``out`` as the URL path names it; the timestamp
        last, so a mirror read while this runs never names lists it does not hold yet.
        Each file is replaced atomically. Returns the paths written (relative)."""
        self.forget()
        written: list[str] = []

        def put(relative: str, body: bytes) -> None:
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.tmp")
            temporary.write_bytes(body)
            os.replace(temporary, target)
            written.append(relative)

        put("v1/trust-list", self._trust_list(now).jwt.encode())
        ids = self._status_list_ids(now)
        for list_id in ids:
            put(f"v1/status-lists/{list_id}", self._status_list(list_id, now).jwt.encode())
        put(STATIC_INDEX, json.dumps({"status_lists": [
            {"id": list_id, "uri": self.status_list_url(list_id)} for list_id in ids]},
            sort_keys=True).encode())
        with contextlib.suppress(NotFound):  # without a timestamp key it publishes none
            put("v1/timestamp", self._timestamp(now).jwt.encode())
        # Last: retired day lists (no index or timestamp names them any more) are removed.
        lists_dir = out / "v1" / "status-lists"
        for path in sorted(lists_dir.iterdir()):
            if day_list_day(path.name) is not None and path.name not in ids:
                path.unlink(missing_ok=True)
                _LOG.info("removed the retired status list %s", path)
        return written
