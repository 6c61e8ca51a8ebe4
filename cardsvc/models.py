"""SQLAlchemy 2 models of the issuing authority (separate from the API's Pydantic schemas).

Example::

    person = session.scalar(select(Person).where(Person.foreigner_code == code))
    for passport in person.passports: print(passport.number, passport.is_current)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from cardsvc.roles import ALL_ROLES, Role

__all__ = [
    "AuditEntry",
    "AuditHead",
    "Base",
    "Card",
    "CodeSequence",
    "FederationState",
    "InterauthSeen",
    "InterchangeKeyRecord",
    "IssuerKeyRecord",
    "Officer",
    "Passport",
    "Person",
    "PersonTransfer",
    "Portrait",
    "ProvisioningCode",
    "StatusEntry",
    "StatusListRecord",
    "TrustState",
    "UtcDateTime",
]

# Stable constraint names so that Alembic migrations can refer to them on any database.
_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every database (SQLite would hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)


class Officer(Base):
    """A person or machine acting on the authority; the token is kept only as a hash."""

    __tablename__ = "officers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    roles: Mapped[str] = mapped_column(String(200))  # sorted, comma-separated
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("officers.id"), nullable=True)

    @property
    def role_set(self) -> frozenset[Role]:
        # A name that is no role (never written by create_officer) grants nothing.
        return frozenset(Role(role) for role in self.roles.split(",") if role in ALL_ROLES)


class Person(Base):
    """A foreigner, known by a stable foreigner code that no passport change alters."""

    __tablename__ = "persons"
    __table_args__ = (Index("ix_persons_nationality_birth", "nationality", "birth_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    foreigner_code: Mapped[str] = mapped_column(String(18), unique=True)
    surname: Mapped[str] = mapped_column(String(128))
    given_names: Mapped[str] = mapped_column(String(128))
    nationality: Mapped[str] = mapped_column(String(3))
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(1))
    name_key: Mapped[str] = mapped_column(String(300))  # normalized, for duplicate search
    portrait_digest: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("officers.id"), nullable=True)
    # P10: active | transfer_pending (a move to another city is prepared: no new card
    # here) | moved (the person now belongs to ``moved_to``; this city keeps the record)
    state: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    moved_to: Mapped[str | None] = mapped_column(String(32), nullable=True)

    passports: Mapped[list[Passport]] = relationship(
        back_populates="person", order_by="Passport.id"
    )
    cards: Mapped[list[Card]] = relationship(back_populates="person", order_by="Card.id")


class Passport(Base):
    """Every passport a person ever held; (number, country) belongs to one person only."""

    __tablename__ = "passports"
    __table_args__ = (UniqueConstraint("number", "country", name="uq_passports_number_country"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    number: Mapped[str] = mapped_column(String(20))
    country: Mapped[str] = mapped_column(String(3))
    expires: Mapped[date] = mapped_column(Date)
    is_current: Mapped[bool] = mapped_column(Boolean)
    surname: Mapped[str] = mapped_column(String(128))  # as printed in this passport
    given_names: Mapped[str] = mapped_column(String(128))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime)
    added_by: Mapped[int | None] = mapped_column(ForeignKey("officers.id"), nullable=True)

    person: Mapped[Person] = relationship(back_populates="passports")


class Portrait(Base):
    """A portrait as re-encoded by the authority; credentials carry its digest."""

    __tablename__ = "portraits"

    digest: Mapped[str] = mapped_column(String(32), primary_key=True)  # base64url, 16 bytes
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CodeSequence(Base):
    """The last sequence number used for one foreigner-code prefix (nationality + birth)."""

    __tablename__ = "code_sequences"

    prefix: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_value: Mapped[int] = mapped_column(Integer)


class StatusListRecord(Base):
    """One status list: its fill, the revision of its bits and the last signed JWT."""

    __tablename__ = "status_lists"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    fill_limit: Mapped[int] = mapped_column(Integer)
    # Entries counted when the list was last checked; at fill_limit the list is closed.
    allocated: Mapped[int] = mapped_column(Integer, default=0)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)  # bumped when a bit changes
    signed_jwt: Mapped[str | None] = mapped_column(Text, nullable=True)
    signed_revision: Mapped[int] = mapped_column(BigInteger, default=-1)
    signed_at: Mapped[int] = mapped_column(BigInteger, default=0)
    signed_kid: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Card(Base):
    """A card; its current status entry belongs to the bundle on the holder's phone."""

    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_number: Mapped[str] = mapped_column(String(24), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))  # active | suspended | revoked
    state_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    entitlements: Mapped[str] = mapped_column(String(200))  # comma-separated names
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date] = mapped_column(Date)
    offline_limit_fen: Mapped[int] = mapped_column(BigInteger)
    status_list_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    device_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    provisioned_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    data_version: Mapped[int] = mapped_column(Integer, default=1)
    bundle_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("officers.id"), nullable=True)

    person: Mapped[Person] = relationship(back_populates="cards")

    @property
    def entitlement_list(self) -> list[str]:
        return [name for name in self.entitlements.split(",") if name]


