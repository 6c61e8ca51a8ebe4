"""Checks shared by the services (the API checks shapes too; the services never trust it)."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from cardsvc._countries import is_country
from cardsvc.services.errors import Invalid
from schemas.text import has_hidden_characters

__all__ = ["clean_name", "clean_passport_number", "clean_text", "country", "sex"]

_PASSPORT_RE = re.compile(r"^[A-Z0-9]{4,20}$")


def clean_text(value: str, *, field: str, max_len: int, allow_empty: bool = False) -> str:
    """Collapse whitespace; refuse control characters and over-long values."""
    text = " ".join(value.split())
    if len(text) > max_len or (not text and not allow_empty):
        raise Invalid("INVALID_" + field.upper(), f"{field} must be 1 to {max_len} characters")
    if has_hidden_characters(text):  # the verifier refuses the same (MALFORMED)
        raise Invalid("INVALID_" + field.upper(), f"{field} holds control characters")
    return text


# What a passport's visual zone prints in a name besides letters and marks of any script
# (ICAO 9303 allows national characters): spaces and the joiners real names carry, among
# them the interpunct of names written in Chinese and Malaysia's "A/L", "S/O".
_NAME_PUNCTUATION = frozenset(" -'\u2019\u02bc\u02bb.,\u00b7\u2027\u30fb/()")


def clean_name(value: str, *, field: str, allow_empty: bool = False) -> str:
    """A name as printed in the passport (case and diacritics kept; credentials allow 128
    characters). Digits, the machine-readable zone's filler ``<`` and other symbols or
    markup are refused: they are typing or copying slips, and a name goes on to every
    counter and every system that reads the card."""
    text = clean_text(value, field=field, max_len=128, allow_empty=allow_empty)
    if not all(char in _NAME_PUNCTUATION or unicodedata.category(char)[0] in "LM"
               for char in text):
        raise Invalid("INVALID_" + field.upper(),
                      f"{field} holds a digit or a symbol: type the name as printed in the"
                      " passport's visual zone (letters, spaces and - ' . , \u00b7 / ( ))")
    return text


def clean_passport_number(value: str) -> str:
    number = value.replace(" ", "").replace("-", "").upper()
    if not _PASSPORT_RE.match(number):
        raise Invalid("INVALID_PASSPORT_NUMBER", "a passport number is 4 to 20 letters or digits")
    return number


def country(value: str, *, field: str) -> str:
    code = value.upper()
    if not is_country(code):
        raise Invalid("UNKNOWN_COUNTRY", f"{field} must be an ISO 3166-1 alpha-3 code")
    return code


def sex(value: str) -> str:
    if value not in ("M", "F", "X"):
        raise Invalid("INVALID_SEX", "sex is M, F or X")
    return value


def birth_date(value: date, *, today: date) -> date:
    if value > today or value.year < 1900:
        raise Invalid("INVALID_BIRTH_DATE", "the birth date must be in the past")
    return value
