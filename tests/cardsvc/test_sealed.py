"""P13: passport numbers and portraits sealed at rest, found by a blind index; backups
sealed to an offline recovery key; an existing plaintext register converted in place."""

from __future__ import annotations

import base64
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from cardsvc_kit import Authority, portrait_bytes
from kit.postgres import conninfo, pg_create, pg_drop, pg_url, unique_name

from cardsvc.db import Database
from cardsvc.migrations import alembic_config, upgrade_to_head
from cardsvc.models import Passport, Portrait
from cardsvc.services import persons
from cardsvc.services.backup import create_backup, restore_backup
from cardsvc.services.errors import Invalid
from cardsvc.services.sealing import DataKeys, SealedDataError, sealer_of
from keys import KeyStore
from keys.recipient import load_identity, load_recipient, recovery_keypair

NUMBER = "SEAL93571"
PREVIOUS_HEAD = "0140_p10_federation"


def _enrol_with_portrait(authority: Authority, number: str = NUMBER, **extra: Any
                         ) -> tuple[dict[str, Any], bytes]:
    person = authority.enrol(passport={"number": number, "country": "NGA",
                                       "expires": "2031-01-01"},
                             portrait=base64.b64encode(portrait_bytes()).decode(), **extra)
    stored = authority.client.get(f"/v1/portraits/{person['portrait_digest']}",
                                  headers=authority.admin)
    assert stored.status_code == 200, stored.text
    return person, stored.content