class StatusEntry(Base):
    """One index in one status list, owned by one card's bundle; 0 valid 1 revoked 2 suspended."""

    __tablename__ = "status_entries"

    list_id: Mapped[str] = mapped_column(ForeignKey("status_lists.id"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[int] = mapped_column(SmallInteger)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ProvisioningCode(Base):
    """A one-time code the holder redeems from the wallet; only its SHA-256 is kept."""

    __tablename__ = "provisioning_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("officers.id"), nullable=True)


class IssuerKeyRecord(Base):
    """An issuer key as published in the trust list (private halves live in the key store)."""

    __tablename__ = "issuer_keys"

    kid: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)  # k1 -> 1, k2 -> 2, ...
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[int] = mapped_column(BigInteger)
    valid_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TrustState(Base):
    """The single row holding the trust list version and its last signed JWT."""

    __tablename__ = "trust_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    signed_jwt: Mapped[str | None] = mapped_column(Text, nullable=True)
    signed_version: Mapped[int] = mapped_column(BigInteger, default=0)
    issued_at: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[int] = mapped_column(BigInteger, default=0)
    root_fingerprint: Mapped[str] = mapped_column(String(64))
    # P14: from this epoch second on everything is signed "Ed25519" (RFC 9864), before it
    # "EdDSA"; published in the trust list. None: not announced yet (an authority upgraded
    # in place gets one 30 days ahead from its migration; a new one, its init time).
    alg_cutover: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class TimestampState(Base):
    """The single row holding the delegated timestamp key (public part) and the last signed
    timestamp with the lists it names (P8.5)."""

    __tablename__ = "timestamp_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    version: Mapped[int] = mapped_column(BigInteger, default=0)  # ver of signed_jwt
    signed_jwt: Mapped[str | None] = mapped_column(Text, nullable=True)
    issued_at: Mapped[int] = mapped_column(BigInteger, default=0)
    names: Mapped[str] = mapped_column(Text, default="")  # canonical JSON of tl and sl


class InterchangeKeyRecord(Base):
    """A key that signs requests between authorities (P10, ``ik`` in the trust list); never
    a credential or a status list. Private halves live in the key store."""

    __tablename__ = "interchange_keys"

    kid: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)  # ki1 -> 1, ki2 -> 2, ...
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[int] = mapped_column(BigInteger)
    valid_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class InterauthSeen(Base):
    """A signed request from another authority already accepted (replay store, P10); kept
    until it expired, then pruned."""

    __tablename__ = "interauth_seen"

    issuer: Mapped[str] = mapped_column(String(32), primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class PersonTransfer(Base):
    """A move of a person between cities (P10), on either side: ``out`` at the city the
    person leaves (prepared -> committed | aborted), ``in`` at the city that receives it
    (the outbox: preparing -> prepared -> committed | aborted). The id is the new city's."""

    __tablename__ = "person_transfers"

    transfer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    peer_city: Mapped[str] = mapped_column(String(32))
    foreigner_code: Mapped[str] = mapped_column(String(18), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    bundle: Mapped[str | None] = mapped_column(Text, nullable=True)  # signed person bundle
    officer_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class FederationState(Base):
    """The single row holding the national federation list this authority accepted last
    (P10): verified against ``root_fingerprint`` before it was stored."""

    __tablename__ = "federation_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_fingerprint: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    signed_jwt: Mapped[str] = mapped_column(Text)
    accepted_at: Mapped[int] = mapped_column(BigInteger)  # last fetched and accepted (epoch)


class AuditEntry(Base):
    """One entry of the hash-chained audit log."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    officer_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON, hashed as stored
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain head: one row, locked to serialize appends; also catches a deleted tail."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class ConsoleSignOut(Base):
    """A console session its officer ended: every process serving the console refuses it.

    Rows are only needed until the session would have expired anyway, then purged.
    """

    __tablename__ = "console_sign_outs"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"))
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)  # the session's expiry
