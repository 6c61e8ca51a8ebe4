"""Reading the console's forms: every field is checked (with the services' own checks where
they exist) and every problem is reported at once, as a stable code per field.

Each reader returns what to show again in the form, the cleaned input (None when any
field is wrong) and the problems by field name.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from cardsvc.services import _validate as check
from cardsvc.services.errors import Invalid
from cardsvc.services.persons import PassportDetails, PersonDetails
from cardsvc.services.portraits import normalize_portrait
from schemas import Entitlement

__all__ = [
    "ENTITLEMENT_NAMES",
    "CardInput",
    "EnrolInput",
    "FieldProblems",
    "PassportInput",
    "card_defaults",
    "field_for",
    "format_yuan",
    "read_card",
    "read_enrol",
    "read_passport",
    "read_reason",
]

T = TypeVar("T")
FieldProblems = dict[str, str]
Values = dict[str, str]
_MAX_REASON = 500
_YUAN_RE = re.compile(r"^[0-9]{1,7}(\.[0-9]{1,2})?$")
ENTITLEMENT_NAMES = [entitlement.value for entitlement in Entitlement]

# Which form field a service's error code belongs to (others are shown above the form).
_FIELD_OF_CODE: dict[str, dict[str, str]] = {
    "enrol": {
        "INVALID_SURNAME": "surname", "INVALID_GIVEN_NAMES": "given_names",
        "INVALID_BIRTH_DATE": "birth_date", "INVALID_SEX": "sex",
        "INVALID_PASSPORT_NUMBER": "passport_number",
        "PASSPORT_ALREADY_ENROLLED": "passport_number", "PORTRAIT_TOO_LARGE": "portrait",
        "PORTRAIT_FORMAT": "portrait", "PORTRAIT_INVALID": "portrait",
    },
    "passport": {
        "INVALID_PASSPORT_NUMBER": "number", "PASSPORT_ALREADY_ENROLLED": "number",
        "INVALID_SURNAME": "surname", "INVALID_GIVEN_NAMES": "given_names",
    },
    "card": {
        "INVALID_VALIDITY": "valid_until", "INVALID_OFFLINE_LIMIT": "offline_limit",
        "UNKNOWN_ENTITLEMENT": "entitlements", "ACTIVE_CARD_EXISTS": "replace_active",
    },
    "change": {"INVALID_REASON": "reason"},
}


def field_for(form: str, code: str) -> str | None:
    """The field of ``form`` that a service error code is about, if any."""
    return _FIELD_OF_CODE[form].get(code)


@dataclass(frozen=True, slots=True)
class EnrolInput:
    details: PersonDetails
    passport: PassportDetails
    portrait_jpeg: bytes  # normalized by the services' portrait check


@dataclass(frozen=True, slots=True)
class PassportInput:
    passport: PassportDetails
    surname: str
    given_names: str
    nationality: str


@dataclass(frozen=True, slots=True)
class CardInput:
    entitlements: list[str]
    valid_until: date
    offline_limit_fen: int
    replace_active: bool


class _Reader:
    """Collects one problem per field while cleaning values."""

    def __init__(self, form: Mapping[str, str]) -> None:
        self.form = form
        self.values: Values = {}
        self.problems: FieldProblems = {}

    def text(self, name: str) -> str:
        value = self.form.get(name, "")
        self.values[name] = value
        return value

    def clean(self, name: str, cleaner: Callable[[str], T], *, required: bool = True
              ) -> T | None:
        raw = self.text(name).strip()
        if required and not raw:
            self.problems[name] = "REQUIRED"
            return None
        try:
            return cleaner(raw)
        except Invalid as error:
            self.problems[name] = error.code
            return None

    def day(self, name: str) -> date | None:
        raw = self.text(name).strip()
        if not raw:
            self.problems[name] = "REQUIRED"
            return None
        try:
            value: date | None = date.fromisoformat(raw)
        except ValueError:
            value = None
        if value is None or len(raw) != 10 or value.year < 1900:
            self.problems[name] = "INVALID_DATE"
            return None
        return value


def _country(field: str) -> Callable[[str], str]:
    return lambda value: check.country(value, field=field)


def _name(field: str, *, allow_empty: bool = False) -> Callable[[str], str]:
    return lambda value: check.clean_name(value, field=field, allow_empty=allow_empty)


def _passport_expiry(reader: _Reader, name: str, *, today: date) -> date | None:
    expires = reader.day(name)
    if expires is not None and expires <= today:
        reader.problems[name] = "PASSPORT_EXPIRED"
    return expires


def read_enrol(
    form: Mapping[str, str], *, uploaded_portrait: bytes | None, today: date,
    portrait_max_bytes: int,
) -> tuple[Values, EnrolInput | None, FieldProblems]:
    """The enrolment form. The portrait is an upload or, after a duplicate check, the
    already-normalized JPEG carried back in ``portrait_b64``."""
    reader = _Reader(form)
    surname = reader.clean("surname", _name("surname"))
    given_names = reader.clean("given_names", _name("given_names", allow_empty=True),
                               required=False)
    nationality = reader.clean("nationality", _country("nationality"))
    birth = reader.day("birth_date")
    if birth is not None and "birth_date" not in reader.problems:
        try:
            birth = check.birth_date(birth, today=today)
        except Invalid as error:
            reader.problems["birth_date"] = error.code
    sex = reader.clean("sex", check.sex)
    number = reader.clean("passport_number", check.clean_passport_number)
    country = reader.clean("passport_country", _country("passport country"))
    expires = _passport_expiry(reader, "passport_expires", today=today)
    portrait = _portrait(reader, uploaded_portrait, max_bytes=portrait_max_bytes)
    if reader.problems:
        return reader.values, None, reader.problems
    assert surname is not None and given_names is not None and nationality is not None
    assert birth is not None and sex is not None and number is not None
    assert country is not None and expires is not None and portrait is not None
    return reader.values, EnrolInput(
        PersonDetails(surname, given_names, nationality, birth, sex),
        PassportDetails(number, country, expires), portrait), {}


def _portrait(reader: _Reader, uploaded: bytes | None, *, max_bytes: int) -> bytes | None:
    carried = reader.text("portrait_b64")
    if uploaded:
        raw = uploaded
    elif carried:
        try:
            raw = base64.b64decode(carried, validate=True)
        except (binascii.Error, ValueError):
            reader.problems["portrait"] = "PORTRAIT_INVALID"
            reader.values["portrait_b64"] = ""
            return None
    else:
        reader.problems["portrait"] = "PORTRAIT_REQUIRED"
        return None
    try:
        jpeg = normalize_portrait(raw, max_bytes=max_bytes).jpeg
    except Invalid as error:
        reader.problems["portrait"] = error.code
        reader.values["portrait_b64"] = ""
        return None
    # Kept in the form from now on, so that an error elsewhere needs no new upload.
    reader.values["portrait_b64"] = base64.b64encode(jpeg).decode("ascii")
    return jpeg


def read_passport(
    form: Mapping[str, str], *, today: date
) -> tuple[Values, PassportInput | None, FieldProblems]:
    reader = _Reader(form)
    number = reader.clean("number", check.clean_passport_number)
    country = reader.clean("country", _country("country"))
    expires = _passport_expiry(reader, "expires", today=today)
    surname = reader.clean("surname", _name("surname"))
    given_names = reader.clean("given_names", _name("given_names", allow_empty=True),
                               required=False)
    nationality = reader.clean("nationality", _country("nationality"))
    if reader.problems:
        return reader.values, None, reader.problems
    assert number is not None and country is not None and expires is not None
    assert surname is not None and given_names is not None and nationality is not None
    return reader.values, PassportInput(PassportDetails(number, country, expires), surname,
                                        given_names, nationality), {}


def read_card(
    form: Mapping[str, str], entitlements: Sequence[str], *, default_offline_limit_fen: int,
) -> tuple[dict[str, object], CardInput | None, FieldProblems]:
    reader = _Reader(form)
    chosen = [name for name in ENTITLEMENT_NAMES if name in entitlements]
    if not entitlements:
        reader.problems["entitlements"] = "NO_ENTITLEMENT"
    elif len(chosen) != len(set(entitlements)):
        reader.problems["entitlements"] = "UNKNOWN_ENTITLEMENT"
    valid_until = reader.day("valid_until")
    limit_text = reader.text("offline_limit").strip().replace(",", "")
    offline_limit_fen = default_offline_limit_fen
    if limit_text:
        try:
            if not _YUAN_RE.match(limit_text):
                raise InvalidOperation
            offline_limit_fen = int(Decimal(limit_text) * 100)
        except InvalidOperation:
            reader.problems["offline_limit"] = "INVALID_AMOUNT"
    replace_active = reader.text("replace_active") == "1"
    values: dict[str, object] = {**reader.values, "entitlements": chosen,
                                 "replace_active": replace_active}
    if reader.problems:
        return values, None, reader.problems
    assert valid_until is not None
    return values, CardInput(chosen, valid_until, offline_limit_fen, replace_active), {}


def read_reason(form: Mapping[str, str]) -> tuple[Values, str | None, FieldProblems]:
    """The reason of a revocation, suspension or reinstatement: required, one line."""
    reader = _Reader(form)
    reason = reader.clean(
        "reason", lambda value: check.clean_text(value, field="reason", max_len=_MAX_REASON))
    return reader.values, reason, reader.problems


def card_defaults(*, today: date, default_offline_limit_fen: int) -> dict[str, object]:
    """A new card's form: every entitlement, five years, the authority's offline limit."""
    return {
        "entitlements": list(ENTITLEMENT_NAMES),
        "valid_until": (today.replace(year=today.year + 5) if not (today.month == 2 and
                        today.day == 29) else today + timedelta(days=5 * 365)).isoformat(),
        "offline_limit": format_yuan(default_offline_limit_fen),
        "replace_active": False,
    }


def format_yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"
