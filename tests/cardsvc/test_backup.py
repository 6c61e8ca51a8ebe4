"""Backup and restore of the authority: a consistent snapshot with the encrypted keys,
checked digest by digest and against its audit anchor when restored."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardsvc.cli import app
from cardsvc.db import Database
from cardsvc.services.audit import Actor, verify_chain
from cardsvc.services.backup import MANIFEST, create_backup, restore_backup
from cardsvc.services.bootstrap import initialise, open_keyring
from cardsvc.services.errors import Conflict, Invalid
from cardsvc.services.officers import create_officer
from cardsvc.services.trust import active_signer
from cardsvc.settings import Settings, get_settings

NOW = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)
PASSPHRASE = "backup-test-passphrase"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("CARDSVC_DATABASE_URL", "CARDSVC_KEY_PASSPHRASE", "CARDSVC_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CARDSVC_KEY_PASSPHRASE", PASSPHRASE)
    configured = get_settings(data_dir=tmp_path / "data", status_list_size=1024)
    initialise(configured, now=NOW)
    return configured


def _add_officers(settings: Settings, count: int) -> None:
    database = Database.from_settings(settings)
    try:
        for number in range(count):
            database.transact(lambda session, n=number: create_officer(
                session, name=f"Officer {n}", roles=["registrar"], actor=Actor.cli(),
                now=NOW))
    finally:
        database.dispose()


def _chain(settings: Settings) -> tuple[bool, int]:
    database = Database.from_settings(settings)
    try:
        check = database.transact(verify_chain, readonly=True)
        return check.ok, check.head_seq
    finally:
        database.dispose()


def test_backup_and_restore_bring_back_the_authority(settings: Settings, tmp_path: Path) -> None:
    _add_officers(settings, 3)
    archive = tmp_path / "fmc.tar.gz"
    manifest = create_backup(settings, out=archive, now=NOW)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as opened:
        names = set(opened.getnames())
    assert names == {MANIFEST, "cardsvc.db", *manifest.files}
    assert any(name.startswith("keys/") for name in names)
    assert "key-passphrase" not in " ".join(names)  # never beside the keys it opens
    assert "console-session.key" not in names

    restored_dir = tmp_path / "restored"
    restored = restore_backup(archive=archive, data_dir=restored_dir)
    assert restored == manifest
    restored_settings = get_settings(data_dir=restored_dir, status_list_size=1024)
    assert _chain(restored_settings) == _chain(settings)
    # The keys open with the passphrase given on the new machine, and sign.
    database = Database.from_settings(restored_settings)
    try:
        signer = database.transact(
            lambda session: active_signer(session, keyring=open_keyring(restored_settings)),
            readonly=True)
        assert signer.sign(b"x")
    finally:
        database.dispose()


def test_a_backup_taken_while_writes_go_on_is_consistent(
    settings: Settings, tmp_path: Path
) -> None:
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            _add_officers(settings, 1)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        archives = []
        for number in range(3):
            archive = tmp_path / f"live-{number}.tar.gz"
            create_backup(settings, out=archive, now=NOW)
            archives.append(archive)
    finally:
        stop.set()
        writer.join(timeout=60)
    for number, archive in enumerate(archives):
        restore_backup(archive=archive, data_dir=tmp_path / f"restored-{number}")  # checks


def _rewrite(archive: Path, out: Path, change: str) -> None:
    with tarfile.open(archive) as source, tarfile.open(out, "w:gz") as target:
        for member in source.getmembers():
            body = source.extractfile(member)
            content = body.read() if body is not None else b""
            if change == "flip_db_byte" and member.name == "cardsvc.db":
                content = content[:5000] + bytes([content[5000] ^ 1]) + content[5001:]
            if change == "forge_anchor" and member.name == MANIFEST:
                fields = json.loads(content)
                fields["audit_anchor"] = "1:" + "0" * 64
                content = json.dumps(fields).encode()
            if change == "drop_key" and member.name.startswith("keys/"):
                continue
            if change == "traversal" and member.name == "cardsvc.db":
                member.name = "../escaped.db"
            member.size = len(content)
            target.addfile(member, io.BytesIO(content))
        if change == "extra_file":
            info = tarfile.TarInfo("keys/attacker.pem")
            info.size = 4
            target.addfile(info, io.BytesIO(b"evil"))


@pytest.mark.parametrize("change", ["flip_db_byte", "forge_anchor", "drop_key", "traversal",
                                    "extra_file", "not_an_archive"])
def test_a_damaged_or_forged_backup_is_refused_and_leaves_nothing(
    settings: Settings, tmp_path: Path, change: str
) -> None:
    archive = tmp_path / "fmc.tar.gz"
    create_backup(settings, out=archive, now=NOW)
    damaged = tmp_path / "damaged.tar.gz"
    if change == "not_an_archive":
        damaged.write_bytes(b"\x1f\x8b not really gzip")
    else:
        _rewrite(archive, damaged, change)
    target = tmp_path / "restored"
    with pytest.raises(Invalid) as refused:
        restore_backup(archive=damaged, data_dir=target)
    assert refused.value.code == "BACKUP_CORRUPT"
    assert not target.exists() or list(target.iterdir()) == []
    assert not (tmp_path / "escaped.db").exists()


def test_restore_never_overwrites_and_backup_never_overwrites(
    settings: Settings, tmp_path: Path
) -> None:
    archive = tmp_path / "fmc.tar.gz"
    create_backup(settings, out=archive, now=NOW)
    with pytest.raises(Conflict) as exists:
        create_backup(settings, out=archive, now=NOW)
    assert exists.value.code == "BACKUP_EXISTS"
    with pytest.raises(Conflict) as occupied:
        restore_backup(archive=archive, data_dir=settings.data_dir)
    assert occupied.value.code == "DATA_DIR_NOT_EMPTY"


def test_the_command_line_round_trip(settings: Settings, tmp_path: Path) -> None:
    archive = tmp_path / "cli.sealed"
    runner = CliRunner()
    pair = runner.invoke(app, ["keys", "recovery-keypair", "--out", str(tmp_path / "offline")])
    assert pair.exit_code == 0, pair.output
    made = runner.invoke(app, ["backup", "--data-dir", str(settings.data_dir),
                               "--out", str(archive),
                               "--recipient", str(tmp_path / "offline" / "recovery.pub")])
    assert made.exit_code == 0, made.output
    assert "audit anchor:" in made.output
    restored = runner.invoke(app, ["restore", "--data-dir", str(tmp_path / "new"),
                                   "--from", str(archive),
                                   "--identity", str(tmp_path / "offline" / "recovery.key")])
    assert restored.exit_code == 0, restored.output
    again = runner.invoke(app, ["restore", "--data-dir", str(tmp_path / "new"),
                                "--from", str(archive),
                                "--identity", str(tmp_path / "offline" / "recovery.key")])
    assert again.exit_code == 1 and "DATA_DIR_NOT_EMPTY" in again.output
    verified = runner.invoke(app, ["audit", "verify", "--data-dir", str(tmp_path / "new")])
    assert verified.exit_code == 0, verified.output


def test_a_backup_without_a_recipient_is_refused_unless_insecure_plaintext(
    settings: Settings, tmp_path: Path
) -> None:
    runner = CliRunner()
    refused = runner.invoke(app, ["backup", "--data-dir", str(settings.data_dir),
                                  "--out", str(tmp_path / "b.tar.gz")])
    assert refused.exit_code == 1 and "RECIPIENT_REQUIRED" in refused.output
    assert not (tmp_path / "b.tar.gz").exists()
    plain = runner.invoke(app, ["backup", "--data-dir", str(settings.data_dir),
                                "--out", str(tmp_path / "b.tar.gz"), "--insecure-plaintext"])
    assert plain.exit_code == 0 and "NOT sealed" in plain.output
    restored = runner.invoke(app, ["restore", "--data-dir", str(tmp_path / "new"),
                                   "--from", str(tmp_path / "b.tar.gz")])
    assert restored.exit_code == 0, restored.output


def test_with_postgresql_the_archive_holds_the_keys_and_the_anchor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kit.postgres import pg_create, pg_drop, pg_url, unique_name

    for name in ("CARDSVC_DATABASE_URL", "CARDSVC_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CARDSVC_KEY_PASSPHRASE", PASSPHRASE)
    database_name = unique_name("backup")
    pg_create(database_name)
    try:
        configured = get_settings(data_dir=tmp_path / "data", status_list_size=1024,
                                  database_url=pg_url(database_name))
        initialise(configured, now=NOW)
        _add_officers(configured, 2)
        archive = tmp_path / "pg.tar.gz"
        manifest = create_backup(configured, out=archive, now=NOW)
        assert manifest.database == "postgresql"
        assert manifest.audit_anchor.startswith(f"{_chain(configured)[1]}:")
        with tarfile.open(archive) as opened:
            names = set(opened.getnames())
        assert "cardsvc.db" not in names and any(n.startswith("keys/") for n in names)
        restore_backup(archive=archive, data_dir=tmp_path / "restored")
        assert {p.name for p in (tmp_path / "restored" / "keys").iterdir()} == {
            p.name for p in configured.keys_dir.iterdir()}
    finally:
        pg_drop(database_name)
