"""The stable foreigner code (docs/DESIGN.md section 3) and its per-prefix sequence.

``9`` + ``33`` (Zhejiang) + ISO 3166-1 numeric nationality + birth YYYYMMDD + 3-digit
sequence + ISO 7064 MOD 11-2 check character.

In a federation (P10) the sequence range 1..999 is split into disjoint blocks per city in
the national list, so that no two cities ever make the same code: the allocator then
draws the lowest free number inside the city's own blocks only (``blocks``), never below
or between them. Without a federation it counts 1..999 per prefix as before.

Example::

    code = allocate_foreigner_code(session, nationality="NGA", birth_date=date(1985, 3, 2),
                                   blocks=own_sequence_blocks(session, issuer="CN-HZ"))
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cardsvc._countries import numeric_code
from cardsvc.models import CodeSequence, Person
from cardsvc.services._locking import for_update
from cardsvc.services.errors import Conflict, NotFound
from schemas.federation import SequenceBlock

__all__ = ["allocate_foreigner_code", "check_character", "get_person", "is_valid_foreigner_code"]

PROVINCE = "33"  # Zhejiang
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_MAX_SEQUENCE = 999


def check_character(body: str) -> str:
    """ISO 7064 MOD 11-2 over 17 digits; 10 is written ``X``."""
    if len(body) != 17 or not body.isascii() or not body.isdigit():
        raise ValueError("the check character needs exactly 17 digits")
    total = sum(int(digit) * weight for digit, weight in zip(body, _WEIGHTS, strict=True))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def is_valid_foreigner_code(unverified_code: str) -> bool:
    if len(unverified_code) != 18 or not unverified_code.startswith("9"):
        return False
    body = unverified_code[:17]
    return body.isascii() and body.isdigit() and check_character(body) == unverified_code[17]


_PERSON = select(Person).where(Person.foreigner_code == bindparam("foreigner_code"))
_LOCK_PERSON = for_update(_PERSON)
# The next number of a prefix in one statement, the same on SQLite and PostgreSQL (a
# dialect's insert().on_conflict_do_update() is compiled again on every use; text is not).
_TAKE_NEXT = text(
    "INSERT INTO code_sequences (prefix, last_value) VALUES (:prefix, 1)"
    " ON CONFLICT (prefix) DO UPDATE SET last_value = code_sequences.last_value + 1"
    " WHERE code_sequences.last_value < :max_sequence"
    " RETURNING last_value")


def get_person(session: Session, *, foreigner_code: str, lock: bool = False) -> Person:
    """The person this code names (here, below both persons and cards, which look it up)."""
    if not is_valid_foreigner_code(foreigner_code):
        raise NotFound("PERSON_NOT_FOUND", "no person with this foreigner code")
    person = session.scalar(_LOCK_PERSON if lock else _PERSON,
                            {"foreigner_code": foreigner_code})
    if person is None:
        raise NotFound("PERSON_NOT_FOUND", "no person with this foreigner code")
    return person


def allocate_foreigner_code(
    session: Session,
    *,
    nationality: str,
    birth_date: date,
    blocks: tuple[SequenceBlock, ...] | None,
) -> str:
    """Take the next sequence number for this nationality and birth date (row-locked).

    ``blocks``: the city's sequence blocks from the held federation list, or None without
    a federation. Exhausted: FOREIGNER_CODE_EXHAUSTED naming the prefix, nothing taken.
    """
    prefix = "9" + PROVINCE + numeric_code(nationality) + birth_date.strftime("%Y%m%d")
    if blocks is None:
        # One statement takes the next number (the row lock is the upsert's own); at 999
        # it changes nothing and returns no row.
        taken = session.connection().execute(
            _TAKE_NEXT, {"prefix": prefix, "max_sequence": _MAX_SEQUENCE}).scalar()
        if taken is None:
            raise Conflict("FOREIGNER_CODE_EXHAUSTED",
                           "999 people share this nationality and birth date", prefix=prefix)
        body = f"{prefix}{taken:03d}"
        return body + check_character(body)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" \
        else sqlite.insert
    session.execute(
        insert(CodeSequence).values(prefix=prefix, last_value=0).on_conflict_do_nothing()
    )
    sequence = session.execute(
        for_update(select(CodeSequence).where(CodeSequence.prefix == prefix))
    ).scalar_one()
    value = _lowest_free(session, prefix, blocks)
    sequence.last_value = max(sequence.last_value, value)
    session.flush()
    body = f"{prefix}{value:03d}"
    return body + check_character(body)


def _lowest_free(session: Session, prefix: str, blocks: tuple[SequenceBlock, ...]) -> int:
    """The lowest number in ``blocks`` that no person's code with ``prefix`` uses.

    Persons, not the counter, say what is used: a block granted below the counter is
    filled from its start, and a person who moved here keeps a code from another city's
    block, which is never ours to take. The caller holds the prefix's row lock.
    """
    codes = session.scalars(select(Person.foreigner_code).where(
        Person.foreigner_code >= f"{prefix}000", Person.foreigner_code <= f"{prefix}999X"))
    used = {int(code[len(prefix):len(prefix) + 3]) for code in codes}
    for block in sorted(blocks):
        for value in range(block.first, block.last + 1):
            if value not in used:
                return value
    granted = ", ".join(f"{block.first}-{block.last}" for block in sorted(blocks)) or "none"
    raise Conflict("FOREIGNER_CODE_EXHAUSTED",
                   f"no free sequence number for prefix {prefix} in this city's blocks"
                   f" ({granted}); ask the national authority for another block (grant-block)",
                   prefix=prefix)
