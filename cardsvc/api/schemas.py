"""Pydantic request and response bodies of the HTTP API (docs/DESIGN.md section 9).

Field names that outside systems rely on are fixed; more may be added, none renamed.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cardsvc.roles import Role
from cardsvc.services.cards import MAX_OFFLINE_LIMIT_FEN
from schemas.credential import CARD_NUMBER_PATTERN, FOREIGNER_CODE_PATTERN

__all__ = [
    "AuditEntryOut",
    "AuditOut",
    "BundleOut",
    "CardIssueIn",
    "CardIssuedOut",
    "CardOut",
    "CardStateIn",
    "ChainOut",
    "CountryOut",
    "EnrolIn",
    "EnrolmentOut",
    "HealthOut",
    "KeyOut",
    "KeysOut",
    "OfficerCreatedOut",
    "OfficerIn",
    "OfficerOut",
    "PassportChangeIn",
    "PassportChangeOut",
    "PassportIn",
    "PassportOut",
    "PayBatchIn",
    "PayBatchOut",
    "PersonOut",
    "PortraitIn",
    "ProvisionIn",
    "ProvisioningCodeOut",
    "RefreshIn",
    "StatusListRef",
    "StatusListsOut",
    "StatusRefOut",
]

# Printable text only: control characters (NUL above all) never reach the database.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_PRINTABLE)]
GivenNames = Annotated[str, StringConstraints(max_length=128, pattern=_PRINTABLE)]
Alpha3 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]
PassportNumber = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9 -]{4,24}$")]
ForeignerCode = Annotated[str, StringConstraints(pattern=FOREIGNER_CODE_PATTERN)]
Reason = Annotated[str, StringConstraints(max_length=500, pattern=_PRINTABLE)]
B64Url = Annotated[str, StringConstraints(max_length=200, pattern=r"^[A-Za-z0-9_-]*$")]
# A 2 MB image in base64 is ~2.8 M characters; the service enforces the byte cap.
Base64Image = Annotated[str, StringConstraints(min_length=1, max_length=3_000_000)]
Day = Annotated[date, Field(ge=date(1900, 1, 1), le=date(2200, 12, 31))]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PassportIn(_In):
    number: PassportNumber
    country: Alpha3
    expires: Day


class EnrolIn(_In):
    surname: Name
    given_names: GivenNames = ""
    nationality: Alpha3
    birth_date: Day
    sex: Literal["M", "F", "X"]
    passport: PassportIn
    portrait: Base64Image | None = Field(default=None, description="JPEG or PNG, base64")
    link_to: ForeignerCode | None = None
    confirm_new: bool = False


class PassportChangeIn(PassportIn):
    surname: Name | None = Field(default=None, description="as printed in the new passport")
    given_names: GivenNames | None = None
    nationality: Alpha3 | None = None


class PortraitIn(_In):
    portrait: Base64Image


class CardIssueIn(_In):
    foreigner_code: ForeignerCode
    entitlements: list[
        Literal["healthcare", "education", "social_insurance", "public_transport",
                "government_services", "payment"]
    ] = Field(max_length=16)
    valid_until: Day
    offline_limit_fen: int | None = Field(default=None, ge=0, le=MAX_OFFLINE_LIMIT_FEN)
    replace_active: bool = False


class CardStateIn(_In):
    reason: Reason = ""


class ProvisionIn(_In):
    provisioning_code: Annotated[str, StringConstraints(min_length=1, max_length=40,
                                                        pattern=r"^[A-Za-z0-9 -]*$")]
    device_key: B64Url
    proof: B64Url


class RefreshIn(_In):
    card_number: Annotated[str, StringConstraints(pattern=CARD_NUMBER_PATTERN)]
    device_key: B64Url
    time: int = Field(ge=0, le=2**40, description="request time, seconds since the epoch")
    proof: B64Url = Field(description="device signature over refresh_proof_message")


class PayBatchIn(RefreshIn):
    holder_keys: list[B64Url] = Field(min_length=1, max_length=100, description="fresh"
                                      " Ed25519 public keys, one per credential, base64url")
    proof: B64Url = Field(description="device signature over pay_batch_proof_message")


class PayBatchOut(BaseModel):
    card_number: str
    credentials: list[str] = Field(description="one-use pay credentials (compact JWS), one"
                                   " per holder key, in order (fewer at the outstanding cap)")
    days: list[int] = Field(description="per credential, in order: the UTC midnight (epoch"
                            " seconds) starting the one day it is valid on (its iat; today's"
                            " first)")
    expires_at: int = Field(description="the latest exp in the batch (end of its last day)")
    outstanding: int = Field(description="unused, unexpired one-use pay credentials now")
    offline_limit_fen: int = Field(description="the ol of each day's first"
                                   " CARDSVC_PAY_OFFLINE_PER_DAY credentials (the card's tier"
                                   " divided by it); online-only top-ups carry 0")
    balance_fen: int = Field(description="for the holder's own screen only")
    retired_keys: dict[str, int] = Field(default_factory=dict, description="kid -> end of"
                                         " its signing window (0: compromised): the phone"
                                         " drops credentials it signed for days starting at"
                                         " or after it (the authority ended them)")


class OfficerIn(_In):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_PRINTABLE)]
    roles: list[Role] = Field(min_length=1, max_length=len(Role))


class PassportOut(BaseModel):
    number: str
    country: str
    expires: date
    current: bool
    surname: str
    given_names: str
    added_at: datetime


class StatusRefOut(BaseModel):
    list_id: str
    index: int


class CardOut(BaseModel):
    card_number: str
    foreigner_code: str
    state: Literal["active", "suspended", "revoked"]
    state_reason: str | None
    entitlements: list[str]
    valid_from: date
    valid_until: date
    offline_limit_fen: int
    status: StatusRefOut | None
    provisioned: bool
    provisioned_at: datetime | None
    data_version: int
    bundle_current: bool = Field(description="the phone holds credentials with the latest data")
    created_at: datetime


class PersonOut(BaseModel):
    foreigner_code: str
    surname: str
    given_names: str
    nationality: str
    nationality_name: str
    birth_date: date
    sex: str
    portrait_digest: str | None
    passports: list[PassportOut]
    cards: list[CardOut]
    created_at: datetime
    updated_at: datetime


class EnrolmentOut(PersonOut):
    existing: bool = Field(description="true: the passport (or link_to) named a known person")
    linked: bool = False
    mismatches: list[str] = Field(default_factory=list,
                                  description="fields that differ from the known person")


class ProvisioningCodeOut(BaseModel):
    card_number: str
    provisioning_code: str = Field(description="shown once; only its hash is stored")
    provisioning_expires: datetime


class PassportChangeOut(PersonOut):
    added: bool
    personal_data_changed: bool
    cards_reissued: list[ProvisioningCodeOut] = Field(description=(
        "cards whose credentials carry the changed data: the phone holding each card gets "
        "them with a wallet refresh; the new provisioning code is only for another phone"))


class CardIssuedOut(ProvisioningCodeOut):
    card: CardOut


class BundleOut(BaseModel):
    card_number: str
    foreigner_code: str
    credentials: dict[str, str]
    expires_at: int
    status: StatusRefOut
    holder: dict[str, Any]
    entitlements: list[str]
    valid_until: date
    portrait: str | None = Field(description="base64 JPEG, or null when none is on file")
    trust_list_url: str
    status_list_url: str
    issuer: str
    card_state: str = Field(default="active", description="active or suspended (a revoked "
                            "card gets no bundle): the phone shows it to its holder")


class StatusListRef(BaseModel):
    id: str
    uri: str


class StatusListsOut(BaseModel):
    status_lists: list[StatusListRef]


class AuditEntryOut(BaseModel):
    seq: int
    at: datetime
    officer_id: int | None
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class ChainOut(BaseModel):
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    broken_at: int | None
    reason: str | None


class AuditOut(BaseModel):
    chain: ChainOut
    entries: list[AuditEntryOut]
    next_after_seq: int | None
    page: int | None = None  # with ?page=: this page (newest entries first) of ``pages``
    pages: int | None = None


class OfficerOut(BaseModel):
    id: int
    name: str
    roles: list[Role]
    active: bool
    created_at: datetime


class OfficerCreatedOut(OfficerOut):
    token: str = Field(description="shown once; only its hash is stored")


class KeyOut(BaseModel):
    kid: str
    state: str
    valid_from: int
    valid_until: int | None


class KeysOut(BaseModel):
    root_fingerprint: str
    keys: list[KeyOut]


class CountryOut(BaseModel):
    alpha3: str
    numeric: str
    name: str


class HealthOut(BaseModel):
    status: Literal["ok"]
