"""The stable foreigner code (docs/DESIGN.md section 3) and its per-prefix sequence.

``9`` + ``33`` (Zhejiang) + ISO 3166-1 numeric nationality + birth YYYYMMDD + 3-digit
sequence + ISO 7064 MOD 11-2 check character.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cardsvc._countries import numeric_code
from cardsvc.models import CodeSequence, Person
from cardsvc.services._locking import for_update
from cardsvc.services.errors import Conflict, NotFound

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


def get_person(session: Session, *, foreigner_code: str, lock: bool = False) -> Person:
    """The person this code names (here, below both persons and cards, which look it up)."""
    if not is_valid_foreigner_code(foreigner_code):
        raise NotFound("PERSON_NOT_FOUND", "no person with this foreigner code")
    query = select(Person).where(Person.foreigner_code == foreigner_code)
    if lock:
        query = for_update(query)
    person = session.scalar(query)
    if person is None:
        raise NotFound("PERSON_NOT_FOUND", "no person with this foreigner code")
    return person


def allocate_foreigner_code(session: Session, *, nationality: str, birth_date: date) -> str:
    """Take the next sequence number for this nationality and birth date (row-locked)."""
    prefix = "9" + PROVINCE + numeric_code(nationality) + birth_date.strftime("%Y%m%d")
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(CodeSequence).values(prefix=prefix, last_value=0).on_conflict_do_nothing()
    )
    sequence = session.execute(
        for_update(select(CodeSequence).where(CodeSequence.prefix == prefix))
    ).scalar_one()
    if sequence.last_value >= _MAX_SEQUENCE:
        raise Conflict("FOREIGNER_CODE_EXHAUSTED",
                       "999 people share this nationality and birth date")
    sequence.last_value += 1
    session.flush()
    body = f"{prefix}{sequence.last_value:03d}"
    return body + check_character(body)
