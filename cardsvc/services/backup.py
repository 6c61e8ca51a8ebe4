"""Backups of the authority, and restoring one into a new data dir.

A backup is one ``.tar.gz``:

- ``cardsvc.db``: a consistent snapshot of the SQLite database, taken with SQLite's
  online backup API, so the server may keep running (PostgreSQL: back the database up
  with ``pg_dump``; the archive then holds the rest);
- ``keys/``: the key store as it is on disk, every private key still encrypted, except
  the private part of a retired or compromised key (destroyed at rotation; left out here
  too should its destruction have been cut short): only its public ``<kid>.jwk``;
- ``MANIFEST.json``: each file's SHA-256, the root fingerprint, the audit head as an
  anchor (``seq:hash``), so a restore can prove it brought back the history it saved,
  and the names of the KEKs wrapping the data keys (``data_keks``): a ``pkcs11:`` KEK is
  never in the archive (not a byte of it leaves the token); restoring needs that token.

Sealed to a recovery key (P13): with ``recipient`` (an X25519 public key whose private
half is kept offline, ``cardsvc keys recovery-keypair``) the whole archive is sealed by
:mod:`keys.recipient`; restoring it needs that private half (``identity``). The database
inside already holds passport numbers and portraits sealed; the recipient layer hides the
rest (names, cards, the audit log) and the encrypted key files from whoever holds the file.

Left out on purpose: the key passphrase (never beside the keys it opens; supply it as
``CARDSVC_KEY_PASSPHRASE`` on the restored machine) and the console session key (a new
one is made; officers sign in again).

Example::

    manifest = create_backup(settings, out=Path("fmc.tar.gz.sealed"), now=now,
                             recipient=load_recipient(public_text))
    restored = restore_backup(archive=Path("fmc.tar.gz.sealed"), data_dir=new_dir,
                              identity=load_identity(Path("recovery.key")))
    assert restored.audit_anchor == manifest.audit_anchor
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO, cast

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.models import AuditHead, DataKey, TrustState
from cardsvc.services.audit import AuditAnchor, verify_chain
from cardsvc.services.errors import Conflict, Invalid, Unavailable
from cardsvc.services.trust import issuer_keys
from cardsvc.settings import Settings, get_settings
from keys import stopped_signing
from keys._atomic import atomic_writer
from keys.recipient import (
    MAGIC,
    RecipientError,
    SealedWriter,
    is_sealed,
    open_sealed,
)

__all__ = ["BackupManifest", "create_backup", "restore_backup"]

MANIFEST = "MANIFEST.json"
DATABASE_FILE = "cardsvc.db"
FORMAT = "fmc-authority-backup/1"
_MAX_MEMBERS = 10_000


@dataclass(frozen=True, slots=True)
class BackupManifest:
    created_at: str
    database: str  # "sqlite" (the snapshot is in the archive) or "postgresql" (pg_dump it)
    root_fingerprint: str
    audit_anchor: str  # SEQ:HASH of the audit head in the saved database
    files: dict[str, str]  # archive path -> SHA-256 hex
    # The KEKs that wrap the data keys, by name (P13): "pkcs11:<label>" is in the token
    # and never in the archive (a restore needs that token), "file:<name>" is in keys/.
    data_keks: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, "created_at": self.created_at,
                           "database": self.database, "root_fingerprint":
                           self.root_fingerprint, "audit_anchor": self.audit_anchor,
                           "files": self.files, "data_keks": list(self.data_keks)},
                          indent=1, sort_keys=True).encode()

    @staticmethod
    def from_json(unverified: bytes) -> BackupManifest:
        try:
            fields = json.loads(unverified)
            if fields.get("format") != FORMAT:
                raise ValueError("not an authority backup")
            files = fields["files"]
            if not isinstance(files, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in files.items()
            ):
                raise ValueError("bad file list")
            AuditAnchor.parse(str(fields["audit_anchor"]))
            keks = fields.get("data_keks", [])  # absent in backups from before 0191
            if not isinstance(keks, list) or not all(isinstance(k, str) for k in keks):
                raise ValueError("bad data_keks")
            return BackupManifest(str(fields["created_at"]), str(fields["database"]),
                                  str(fields["root_fingerprint"]),
                                  str(fields["audit_anchor"]), dict(files), tuple(keks))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise Invalid("BACKUP_CORRUPT", f"the manifest is unreadable: {error}") from None


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


@dataclass(frozen=True, slots=True)
class _Saved:
    anchor: AuditAnchor
    fingerprint: str
    stopped: frozenset[str]
    keks: tuple[str, ...]


def _what_is_saved(session: Session) -> _Saved:
    head = session.get(AuditHead, 1)
    fingerprint = session.scalar(select(TrustState.root_fingerprint))
    if head is None or fingerprint is None:
        raise Unavailable("NOT_INITIALISED", "nothing to back up; run cardsvc init")
    stopped = frozenset(key.kid for key in issuer_keys(session) if stopped_signing(key))
    keks = tuple(sorted(set(session.scalars(select(DataKey.kek)))))
    return _Saved(AuditAnchor(head.seq, head.hash), fingerprint, stopped, keks)


def create_backup(
    settings: Settings, *, out: Path, now: datetime, recipient: X25519PublicKey | None = None
) -> BackupManifest:
    """Write the archive to ``out`` (atomically and durably: ``keys._atomic``), sealed to
    ``recipient`` when given (the command line insists on one unless told otherwise)."""
    if out.exists():
        raise Conflict("BACKUP_EXISTS", f"{out} exists; choose a new name")
    if not settings.keys_dir.is_dir():
        raise Unavailable("NOT_INITIALISED", f"no key store in {settings.data_dir}")
    is_sqlite = not settings.database_url or settings.database_url.startswith("sqlite")
    with tempfile.TemporaryDirectory(prefix="fmc-backup-") as scratch:
        members: dict[str, Path] = {}
        if is_sqlite:
            snapshot = Path(scratch) / DATABASE_FILE
            url = settings.database_url_or_default()
            source = sqlite3.connect(url.removeprefix("sqlite:///"))
            target = sqlite3.connect(snapshot)
            try:
                source.backup(target)  # a consistent copy, while writers go on
            finally:
                target.close()
                source.close()
            members[DATABASE_FILE] = snapshot
            read_from = f"sqlite:///{snapshot}"
        else:
            read_from = settings.database_url_or_default()
        database = Database.from_settings(get_settings(data_dir=Path(scratch),
                                                       database_url=read_from))
        try:
            saved = database.transact(_what_is_saved, readonly=True)
        finally:
            database.dispose()
        for key_file in sorted(settings.keys_dir.iterdir()):
            if key_file.is_file() and not (key_file.suffix == ".pem"
                                           and key_file.stem in saved.stopped):
                members[f"keys/{key_file.name}"] = key_file
        manifest = BackupManifest(
            created_at=now.astimezone(UTC).isoformat(timespec="seconds"),
            database="sqlite" if is_sqlite else "postgresql",
            root_fingerprint=saved.fingerprint, audit_anchor=str(saved.anchor),
            files={name: _digest(path) for name, path in members.items()},
            data_keks=saved.keks,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        # 0600 from the first byte: it holds the encrypted keys and every person's record.
        with atomic_writer(out, mode=0o600) as stream:
            sealed = None if recipient is None else SealedWriter(stream, recipient)
            sink = stream if sealed is None else cast(BinaryIO, sealed)
            with tarfile.open(fileobj=sink, mode="w:gz") as archive:
                body = manifest.to_json()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode, info.mtime = len(body), 0o600, int(now.timestamp())
                archive.addfile(info, io.BytesIO(body))
                for name, path in members.items():
                    archive.add(path, arcname=name, recursive=False, filter=_private)
            if sealed is not None:
                sealed.close()
    return manifest


def _private(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.mode, member.uid, member.gid, member.uname, member.gname = 0o600, 0, 0, "", ""
    return member


def restore_backup(
    *, archive: Path, data_dir: Path, identity: X25519PrivateKey | None = None
) -> BackupManifest:
    """Unpack into an empty (or new) data dir, check every digest, then walk the restored
    audit chain against the anchor saved in the manifest. Nothing is left on failure.
    A sealed archive needs ``identity``, the recovery private key it was sealed to."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise Conflict("DATA_DIR_NOT_EMPTY", f"{data_dir} is not empty; restore into a new one")
    try:
        with archive.open("rb") as source:
            sealed = is_sealed(source.read(len(MAGIC)))
    except OSError as error:
        raise Invalid("BACKUP_CORRUPT", f"cannot read the archive: {error}") from None
    if not sealed:
        return _restore_plain(archive, data_dir)
    if identity is None:
        raise Invalid("BACKUP_IDENTITY_REQUIRED",
                      "this backup is sealed to a recovery key; give its private half")
    with tempfile.TemporaryDirectory(prefix="fmc-restore-") as scratch:
        opened = Path(scratch) / "backup.tar.gz"
        try:
            with archive.open("rb") as source, opened.open("wb") as plain:
                os.chmod(opened, 0o600)
                open_sealed(source, plain, identity)
        except RecipientError as error:
            raise Invalid("BACKUP_KEY_MISMATCH",
                          f"the backup does not open with this recovery key: {error}") from None
        return _restore_plain(opened, data_dir)


