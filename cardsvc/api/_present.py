"""Database rows to response bodies (read inside the transaction that loaded them)."""

from __future__ import annotations

import base64
import json

from cardsvc._countries import country_name
from cardsvc.api._context import AppContext
from cardsvc.api.schemas import (
    AuditEntryOut,
    BundleOut,
    CardOut,
    OfficerOut,
    PassportOut,
    PersonOut,
    ProvisioningCodeOut,
    StatusRefOut,
)
from cardsvc.models import AuditEntry, Card, Officer, Person
from cardsvc.services.cards import ReissuedCard
from cardsvc.services.provisioning import Bundle

__all__ = ["audit_out", "bundle_out", "card_out", "code_out", "officer_out", "person_out"]


def card_out(card: Card, foreigner_code: str) -> CardOut:
    status = None
    if card.status_list_id is not None and card.status_index is not None:
        status = StatusRefOut(list_id=card.status_list_id, index=card.status_index)
    return CardOut(
        card_number=card.card_number, foreigner_code=foreigner_code,
        state=card.state,  # type: ignore[arg-type]
        state_reason=card.state_reason, entitlements=card.entitlement_list,
        valid_from=card.valid_from, valid_until=card.valid_until,
        offline_limit_fen=card.offline_limit_fen, status=status,
        provisioned=card.device_key is not None, provisioned_at=card.provisioned_at,
        data_version=card.data_version,
        bundle_current=card.device_key is not None and card.bundle_version == card.data_version,
        created_at=card.created_at,
    )


def person_fields(person: Person) -> dict[str, object]:
    return dict(
        foreigner_code=person.foreigner_code, surname=person.surname,
        given_names=person.given_names, nationality=person.nationality,
        nationality_name=country_name(person.nationality), birth_date=person.birth_date,
        sex=person.sex, portrait_digest=person.portrait_digest,
        passports=[
            PassportOut(number=p.number, country=p.country, expires=p.expires,
                        current=p.is_current, surname=p.surname, given_names=p.given_names,
                        added_at=p.added_at)
            for p in person.passports
        ],
        cards=[card_out(card, person.foreigner_code) for card in person.cards],
        created_at=person.created_at, updated_at=person.updated_at,
    )


def person_out(person: Person) -> PersonOut:
    return PersonOut(**person_fields(person))  # type: ignore[arg-type]


def code_out(reissued: ReissuedCard) -> ProvisioningCodeOut:
    return ProvisioningCodeOut(card_number=reissued.card_number,
                               provisioning_code=reissued.provisioning_code,
                               provisioning_expires=reissued.provisioning_expires)


def bundle_out(bundle: Bundle, ctx: AppContext) -> BundleOut:
    person, card = bundle.person, bundle.card
    return BundleOut(
        card_number=card.card_number,
        foreigner_code=person.foreigner_code,
        credentials=bundle.credentials,
        expires_at=bundle.expires_at,
        status=StatusRefOut(list_id=bundle.status.list_id, index=bundle.status.index),
        holder={
            "foreigner_code": person.foreigner_code, "surname": person.surname,
            "given_names": person.given_names, "birth_date": person.birth_date.isoformat(),
            "nationality": person.nationality,
            "nationality_name": country_name(person.nationality), "sex": person.sex,
            "portrait_digest": person.portrait_digest,
        },
        entitlements=card.entitlement_list,
        valid_until=card.valid_until,
        portrait=None if bundle.portrait_jpeg is None else
        base64.b64encode(bundle.portrait_jpeg).decode("ascii"),
        trust_list_url=ctx.url("/v1/trust-list"),
        status_list_url=ctx.url(f"/v1/status-lists/{bundle.status.list_id}"),
        issuer=ctx.settings.issuer,
        card_state=card.state,
    )


def audit_out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(seq=entry.seq, at=entry.at, officer_id=entry.officer_id,
                         actor=entry.actor, action=entry.action, subject=entry.subject,
                         details=json.loads(entry.details), prev_hash=entry.prev_hash,
                         hash=entry.hash)


def officer_out(officer: Officer) -> OfficerOut:
    return OfficerOut(id=officer.id, name=officer.name, roles=sorted(officer.role_set),
                      active=officer.active, created_at=officer.created_at)
