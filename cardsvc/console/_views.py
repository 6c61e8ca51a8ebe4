"""Database rows as plain values for the templates, read inside the transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cardsvc.console._forms import format_yuan
from cardsvc.models import AuditEntry, Card, Person
from cardsvc.services.cards import _TRANSITIONS as CARD_TRANSITIONS  # what the service allows

__all__ = [
    "AuditRow",
    "CardView",
    "PassportView",
    "PersonView",
    "SearchRow",
    "audit_row",
    "card_actions",
    "card_target",
    "card_view",
    "format_time",
    "person_view",
    "search_row",
]

# Yiwu's clock; China keeps no daylight saving time, so a fixed offset is exact.
_CHINA = timezone(timedelta(hours=8), "UTC+8")


def format_time(moment: datetime | None, *, seconds: bool = False) -> str:
    if moment is None:
        return ""
    shape = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return moment.astimezone(_CHINA).strftime(shape) + " (UTC+8)"


@dataclass(frozen=True, slots=True)
class PassportView:
    number: str
    country: str
    expires: str
    current: bool
    surname: str
    given_names: str
    added_at: str


@dataclass(frozen=True, slots=True)
class CardView:
    card_number: str
    foreigner_code: str
    holder_name: str
    state: str
    state_reason: str
    entitlements: list[str]
    valid_from: str
    valid_until: str
    offline_limit: str
    provisioned: bool
    provisioned_at: str
    bundle_current: bool
    status_ref: str
    created_at: str
    actions: list[str]


@dataclass(frozen=True, slots=True)
class PersonView:
    foreigner_code: str
    surname: str
    given_names: str
    nationality: str
    birth_date: str
    sex: str
    created_at: str
    portrait_url: str | None
    passports: list[PassportView]
    cards: list[CardView]

    @property
    def usable_card(self) -> str | None:
        return next((c.card_number for c in self.cards if c.state != "revoked"), None)


@dataclass(frozen=True, slots=True)
class SearchRow:
    foreigner_code: str
    surname: str
    given_names: str
    nationality: str
    birth_date: str
    current_passport: str
    card_states: list[str]


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    at: str
    actor: str
    action: str
    action_label: str
    subject: str
    details: str


def portrait_url(person: Person) -> str | None:
    if person.portrait_digest is None:
        return None
    # The digest in the URL makes a new portrait a new URL (the browser cache stays right).
    return f"/persons/{person.foreigner_code}/portrait?v={person.portrait_digest}"


def card_actions(state: str) -> list[str]:
    return [action for action, (allowed_from, _) in CARD_TRANSITIONS.items()
            if state in allowed_from]


def card_target(action: str) -> str:
    """The state a card moves to under ``action``."""
    return CARD_TRANSITIONS[action][1]


def card_view(card: Card) -> CardView:
    person = card.person
    status_ref = ("" if card.status_list_id is None
                  else f"{card.status_list_id} / {card.status_index}")
    return CardView(
        card.card_number, person.foreigner_code, f"{person.surname}, {person.given_names}",
        card.state, card.state_reason or "", card.entitlement_list,
        card.valid_from.isoformat(), card.valid_until.isoformat(),
        "¥" + format_yuan(card.offline_limit_fen), card.device_key is not None,
        format_time(card.provisioned_at),
        card.device_key is not None and card.bundle_version == card.data_version,
        status_ref, format_time(card.created_at), card_actions(card.state),
    )


def person_view(person: Person) -> PersonView:
    return PersonView(
        person.foreigner_code, person.surname, person.given_names, person.nationality,
        person.birth_date.isoformat(), person.sex, format_time(person.created_at),
        portrait_url(person),
        [PassportView(p.number, p.country, p.expires.isoformat(), p.is_current, p.surname,
                      p.given_names, format_time(p.added_at))
         for p in sorted(person.passports, key=lambda p: (not p.is_current, -p.id))],
        [card_view(card) for card in reversed(person.cards)],
    )


def search_row(person: Person) -> SearchRow:
    current = next((p for p in person.passports if p.is_current), None)
    return SearchRow(
        person.foreigner_code, person.surname, person.given_names, person.nationality,
        person.birth_date.isoformat(),
        "" if current is None else f"{current.country} {current.number}",
        [card.state for card in person.cards],
    )


def audit_row(entry: AuditEntry, *, actor_label: str, action_label: str) -> AuditRow:
    details: Any = json.loads(entry.details)
    return AuditRow(entry.seq, format_time(entry.at, seconds=True), actor_label, entry.action,
                    action_label, entry.subject,
                    json.dumps(details, ensure_ascii=False, sort_keys=True))