def _restore_plain(archive: Path, data_dir: Path) -> BackupManifest:
    try:
        with tarfile.open(archive, "r:gz") as source:
            members = source.getmembers()
            if len(members) > _MAX_MEMBERS:
                raise Invalid("BACKUP_CORRUPT", "too many files in the archive")
            manifest_file = next((source.extractfile(member) for member in members
                                  if member.name == MANIFEST and member.isfile()), None)
            if manifest_file is None:
                raise Invalid("BACKUP_CORRUPT", "no manifest in the archive")
            manifest = BackupManifest.from_json(manifest_file.read(1 << 20))
            expected = set(manifest.files) | {MANIFEST}
            for member in members:
                name = PurePosixPath(member.name)
                if (member.name not in expected or not member.isfile() or name.is_absolute()
                        or ".." in name.parts):
                    raise Invalid("BACKUP_CORRUPT", f"unexpected member {member.name!r}")
            if {member.name for member in members} != expected:
                raise Invalid("BACKUP_CORRUPT", "files listed in the manifest are missing")
            data_dir.mkdir(parents=True, exist_ok=True)
            try:
                for member in members:
                    if member.name == MANIFEST:
                        continue
                    source.extract(member, data_dir, filter="data")
                    restored = data_dir / member.name
                    os.chmod(restored, 0o600)
                    if _digest(restored) != manifest.files[member.name]:
                        raise Invalid("BACKUP_CORRUPT", f"{member.name} does not match its digest")
                if manifest.database == "sqlite":
                    _check_restored_chain(data_dir, AuditAnchor.parse(manifest.audit_anchor))
            except BaseException:
                _empty(data_dir)
                raise
    except (tarfile.TarError, OSError, EOFError) as error:
        raise Invalid("BACKUP_CORRUPT", f"cannot read the archive: {error}") from None
    return manifest


def _check_restored_chain(data_dir: Path, anchor: AuditAnchor) -> None:
    url = f"sqlite:///{(data_dir / DATABASE_FILE).resolve()}"
    database = Database.from_settings(get_settings(data_dir=data_dir, database_url=url))
    try:
        check = database.transact(lambda session: verify_chain(session, anchors=[anchor]),
                                  readonly=True)
    finally:
        database.dispose()
    if not check.ok or check.head_seq != anchor.seq:
        raise Invalid("BACKUP_CORRUPT",
                      f"the restored audit chain does not hold the saved head: {check.reason}")


def _empty(data_dir: Path) -> None:
    for path in sorted(data_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
