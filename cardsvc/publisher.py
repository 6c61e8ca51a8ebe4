"""What verifiers sync, signed when something changed (or half-way to expiry) and served
from memory: the trust list, each status list, their index and the signed timestamp.

The database stays the source of truth (``services.trust``, ``services.status``,
``services.timestamp`` decide when a list is re-signed, under their row locks). This
layer keeps the last answer of each in memory and asks the database again only when

* a change was committed in this process (``services._published.generation()`` moved),
* ``recheck_seconds`` of wall time have passed (another worker or a CLI may have changed
  something: that is the bound on how late another process's change shows here), or
* the injected clock left the window in which the answer was checked (a list due for
  re-signing is re-signed on time, and tests that move their clock see it at once).

Several workers each hold their own copies: for up to ``recheck_seconds`` after another
worker re-signed a list, a verifier that gets the new timestamp from one worker and the
list from another may find the list older than named; its sync is then refused with the
last good cache kept, and the next poll succeeds. ``recheck_seconds=0`` reads the
database on every request.

``write_static`` writes the same objects as files named like the URLs, for any web
server or CDN to mirror (``cardsvc publish --out DIR``; ``verifier sync --mirror URL``).

For the federation list (``GET /v1/federation-list``, another route module): hold it
with ``_cached("federation", now, load)`` the same way and answer through the
publication routes' ``_serve`` (strong ETag, Cache-Control, 304).

Example::

    publisher = Publisher(settings, database, keyring, recheck_seconds=1.0)
    signed = publisher.trust_list(now)            # SignedObject: jwt, etag, issued_at
    publisher.write_static(Path("/srv/mirror"), now)
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.services import _published, status, timestamp, trust
from cardsvc.services.errors import NotFound
from cardsvc.services.trust import Keyring, SignedObject
from cardsvc.settings import Settings

__all__ = ["STATIC_INDEX", "Publisher", "SignedObject"]

# The status list index as a file a static server can serve beside the lists themselves
# (``/v1/status-lists`` itself cannot be both a file and a folder).
STATIC_INDEX = "v1/status-lists/index.json"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Held:
    value: object
    generation: int
    checked_mono: float
    checked_epoch: int


class Publisher:
    """One per process (the app's context holds it); thread safe."""

    def __init__(self, settings: Settings, database: Database, keyring: Keyring, *,
                 recheck_seconds: float | None = None) -> None:
        self.settings = settings
        self.database = database
        self.keyring = keyring
        self.recheck_seconds = (settings.publication_recheck_seconds
                                if recheck_seconds is None else recheck_seconds)
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()

    # -- the cache --------------------------------------------------------------------

    def _cached(self, key: str, now: datetime, load: Callable[[], T]) -> T:
        epoch = int(now.timestamp())
        generation = _published.generation()
        held = self._held.get(key)
        if (held is not None and held.generation == generation
                and time.monotonic() - held.checked_mono < self.recheck_seconds
                and 0 <= epoch - held.checked_epoch < max(self.recheck_seconds, 1)):
            return held.value  # type: ignore[return-value]
        value = load()
        with self._lock:
            self._held[key] = _Held(value, generation, time.monotonic(), epoch)
        return value

    def forget(self) -> None:
        with self._lock:
            self._held.clear()

    # -- the objects ------------------------------------------------------------------

    def trust_list(self, now: datetime) -> SignedObject:
        return self._cached("trust", now, lambda: self._trust_list(now))

    def status_list_ids(self, now: datetime) -> list[str]:
        return self._cached("ids", now, lambda: self.database.transact(
            status.list_status_list_ids, readonly=True))

    def status_list(self, list_id: str, now: datetime) -> SignedObject:
        if len(list_id) > 16:
            raise NotFound("STATUS_LIST_NOT_FOUND", "no status list with this id")
        return self._cached(f"status:{list_id}", now, lambda: self._status_list(list_id, now))

    def timestamp(self, now: datetime) -> SignedObject:
        def load() -> SignedObject:
            signed = self._timestamp(now)
            # The lists it names were just read: never serve older ones after it.
            with self._lock:
                for key in [key for key in self._held if key != "timestamp"]:
                    del self._held[key]
            return signed

        return self._cached("timestamp", now, load)

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
        for list_id in self.database.transact(status.list_status_list_ids, readonly=True):
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
        ids = self.database.transact(status.list_status_list_ids, readonly=True)
        for list_id in ids:
            put(f"v1/status-lists/{list_id}", self._status_list(list_id, now).jwt.encode())
        put(STATIC_INDEX, json.dumps({"status_lists": [
            {"id": list_id, "uri": self.status_list_url(list_id)} for list_id in ids]},
            sort_keys=True).encode())
        with contextlib.suppress(NotFound):  # without a timestamp key it publishes none
            put("v1/timestamp", self._timestamp(now).jwt.encode())
        return written