def _raw_rows(authority: Authority) -> bytes:
    """Every byte the database holds: the SQLite file (+ WAL), or every row of every
    PostgreSQL table as the server returns it (no decoding by our code)."""
    if authority.backend == "sqlite":
        path = Path(authority.settings.database_url_or_default().removeprefix("sqlite:///"))
        authority.database.dispose()
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = path.with_name(path.name + "-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    url = authority.settings.database_url_or_default()
    name = url.rsplit("/", 1)[1].split("?")[0]
    out = bytearray()
    with psycopg.connect(conninfo(name)) as connection:
        tables = [row[0] for row in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema='public'")]
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    out += bytes(value) if isinstance(value, bytes | memoryview) else (
                        str(value).encode())
    return bytes(out)


def test_the_raw_database_holds_no_passport_number_nor_portrait(authority: Authority) -> None:
    person, jpeg = _enrol_with_portrait(authority)
    authority.client.post(f"/v1/persons/{person['foreigner_code']}/passports",
                          headers=authority.admin,
                          json={"number": "SEAL10001", "country": "NGA",
                                "expires": "2032-01-01"})
    raw = _raw_rows(authority)
    for secret in (NUMBER.encode(), b"SEAL10001", jpeg[:64], jpeg[len(jpeg) // 2:][:64]):
        assert secret not in raw


def test_lookup_by_passport_and_duplicate_detection_still_work(authority: Authority) -> None:
    person, _ = _enrol_with_portrait(authority, surname="OKAFOR", given_names="Chinedu")
    found = authority.client.get("/v1/persons", params={"passport": NUMBER, "country": "NGA"},
                                 headers=authority.admin)
    assert found.status_code == 200, found.text
    assert found.json()["foreigner_code"] == person["foreigner_code"]
    assert authority.client.get("/v1/persons", params={"passport": NUMBER, "country": "GHA"},
                                headers=authority.admin).status_code == 404
    same = authority.enrol(expect=200, passport={"number": NUMBER, "country": "NGA",
                                                 "expires": "2031-01-01"})
    assert same["foreigner_code"] == person["foreigner_code"]
    answer = authority.client.post("/v1/persons", headers=authority.admin, json={
        "surname": "OKAFOR", "given_names": "Chinedu", "nationality": "NGA",
        "birth_date": "1985-03-02", "sex": "M",
        "passport": {"number": "OTHER0001", "country": "NGA", "expires": "2031-01-01"}})
    assert answer.status_code == 409 and answer.json()["code"] == "POSSIBLE_DUPLICATE"
    candidates = answer.json()["candidates"]
    assert candidates[0]["passports"][0]["number"] == NUMBER


def test_attack_a_sealed_number_copied_to_another_row_does_not_open(
    authority: Authority
) -> None:
    _enrol_with_portrait(authority, "SEALA0001")
    _enrol_with_portrait(authority, "SEALB0002")

    def swap(session: Any) -> None:
        first, second = session.scalars(sa.select(Passport).order_by(Passport.id.desc())
                                        .limit(2)).all()
        session.execute(sa.text("UPDATE passports SET number = :sealed WHERE id = :id"),
                        {"sealed": second.number_sealed, "id": first.id})

    authority.database.transact(swap)
    with pytest.raises(SealedDataError) as refused:
        authority.database.transact(lambda session: persons.find_by_passport(
            session, number="SEALB0002", country="NGA"), readonly=True)
    assert refused.value.code == "SEALED_DATA_INVALID"


def test_attack_a_sealed_portrait_moved_to_another_digest_does_not_open(
    authority: Authority
) -> None:
    _enrol_with_portrait(authority, "SEALC0003")

    def move(session: Any) -> str:
        row = session.scalars(sa.select(Portrait)).first()
        session.execute(sa.text(
            "INSERT INTO portraits (digest, person_id, jpeg, width, height, created_at)"
            " SELECT :digest, person_id, jpeg, width, height, created_at FROM portraits"
            " WHERE digest = :old"), {"digest": "A" * 22, "old": row.digest})
        return str(row.digest)

    authority.database.transact(move)
    with pytest.raises(SealedDataError):
        authority.database.transact(lambda session: persons.portrait_bytes(
            session, digest="A" * 22), readonly=True)


def test_a_database_opened_without_its_data_keys_reads_no_passport(
    authority: Authority
) -> None:
    _enrol_with_portrait(authority, "SEALD0004")
    keyless = Database(authority.settings.database_url_or_default(), pool_size=1)
    try:
        with pytest.raises(Exception) as refused:
            keyless.transact(lambda session: persons.find_by_passport(
                session, number="SEALD0004", country="NGA"), readonly=True)
        assert getattr(refused.value, "code", "") == "DATA_KEY_UNAVAILABLE"
    finally:
        keyless.dispose()


# --- backups sealed to the recovery key -----------------------------------------------------

def test_the_raw_sealed_backup_holds_no_passport_nor_portrait_and_only_its_key_opens_it(
    authority: Authority, tmp_path: Path
) -> None:
    _, jpeg = _enrol_with_portrait(authority, surname="BACKUPNAME")
    private_pem, public_text = recovery_keypair()
    archive = tmp_path / "b.sealed"
    create_backup(authority.settings, out=archive, now=authority.clock(),
                  recipient=load_recipient(public_text))
    raw = archive.read_bytes()
    for secret in (NUMBER.encode(), jpeg[:64], b"BACKUPNAME", b"MANIFEST", b"BEGIN"):
        assert secret not in raw
    wrong_pem, _ = recovery_keypair()
    with pytest.raises(Invalid) as wrong:
        restore_backup(archive=archive, data_dir=tmp_path / "w",
                       identity=load_identity(wrong_pem))
    assert wrong.value.code == "BACKUP_KEY_MISMATCH"
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())
    with pytest.raises(Invalid) as missing:
        restore_backup(archive=archive, data_dir=tmp_path / "m")
    assert missing.value.code == "BACKUP_IDENTITY_REQUIRED"
    restore_backup(archive=archive, data_dir=tmp_path / "r", identity=load_identity(private_pem))
    assert (tmp_path / "r" / "keys" / "data-kek.key").exists()


@pytest.mark.parametrize("cut", ["flip", "truncate", "extend"])
def test_attack_an_altered_sealed_backup_is_refused(
    authority: Authority, tmp_path: Path, cut: str
) -> None:
    private_pem, public_text = recovery_keypair()
    archive = tmp_path / "b.sealed"
    create_backup(authority.settings, out=archive, now=authority.clock(),
                  recipient=load_recipient(public_text))
    raw = bytearray(archive.read_bytes())
    if cut == "flip":
        raw[len(raw) // 2] ^= 1
    elif cut == "truncate":
        del raw[-20:]
    else:
        raw += raw[-40:]
    archive.write_bytes(bytes(raw))
    with pytest.raises(Invalid) as refused:
        restore_backup(archive=archive, data_dir=tmp_path / "r",
                       identity=load_identity(private_pem))
    assert refused.value.code == "BACKUP_KEY_MISMATCH"


# --- the migration of a plaintext register ----------------------------------------------------

_NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _plaintext_register(url: str, jpeg: bytes, count: int) -> None:
    """A database at the previous head holding persons, passports and portraits in clear."""
    command.upgrade(alembic_config(url), PREVIOUS_HEAD)
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine, only=["persons", "passports", "portraits"])
    persons_t, passports_t, portraits_t = (meta.tables[name] for name in
                                           ("persons", "passports", "portraits"))
    naive = _NOW.replace(tzinfo=None) if url.startswith("sqlite") else _NOW
    with engine.begin() as connection:
        for n in range(1, count + 1):
            connection.execute(persons_t.insert().values(
                id=n, foreigner_code=f"93356619850302{n:04d}", surname=f"OLD{n}",
                given_names="Person", nationality="NGA", birth_date=date(1985, 3, 2), sex="M",
                name_key=f"OLD{n} PERSON", portrait_digest=f"d{n:05d}", created_at=naive,
                updated_at=naive))
            connection.execute(passports_t.insert().values(
                id=n, person_id=n, number=f"PLAIN{n:04d}", country="NGA",
                expires=date(2031, 1, 1), is_current=True, surname=f"OLD{n}",
                given_names="Person", added_at=naive))
            connection.execute(portraits_t.insert().values(
                digest=f"d{n:05d}", person_id=n, jpeg=jpeg + bytes([n % 256]), width=60,
                height=80, created_at=naive))
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql",
                                                            marks=pytest.mark.postgres)])
