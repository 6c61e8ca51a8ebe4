"""Finding persons for the console: by foreigner code, by any passport number past or
present (whatever its country), or by name, one page at a time.

cardsvc's services look a person up by code or by (passport number, country); the
console's search box needs the wider, read-only queries below. Names are compared in
the services' normal form (``name_key``: no diacritics, one spelling per transliteration
variant), word by word, in any order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from cardsvc._countries import COUNTRIES
from cardsvc.models import Passport, Person
from cardsvc.services._names import name_key
from cardsvc.services.sealing import sealer_of
from schemas.credential import FOREIGNER_CODE_PATTERN

__all__ = ["PAGE_SIZE", "PersonPage", "search_persons"]

PAGE_SIZE = 20
_CODE_RE = re.compile(FOREIGNER_CODE_PATTERN)
_PASSPORT_RE = re.compile(r"^[A-Z0-9]{4,20}$")
_MAX_QUERY_CHARS = 100
_MAX_NAME_WORDS = 6


@dataclass(frozen=True, slots=True)
class PersonPage:
    persons: list[Person]
    total: int
    page: int
    pages: int


def search_persons(session: Session, *, query: str, page: int) -> PersonPage:
    """Persons matching ``query`` (all persons, newest first, when it is empty)."""
    text = " ".join(query.split())[:_MAX_QUERY_CHARS]
    statement = select(Person)
    if text:
        statement = statement.where(_matching(session, text))
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    ordered: Select[tuple[Person]] = statement.order_by(Person.id.desc())
    persons = list(session.scalars(ordered.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)))
    return PersonPage(persons, total, page, pages)


def _matching(session: Session, text: str) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = []
    upper = text.upper()
    if _CODE_RE.match(upper):
        conditions.append(Person.foreigner_code == upper)
    number = upper.replace(" ", "").replace("-", "")
    if _PASSPORT_RE.match(number):
        # Numbers are sealed; the blind index names (country, number): one per country.
        sealer = sealer_of(session)
        indexes = [sealer.passport_index(number, country) for country in COUNTRIES]
        conditions.append(Person.id.in_(select(Passport.person_id)
                                        .where(Passport.number_index.in_(indexes))))
    # Names hold no digits; one letter alone would match half the register.
    words = [] if any(char.isdigit() for char in text) else [
        word for word in name_key(text, "").split() if len(word) > 1][:_MAX_NAME_WORDS]
    if words:
        # Each word starts a word of the stored key: "MOHAMED ALI" finds "MUHAMAD ALI HASAN".
        conditions.append(and_(*[
            or_(Person.name_key.like(f"{word}%"), Person.name_key.like(f"% {word}%"))
            for word in words
        ]))
    return or_(*conditions) if conditions else Person.id < 0
