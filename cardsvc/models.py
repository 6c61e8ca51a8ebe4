"""SQLAlchemy 2 models of the issuing authority (separate from the API's Pydantic schemas).

Example::

    person = session.scalar(select(Person).where(Person.foreigner_code == code))
    for passport in person.passports: print(passport.number, passport.is_current)

Passport numbers and portraits are sealed at rest (P13, ``cardsvc.services.sealing``):
the columns hold ``number_sealed``/``jpeg_sealed`` and a blind index; ``Passport.number``
and ``Portrait.jpeg`` are the opened values, sealed at flush and opened at load through
the sealer the session's database puts in ``session.info[SEALER_INFO]``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
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
    event,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    QueryContext,
    Session,
    mapped_column,
    object_session,
    relationship,
)
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.types import TypeDecorator

from cardsvc.roles import Role, roles_in

__all__ = [
    "SEALER_INFO",
    "AuditEntry",
    "AuditHead",
    "Base",
    "Card",
    "CodeSequence",
    "DataKey",
    "FederationState",
    "InterauthSeen",
    "InterchangeKeyRecord",
    "IssuerKeyRecord",
    "Officer",
    "Passport",
    "PayHandle",
    "Person",
    "PersonTransfer",
    "Portrait",
    "ProvisioningCode",
    "StatusEntry",
    "StatusListRecord",
    "TrustState",
    "UtcDateTime",
    "seal_passport",
]

# Stable constraint names so that Alembic migrations can refer to them on any database.
_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# session.info key of the sealer provider: ``provider(connection, dek_id=None) -> sealer``.
SEALER_INFO = "cardsvc.sealer"


class _FieldSealer(Protocol):
    def seal(self, plain: bytes, *, table: str, column: str, row: str) -> bytes: ...
    def open(self, sealed: bytes, *, table: str, column: str, row: str) -> bytes: ...
    def dek_id(self, sealed: bytes) -> int: ...
    def passport_index(self, number: str, country: str) -> str: ...


class _SealerProvider(Protocol):
    def __call__(self, connection: Connection, *, dek_id: int | None = None
                 ) -> _FieldSealer: ...


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
        return roles_in(self.roles)


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
    """Every passport a person ever held; (number, country) belongs to one person only.

    The number is sealed (column ``number``, attribute ``number_sealed``; associated data:
    person id and index) and
    found by its blind index ``number_index`` = HMAC(index key, country, number).
    """

    __tablename__ = "passports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    number_index: Mapped[str] = mapped_column(String(64), unique=True)
    number_sealed: Mapped[bytes] = mapped_column("number", LargeBinary)
    country: Mapped[str] = mapped_column(String(3))
    expires: Mapped[date] = mapped_column(Date)
    is_current: Mapped[bool] = mapped_column(Boolean)
    surname: Mapped[str] = mapped_column(String(128))  # as printed in this passport
    given_names: Mapped[str] = mapped_column(String(128))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime)
    added_by: Mapped[int | None] = mapped_column(ForeignKey("officers.id"), nullable=True)

    person: Mapped[Person] = relationship(back_populates="passports")

    @property
    def number(self) -> str:
        value = self.__dict__.get("_opened")
        if not isinstance(value, str):
            raise RuntimeError("this passport's number was not opened (no data keys)")
        return value

    @number.setter
    def number(self, value: str) -> None:
        self.__dict__["_opened"] = value
        self.__dict__["_to_seal"] = True
        if "number_sealed" in self.__dict__:  # a stored row: the flush must see it
            flag_modified(self, "number_sealed")

    def sealed_row(self) -> str:
        return f"{self.person_id}:{self.number_index}"


class Portrait(Base):
    """A portrait as re-encoded by the authority; credentials carry its digest.

    The JPEG is sealed (column ``jpeg``, attribute ``jpeg_sealed``; associated data: digest
    and person id).
    """

    __tablename__ = "portraits"

    digest: Mapped[str] = mapped_column(String(32), primary_key=True)  # base64url, 16 bytes
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    jpeg_sealed: Mapped[bytes] = mapped_column("jpeg", LargeBinary)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    @property
    def jpeg(self) -> bytes:
        value = self.__dict__.get("_opened")
        if not isinstance(value, bytes):
            raise RuntimeError("this portrait was not opened (no data keys)")
        return value

    @jpeg.setter
    def jpeg(self, value: bytes) -> None:
        self.__dict__["_opened"] = value
        self.__dict__["_to_seal"] = True
        if "jpeg_sealed" in self.__dict__:
            flag_modified(self, "jpeg_sealed")

    def sealed_row(self) -> str:
        return f"{self.digest}:{self.person_id}"


class DataKey(Base):
    """A data key wrapped by a key-encryption key of the key store or the token (P13): ``seal`` keys
    (DEKs, the newest seals) and the ``index`` key of the blind index."""

    __tablename__ = "data_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    # Which KEK wraps it: "file:<name>" (passphrase store) or "pkcs11:<label>" (the token).
    kek: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


def _sealer(session: Session, dek_id: int | None = None) -> _FieldSealer:
    provider: _SealerProvider | None = session.info.get(SEALER_INFO)
    if provider is None:
        from cardsvc.services.errors import Unavailable  # no model depends on services

        raise Unavailable("DATA_KEY_UNAVAILABLE", "this database was opened without keys")
    return provider(session.connection(), dek_id=dek_id)


def seal_passport(session: Session, row: Passport) -> None:
    """Seal a passport row's number now (its person id set), as a flush would: for a row
    written by a prebuilt INSERT instead of a flush."""
    sealer = _sealer(session)
    assert row.person_id is not None and row.country
    row.number_index = sealer.passport_index(row.number, row.country)
    row.number_sealed = sealer.seal(row.number.encode("ascii"), table="passports",
                                    column="number", row=row.sealed_row())
    row.__dict__["_to_seal"] = False


def _seal_pending(session: Session) -> None:
    for row in list(session.new) + list(session.dirty):
        if not row.__dict__.get("_to_seal"):
            continue
        if isinstance(row, Passport):
            seal_passport(session, row)
        elif isinstance(row, Portrait):
            sealer = _sealer(session)
            assert row.person_id is not None and row.digest
            row.jpeg_sealed = sealer.seal(row.jpeg, table="portraits", column="jpeg",
                                          row=row.sealed_row())
        row.__dict__["_to_seal"] = False


def _open_loaded(row: Passport | Portrait, session: Session | None) -> None:
    if session is None or row.__dict__.get("_to_seal"):
        return
    if isinstance(row, Passport):
        sealed = row.__dict__.get("number_sealed")
        if sealed is not None:
            sealer = _sealer(session, _dek_id(sealed))
            row.__dict__["_opened"] = sealer.open(sealed, table="passports", column="number",
                                                  row=row.sealed_row()).decode("ascii")
    else:
        sealed = row.__dict__.get("jpeg_sealed")
        if sealed is not None:
            sealer = _sealer(session, _dek_id(sealed))
            row.__dict__["_opened"] = sealer.open(sealed, table="portraits", column="jpeg",
                                                  row=row.sealed_row())


def _dek_id(sealed: bytes) -> int | None:
    return int.from_bytes(sealed[1:5], "big") if len(sealed) >= 5 else None


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    _seal_pending(session)


@event.listens_for(Passport, "load")
@event.listens_for(Portrait, "load")
def _on_load(row: Passport | Portrait, context: QueryContext) -> None:
    _open_loaded(row, context.session)


@event.listens_for(Passport, "refresh")
@event.listens_for(Portrait, "refresh")
def _on_refresh(row: Passport | Portrait, context: QueryContext | None, _attrs: Any) -> None:
    _open_loaded(row, object_session(row) if context is None else context.session)


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


class PayHandle(Base):
    """One one-use pay credential (P13.3): its random handle (``ph``), the card it pays from
    and its own random status entry. Only the authority can map a handle to the card.

    ``used_at`` is set in the transaction that charged it (a second charge is
    PAY_CODE_USED online, a double spend offline; its status entry is then set revoked so
    a till that syncs refuses it offline); ``ended_at`` when the card's device changed, it
    was refreshed past it or the key that signed it retired before its day (its status
    entry is then revoked for good).

    ``valid_from`` is the start of the one UTC day it is valid on (its ``iat``),
    ``offline_limit_fen`` its ``ol`` (0: an online-only top-up), ``day_limit_fen`` the
    card's tier that day (the most one till may take offline from the card's credentials
    of that day), ``kid`` the key that signed it. NULL in rows from before day-bound
    credentials (migration 0211)."""

    __tablename__ = "pay_handles"

    handle: Mapped[str] = mapped_column(String(32), primary_key=True)  # 16 bytes, hex
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), index=True)
    status_list_id: Mapped[str] = mapped_column(String(16))
    status_index: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    payment_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    valid_from: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    offline_limit_fen: Mapped[int | None] = mapped_column(Integer, nullable=True)
    day_limit_fen: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kid: Mapped[str | None] = mapped_column(String(16), nullable=True)


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


class PortraitBlob(Base):
    """A portrait sealed once for the portrait bundle (P15) under a random portrait key.

    ``blob_id`` is random, never the digest; ``portrait_key`` is as secret as the portrait
    it opens, so it is held sealed like the portrait (P13; associated data: table, column
    and blob id)."""

    __tablename__ = "portrait_blobs"

    blob_id: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    digest: Mapped[str] = mapped_column(String(32), index=True)
    portrait_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    added_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    removed_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PortraitSlot(Base):
    """One credential's slot in the portrait bundle: its index and wrapped entry (P15)."""

    __tablename__ = "portrait_slots"

    index: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), index=True)
    blob_id: Mapped[bytes] = mapped_column(ForeignKey("portrait_blobs.blob_id"), index=True)
    entry: Mapped[bytes] = mapped_column(LargeBinary(76))
    live: Mapped[bool] = mapped_column(Boolean, default=True)
    added_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    removed_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PortraitSegment(Base):
    """A published segment of the portrait bundle (immutable, content-addressed)."""

    __tablename__ = "portrait_segments"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    sha256: Mapped[str] = mapped_column(String(43), unique=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PortraitBundleState(Base):
    """The single row holding the last signed portrait bundle manifest (P15)."""

    __tablename__ = "portrait_bundle_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    signed_jwt: Mapped[str | None] = mapped_column(Text, nullable=True)
    issued_at: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[int] = mapped_column(BigInteger, default=0)
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