def test_the_migration_seals_an_existing_plaintext_register_in_place(
    tmp_path: Path, backend: str
) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"JPEG-PORTRAIT-BYTES-" * 40
    name = None
    if backend == "sqlite":
        db_file = tmp_path / "old.db"
        url = f"sqlite:///{db_file}"
    else:
        name = unique_name("sealmig")
        pg_create(name)
        url = pg_url(name)
    try:
        count = 1203  # more than two batches
        _plaintext_register(url, jpeg, count)
        with pytest.raises(RuntimeError, match="key store"):
            upgrade_to_head(url)  # no key store: refused, nothing converted
        store = KeyStore(tmp_path / "keys", passphrase=b"migration-pass")
        upgrade_to_head(url, key_store=store)
        upgrade_to_head(url, key_store=store)  # at head: nothing more to do
        database = Database(url, pool_size=1, sealer=DataKeys(lambda: store))
        try:
            person = database.transact(lambda session: persons.find_by_passport(
                session, number="PLAIN0777", country="NGA"), readonly=True)
            assert person.foreigner_code == "933566198503020777"
            opened = database.transact(lambda session: persons.portrait_bytes(
                session, digest="d00042"), readonly=True)
            assert opened == jpeg + bytes([42])
            assert database.transact(lambda session: len(sealer_of(session).deks),
                                     readonly=True) == 1
        finally:
            database.dispose()
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            numbers = [bytes(row[0]) for row in connection.execute(
                sa.text("SELECT number FROM passports"))]
            pictures = [bytes(row[0]) for row in connection.execute(
                sa.text("SELECT jpeg FROM portraits"))]
        engine.dispose()
        assert len(numbers) == count and not any(b"PLAIN" in value for value in numbers)
        assert not any(jpeg[:40] in value for value in pictures)
        if backend == "sqlite":
            raw = db_file.read_bytes()
            assert b"PLAIN0777" not in raw and jpeg[4:40] not in raw
    finally:
        if name is not None:
            pg_drop(name)


def test_rotating_the_data_key_reseals_everything_and_lookups_go_on(
    authority: Authority
) -> None:
    from typer.testing import CliRunner

    from cardsvc.cli import app

    person, jpeg = _enrol_with_portrait(authority, "SEALR0001")
    _enrol_with_portrait(authority, "SEALR0002")
    env = {"CARDSVC_KEY_PASSPHRASE": "test-pass",
           "CARDSVC_DATABASE_URL": authority.settings.database_url_or_default()}
    rotated = CliRunner().invoke(app, ["keys", "rotate-data-key", "--batch", "1",
                                       "--data-dir", str(authority.settings.data_dir)], env=env)
    assert rotated.exit_code == 0, rotated.output
    # two numbers and one portrait (both persons sent the same picture)
    assert "3 fields re-sealed" in rotated.output
    new_dek = int(rotated.output.split("dek-", 1)[1].split()[0])

    def dek_ids(session: Any) -> set[int]:
        sealer = sealer_of(session, dek_id=new_dek)
        return {sealer.dek_id(bytes(value)) for value in session.scalars(
            sa.text("SELECT number FROM passports UNION ALL SELECT jpeg FROM portraits"))}

    assert authority.database.transact(dek_ids, readonly=True) == {new_dek}
    found = authority.client.get("/v1/persons", params={"passport": "SEALR0001",
                                                        "country": "NGA"},
                                 headers=authority.admin)
    assert found.status_code == 200 and found.json()["foreigner_code"] == person[
        "foreigner_code"]
    assert authority.client.get(f"/v1/portraits/{person['portrait_digest']}",
                                headers=authority.admin).content == jpeg
