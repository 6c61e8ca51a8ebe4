"""P13: what sealing passport numbers and portraits costs enrolment and lookups.

Two authorities on SQLite in the same run, the same code: one with its data keys
(AES-256-GCM seal, HMAC-SHA256 blind index), the floor with a null sealer that stores
numbers and portraits as they are and indexes by the plain ``country:number`` (what the
code did before P13). Measured through the services, in process, so HTTP does not hide
the difference: enrolment of a new person (no portrait: Pillow's re-encoding would
dominate both), passport lookup, portrait read, and the console's search by a passport
number of unknown country (one index per country, ~250 HMACs).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench._table import BenchRow, interleaved_us
from cardsvc.console._search import search_persons
from cardsvc.db import Database
from cardsvc.services import persons
from cardsvc.services.audit import Actor
from cardsvc.services.bootstrap import initialise
from cardsvc.services.portraits import normalize_portrait
from cardsvc.services.sealing import sealer_of
from cardsvc.settings import get_settings

NOW = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)


class _PlainSealer:
    """The floor: no cryptography, the values as they are (the pre-P13 storage)."""

    def seal(self, plain: bytes, *, table: str, column: str, row: str) -> bytes:
        return b"\x01\x00\x00\x00\x01" + plain

    def open(self, sealed: bytes, *, table: str, column: str, row: str) -> bytes:
        return sealed[5:]

    def dek_id(self, sealed: bytes) -> int:
        return 1

    def passport_index(self, number: str, country: str) -> str:
        return f"{country}:{number}"


class _PlainProvider:
    sealer = _PlainSealer()

    def __call__(self, connection: sa.Connection, *, dek_id: int | None = None) -> Any:
        return self.sealer


def _portrait() -> bytes:
    import io

    from PIL import Image

    noise = Image.frombytes("RGB", (48, 64), random.Random(7).randbytes(48 * 64 * 3))
    image = noise.resize((480, 640), Image.Resampling.BICUBIC)  # a photo-sized JPEG
    out = io.BytesIO()
    image.save(out, format="PNG")
    return normalize_portrait(out.getvalue(), max_bytes=10_000_000).jpeg


def run(*, quick: bool = False) -> list[BenchRow]:
    number = 20 if quick else 100
    rounds = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="bench-sealed-") as scratch:
        databases: dict[str, Database] = {}
        for kind in ("sealed", "plain"):
            data_dir = Path(scratch) / kind
            settings = get_settings(data_dir=data_dir, key_passphrase="bench-pass",
                                    database_url=f"sqlite:///{data_dir / 'cardsvc.db'}")
            initialise(settings, now=NOW)
            databases[kind] = (Database.from_settings(settings) if kind == "sealed" else
                               Database(settings.database_url_or_default(),
                                        sealer=_PlainProvider()))
        counters = {kind: itertools.count(1) for kind in databases}
        issuer = settings.issuer
        actor = Actor.cli()
        jpeg = _portrait()

        def enrol(kind: str) -> None:
            n = next(counters[kind])
            databases[kind].transact(lambda session: persons.enrol_person(
                session, details=persons.PersonDetails(
                    f"BENCH{n}", "Sealed", "NGA", date(1970 + n % 40, 1 + n % 12, 1 + n % 28),
                    "F"),
                passport=persons.PassportDetails(f"B{n:08d}", "NGA", date(2032, 1, 1)),
                actor=actor, now=NOW, confirm_new=True, issuer=issuer))

        enrolled = interleaved_us({kind: (lambda k=kind: enrol(k)) for kind in databases},
                                  rounds=rounds, number=number)
        # One person with a portrait in each, for the portrait read.
        digests: dict[str, str] = {}
        for kind, database in databases.items():
            def with_portrait(session: Any) -> str:
                person = persons.get_person(session, foreigner_code=persons.find_by_passport(
                    session, number="B00000001", country="NGA").foreigner_code)
                from cardsvc.services.persons import _store_portrait
                from cardsvc.services.portraits import NormalizedPortrait
                from schemas import b64url_encode
                from schemas.credential import portrait_digest

                _store_portrait(session, person, NormalizedPortrait(
                    jpeg, b64url_encode(portrait_digest(jpeg)), 480, 640), now=NOW)
                return str(person.portrait_digest)

            digests[kind] = database.transact(with_portrait)

        def lookup(kind: str) -> None:
            databases[kind].transact(lambda session: persons.find_by_passport(
                session, number="B00000007", country="NGA"), readonly=True)

        def portrait(kind: str) -> None:
            databases[kind].transact(lambda session: persons.portrait_bytes(
                session, digest=digests[kind]), readonly=True)

        def search(kind: str) -> None:
            page = databases[kind].transact(lambda session: search_persons(
                session, query="B00000007", page=1), readonly=True)
            assert page.total == 1

        looked = interleaved_us({kind: (lambda k=kind: lookup(k)) for kind in databases},
                                rounds=rounds, number=number * 5)
        pictured = interleaved_us({kind: (lambda k=kind: portrait(k)) for kind in databases},
                                  rounds=rounds, number=number * 5)
        searched = interleaved_us({kind: (lambda k=kind: search(k)) for kind in databases},
                                  rounds=rounds, number=number)
        sealer = databases["sealed"].transact(sealer_of, readonly=True)
        number_bytes = b"B00000007"

        def seal_number() -> None:
            sealer.passport_index("B00000007", "NGA")
            sealer.seal(number_bytes, table="passports", column="number", row="7:" + "a" * 64)

        def seal_portrait() -> None:
            sealer.seal(jpeg, table="portraits", column="jpeg", row="digest:7")

        crypto = interleaved_us({
            "number": seal_number, "number floor": lambda: hashlib.sha256(number_bytes),
            "portrait": seal_portrait, "portrait floor": lambda: hashlib.sha256(jpeg)},
            rounds=rounds, number=number * 20)
        for database in databases.values():
            database.dispose()
    floor = "same code, null sealer (pre-P13 storage)"
    return [
        BenchRow("p13 enrol a person, sealed (SQLite, us)", enrolled["sealed"], "us",
                 floor, enrolled["plain"]),
        BenchRow("p13 find by passport, blind index + open (SQLite, us)", looked["sealed"],
                 "us", floor, looked["plain"]),
        BenchRow(f"p13 read a {len(jpeg) // 1024} KiB portrait, sealed (SQLite, us)",
                 pictured["sealed"], "us", floor, pictured["plain"]),
        BenchRow("p13 console search by number, any country (SQLite, us)", searched["sealed"],
                 "us", floor, searched["plain"]),
        BenchRow("p13 seal a passport number + its blind index (in process, us)",
                 crypto["number"], "us", "SHA-256 of the number", crypto["number floor"]),
        BenchRow(f"p13 seal a {len(jpeg) // 1024} KiB portrait, AES-256-GCM (in process, us)",
                 crypto["portrait"], "us", "SHA-256 of the portrait (its digest, already paid)",
                 crypto["portrait floor"]),
    ]
