"""The ``cardsvc`` command line (docs/DESIGN.md section 8).

Example::

    cardsvc init --data-dir data              # prints the root fingerprint and a token once
    cardsvc officer add --data-dir data --name "Wang Li" --role registrar
    cardsvc serve --data-dir data --port 8000
    cardsvc keys rotate --data-dir data
    cardsvc audit verify --data-dir data      # exit 1 on any break
    cardsvc audit head --data-dir data >> /elsewhere/anchors   # keep outside the database
    cardsvc audit verify --data-dir data --anchors-file /elsewhere/anchors
    cardsvc keys recovery-keypair --out /media/offline/recovery   # once; keep it offline
    cardsvc backup --data-dir data --out fmc-backup.sealed --recipient recovery.pub
    cardsvc restore --data-dir new-data --from fmc-backup.sealed --identity recovery.key
    cardsvc upgrade --data-dir data           # migrations, e.g. sealing a plaintext register
    cardsvc federation sync --data-dir data   # the national list ($CARDSVC_FEDERATION_*)
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.federation.cli import federation_app
from cardsvc.logs import configure_logging
from cardsvc.national.cli import national_app
from cardsvc.payments.cli import payments_app
from cardsvc.roles import Role
from cardsvc.services.errors import Conflict, DomainError, Invalid, Unavailable
from cardsvc.settings import Settings, get_settings, settings_problem, variable
from schemas import b64url_decode

__all__ = ["app", "main"]

app = typer.Typer(help="The issuing authority of the Foreign Merchant Card.",
                  no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)  # never dump locals (they may hold secrets)
officer_app = typer.Typer(help="Officers and their roles.", no_args_is_help=True)
keys_app = typer.Typer(help="Issuer keys.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
trust_app = typer.Typer(help="The root-signed trust list.", no_args_is_help=True)
app.add_typer(officer_app, name="officer")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(trust_app, name="trust")
app.add_typer(national_app, name="national")
app.add_typer(federation_app, name="federation")
app.add_typer(payments_app, name="payments")

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="data directory "
                                              "(default $CARDSVC_DATA_DIR or .data)")]


def _settings(data_dir: Path | None, **overrides: object) -> Settings:
    return get_settings(data_dir=data_dir, **overrides)


def _database(settings: Settings) -> Database:
    """The authority's database; refuses (exit 2) a data dir that was never initialised."""
    if settings.database_url is None and not (settings.data_dir / "cardsvc.db").exists():
        raise _fail(Unavailable("NOT_INITIALISED",
                                f"no database in {settings.data_dir}; run cardsvc init"))
    return Database.from_settings(settings)


def _now() -> datetime:
    return datetime.now(UTC)


def _fail(error: DomainError) -> typer.Exit:
    typer.echo(f"error: {error.code}: {error.detail}", err=True)
    return typer.Exit(2 if error.code in ("NOT_INITIALISED", "NO_PASSPHRASE") else 1)


@app.command()
def init(
    data_dir: DataDir = None,
    keys: Annotated[str | None, typer.Option(
        "--keys", help="where the private keys live: `file` (default, encrypted files) or"
        " an HSM token, `pkcs11:token=LABEL[;module-path=…]` (PIN in CARDSVC_HSM_PIN)")] = None,
    root_keys: Annotated[str | None, typer.Option(
        "--root-keys", help="a separate token for the root, plugged in only to sign a trust"
        " list: `pkcs11:token=LABEL` (PIN in CARDSVC_ROOT_PIN)")] = None,
) -> None:
    """Create the database and keys; print the root fingerprint and an admin token once."""
    from cardsvc.services.bootstrap import initialise

    settings = _settings(data_dir, keys=keys, root_keys=root_keys)
    try:
        result = initialise(settings, now=_now())
    except DomainError as error:
        raise _fail(error) from None
    if result.passphrase_file is not None:
        typer.echo(f"warning: no CARDSVC_KEY_PASSPHRASE; a random passphrase was written to "
                   f"{result.passphrase_file} (mode 0600). This suits development only.",
                   err=True)
    typer.echo(f"data dir:          {settings.data_dir.resolve()}")
    typer.echo(f"root fingerprint:  {result.root_fingerprint}")
    if result.created:
        typer.echo(f"admin token:       {result.admin_token}")
        typer.echo("                   (shown once; it holds every role. Store it now.)")
    else:
        typer.echo("already initialised; no new token was made")


def prepare_to_serve(settings: Settings) -> str:
    """Migrate to head, check the keys open and make the timestamp key a data dir from
    before P8.5 lacks; returns the root fingerprint."""
    from sqlalchemy import select

    from cardsvc.migrations import upgrade_to_head
    from cardsvc.models import DataKey
    from cardsvc.services.audit import Actor
    from cardsvc.services.bootstrap import open_keyring
    from cardsvc.services.sealing import (
        data_keks_for,
        data_key_store,
        ensure_data_keys,
        open_data_keys,
    )
    from cardsvc.services.timestamp import ensure_timestamp_key
    from cardsvc.services.trust import active_signer, root_fingerprint

    keyring = open_keyring(settings)
    data_store = data_key_store(settings)
    upgrade_to_head(settings.database_url_or_default(), key_store=data_store)
    keks = data_keks_for(settings)
    database = Database.from_settings(settings)
    try:
        database.transact(lambda session: ensure_data_keys(
            session.connection(), keks=keks, now=_now()))
        # They open (the ring keeps its KEK: no second scrypt or token login).
        database.transact(lambda session: open_data_keys(session.connection(), keks=keks),
                          readonly=True)
        if keks.in_hsm and database.transact(lambda session: any(
                name.startswith("file:") for name in session.scalars(select(DataKey.kek))),
                readonly=True):
            typer.echo("warning: the signing keys are in the token but the data KEK is still"
                       " a file; move it: cardsvc keys move-kek --to-hsm", err=True)

        def check(session: Session) -> str:
            fingerprint = root_fingerprint(session)
            active_signer(session, keyring=keyring)
            if not keyring.root_apart:  # an offline root is plugged in only to sign
                keyring.root()
            return fingerprint

        fingerprint = database.transact(check, readonly=True)
        database.transact(lambda session: ensure_timestamp_key(
            session, keyring=keyring, actor=Actor.cli(), now=_now()))
        return fingerprint
    finally:
        database.dispose()


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="address to bind", envvar=variable("host"))
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind", envvar=variable("port"))] = 8000,
    workers: Annotated[int, typer.Option(
        min=1, max=64, envvar=variable("workers"),
        help="worker processes (uvicorn); more than 1 wants PostgreSQL")] = 1,
) -> None:
    """Apply migrations and serve the HTTP API."""
    import uvicorn

    from cardsvc.api._http import HTTP_PROTOCOL

    settings = _settings(data_dir)
    if "public_url" not in settings.model_fields_set or not settings.public_url:
        settings = settings.model_copy(update={"public_url": f"http://{host}:{port}"})
    _database(settings).dispose()
    try:
        fingerprint = prepare_to_serve(settings)
    except DomainError as error:
        raise _fail(error) from None
    typer.echo(f"cardsvc on {settings.public_base}  (root fingerprint {fingerprint},"
               f" {workers} worker{'s' if workers > 1 else ''})")
    if workers > 1 and not settings.database_url:
        typer.echo("warning: several workers on SQLite queue on one file lock;"
                   " use CARDSVC_DATABASE_URL=postgresql+psycopg://... in production", err=True)
    configure_logging(settings.log_format)
    # Each worker is its own process: it builds the app from the environment, so the
    # settings this command resolved are handed down as CARDSVC_* variables.
    os.environ["CARDSVC_DATA_DIR"] = str(settings.data_dir.resolve())
    os.environ["CARDSVC_PUBLIC_URL"] = settings.public_url
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker counts in its own files there; /metrics adds them up.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cardsvc-metrics-")
    uvicorn.run("cardsvc.api:app_from_environment", factory=True, host=host, port=port,
                workers=workers, log_level="warning", access_log=False,
                http=HTTP_PROTOCOL,  # TCP_NODELAY with N workers; httptools if installed
                timeout_graceful_shutdown=20)  # SIGTERM: finish what is in flight


@officer_app.command("add")
def officer_add(
    name: Annotated[str, typer.Option("--name", help="the officer's name")],
    role: Annotated[list[Role], typer.Option("--role", help="a role; repeat for several")],
    data_dir: DataDir = None,
) -> None:
    """Create an officer and print its token once."""
    from cardsvc.services.audit import Actor
    from cardsvc.services.officers import create_officer

    database = _database(_settings(data_dir))
    try:
        officer_id, token = database.transact(lambda session: _created(create_officer(
            session, name=name, roles=role, actor=Actor.cli(), now=_now())))
    except DomainError as error:
        raise _fail(error) from None
    finally:
        database.dispose()
    typer.echo(f"officer {officer_id} ({name}: {', '.join(sorted(set(role)))})")
    typer.echo(f"token: {token}")
    typer.echo("(shown once; only its hash is stored)")


def _created(pair: tuple[object, str]) -> tuple[int, str]:
    officer, token = pair
    return int(getattr(officer, "id")), token  # noqa: B009


@officer_app.command("list")
def officer_list(data_dir: DataDir = None) -> None:
    """List officers (never their tokens)."""
    from cardsvc.services.officers import list_officers

    database = _database(_settings(data_dir))
    try:
        rows = database.transact(lambda session: [
            (o.id, o.name, o.roles, o.active) for o in list_officers(session)], readonly=True)
    finally:
        database.dispose()
    for officer_id, name, roles, active in rows:
        typer.echo(f"{officer_id:>4}  {name:<30} {roles:<40} {'active' if active else 'off'}")


def _key_command(operation: str, kid: str | None, data_dir: Path | None) -> None:
    from cardsvc.services.audit import Actor
    from cardsvc.services.bootstrap import open_keyring
    from cardsvc.services.interchange import rotate_interchange_key
    from cardsvc.services.trust import (
        compromise_key,
        issuer_keys,
        published_interchange_keys,
        rotate_keys,
        timestamp_keys,
    )

    settings = _settings(data_dir)
    database = _database(settings)
    try:
        keyring = open_keyring(settings)

        def work(session: Session) -> list[str]:
            if operation == "rotate":
                rotate_keys(session, keyring=keyring, kid_prefix=settings.kid_prefix,
                            actor=Actor.cli(), now=_now())
            elif operation == "compromise":
                assert kid is not None
                compromise_key(session, kid=kid, keyring=keyring,
                               kid_prefix=settings.kid_prefix, actor=Actor.cli(), now=_now())
            elif operation == "rotate-interchange":
                rotate_interchange_key(session, keyring=keyring, kid_prefix=settings.kid_prefix,
                                       actor=Actor.cli(), now=_now())
            return [f"{key.kid:<6} {key.state.value:<12} from {key.valid_from}"
                    + ("" if key.valid_until is None else f" until {key.valid_until}")
                    for key in issuer_keys(session)] + [
                        f"{key.kid:<6} timestamp    (signs only the signed timestamp)"
                        for key in timestamp_keys(session)] + [
                        f"{key.kid:<6} interchange  {key.state.value:<12} (signs only requests"
                        " to other authorities)" for key in published_interchange_keys(
                            session, now=int(_now().timestamp()))]

        lines = database.transact(work, readonly=operation == "list")
    except DomainError as error:
        raise _fail(error) from None
    finally:
        database.dispose()
    for line in lines:
        typer.echo(line)
    if operation != "list":
        typer.echo("the trust list is re-signed with a new version on its next request")


@keys_app.command("rotate")
def keys_rotate(data_dir: DataDir = None) -> None:
    """Next key -> active, active -> retired, and a new next key published."""
    _key_command("rotate", None, data_dir)


@keys_app.command("compromise")
def keys_compromise(
    kid: Annotated[str, typer.Argument(help="the issuer key, e.g. k1")], data_dir: DataDir = None
) -> None:
    """Mark a key compromised: nothing it signed verifies any more."""
    _key_command("compromise", kid, data_dir)


@keys_app.command("rotate-interchange")
def keys_rotate_interchange(data_dir: DataDir = None) -> None:
    """A new interchange key (P10; the first one on an authority that has none); the old
    one stays published for 7 days. Then run the national tool's update-issuer."""
    _key_command("rotate-interchange", None, data_dir)


@keys_app.command("replace-timestamp")
def keys_replace_timestamp(data_dir: DataDir = None) -> None:
    """Replace the online timestamp key (P8.5), e.g. after a theft; needs the root."""
    from cardsvc.services.audit import Actor
    from cardsvc.services.bootstrap import open_keyring
    from cardsvc.services.timestamp import replace_timestamp_key

    settings = _settings(data_dir)
    database = _database(settings)
    try:
        keyring = open_keyring(settings)
        key = database.transact(lambda session: replace_timestamp_key(
            session, keyring=keyring, actor=Actor.cli(), now=_now()))
    except DomainError as error:
        raise _fail(error) from None
    finally:
        database.dispose()
    typer.echo(f"timestamp key {key.kid}; the trust list is re-signed with a new version"
               " on its next request")


@keys_app.command("alg-cutover")
def keys_alg_cutover(
    at: Annotated[datetime | None, typer.Option(
        "--at", help="when to start signing Ed25519 (RFC 9864), e.g. 2027-01-15T00:00:00Z;"
        " omit to show the current cut-over",
        formats=["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"])] = None,
    data_dir: DataDir = None,
) -> None:
    """Show or announce the day this authority moves from "EdDSA" to "Ed25519"."""
    from cardsvc.services.audit import Actor
    from cardsvc.services.trust import alg_cutover, set_alg_cutover, signing_alg

    settings = _settings(data_dir)
    database = _database(settings)
    now = _now()

    def work(session: Session) -> tuple[int | None, str]:
        if at is not None:
            when = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
            set_alg_cutover(session, at=when, actor=Actor.cli(), now=now)
        return alg_cutover(session), signing_alg(session, now=now)

    try:
        cutover, alg = database.transact(work, readonly=at is None)
    except DomainError as error:
        raise _fail(error) from None
    finally:
        database.dispose()
    shown = "not announced" if cutover is None else \
        datetime.fromtimestamp(cutover, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    typer.echo(f"cut-over to Ed25519: {shown}; signing now with {alg}")
    if at is not None:
        typer.echo("the trust list is re-signed with a new version on its next request")


@trust_app.command("sign")
def trust_sign(data_dir: DataDir = None) -> None:
    """Sign the trust list now with the root (a ceremony: plug in the root's token and set
    CARDSVC_ROOT_PIN when the root lives apart); prints its version and expiry."""
    from cardsvc.services.bootstrap import open_keyring
    from cardsvc.services.trust import signed_trust_list

    settings = _settings(data_dir)
    database = _database(settings)
    try:
        keyring = open_keyring(settings)
        signed = database.transact(lambda session: signed_trust_list(
            session, keyring=keyring, issuer=settings.issuer, now=_now(),
            lifetime_seconds=settings.trust_list_lifetime_days * 86_400, ceremony=True))
    except DomainError as error:
        raise _fail(error) from None
    finally:
        database.dispose()
    claims = json.loads(b64url_decode(signed.jwt.split(".")[1]))
    expires = datetime.fromtimestamp(claims["exp"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    typer.echo(f"trust list version {claims['ver']} signed; expires {expires}"
               f" (sign again before {settings.trust_list_lifetime_days // 2} days pass)")


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """Issuer keys and their states."""
    _key_command("list", None, data_dir)


AnchorOption = Annotated[list[str] | None, typer.Option(
    "--anchor", help="SEQ:HASH kept outside the database (from `cardsvc audit head`); "
    "repeatable")]
AnchorsFile = Annotated[Path | None, typer.Option(
    "--anchors-file", help="a file of SEQ:HASH lines, as `cardsvc audit head >> FILE` "
    "writes", exists=True, dir_okay=False, readable=True)]


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDir = None, anchor: AnchorOption = None, anchors_file: AnchorsFile = None
) -> None:
    """Walk the hash chain; exit 1 on an edited, inserted or deleted entry, or on a
    rewritten history that no longer holds an anchored entry."""
    from cardsvc.services.audit import AuditAnchor, verify_chain

    texts = list(anchor or [])
    if anchors_file is not None:
        texts += [line for line in anchors_file.read_text("utf-8").splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    try:
        anchors = [AuditAnchor.parse(text) for text in texts]
    except ValueError as error:
        typer.echo(f"error: BAD_ANCHOR: {error}", err=True)
        raise typer.Exit(2) from None
    database = _database(_settings(data_dir))
    try:
        check = database.transact(lambda session: verify_chain(session, anchors=anchors),
                                  readonly=True)
    finally:
        database.dispose()
    if check.ok:
        anchored = f", {len(set(anchors))} anchors held" if anchors else ""
        typer.echo(f"audit chain OK: {check.entries} entries{anchored}, head {check.head_hash}")
        return
    typer.echo(f"audit chain BROKEN at entry {check.broken_at}: {check.reason} "
               f"({check.entries} entries verified before it)", err=True)
    raise typer.Exit(1)


@audit_app.command("head")
def audit_head(data_dir: DataDir = None) -> None:
    """Print the chain head as SEQ:HASH, to keep outside the database as an anchor.

    For example from cron: ``cardsvc audit head >> /mnt/other-host/audit-anchors``.
    """
    from cardsvc.services.audit import AuditAnchor, verify_chain

    database = _database(_settings(data_dir))
    try:
        check = database.transact(verify_chain, readonly=True)
    finally:
        database.dispose()
    if not check.ok:  # never anchor a broken chain
        typer.echo(f"audit chain BROKEN at entry {check.broken_at}: {check.reason}", err=True)
        raise typer.Exit(1)
    if check.head_seq == 0:
        typer.echo("error: EMPTY_CHAIN: nothing to anchor yet", err=True)
        raise typer.Exit(1)
    typer.echo(str(AuditAnchor(check.head_seq, check.head_hash)))


@app.command()
def publish(
    out: Annotated[Path, typer.Option("--out", help="the folder to write (a web server's "
                                      "document root); created if missing")],
    data_dir: DataDir = None,
) -> None:
    """Write what verifiers sync as static files named like the URLs (v1/trust-list,
    v1/status-lists/ID, v1/status-lists/index.json, v1/timestamp), for any web server or
    CDN to mirror; `verifier sync --mirror URL` reads them. Run it again (e.g. from cron,
    well within the status ttl) to refresh them: unchanged lists are not re-signed."""
    from cardsvc.publisher import Publisher
    from cardsvc.services.bootstrap import open_keyring

    settings = _settings(data_dir)
    database = _database(settings)
    try:
        keyring = open_keyring(settings)
        written = Publisher(settings, database, keyring).write_static(out, _now())
    except DomainError as error:
        raise _fail(error) from None
    finally:
        database.dispose()
    for relative in written:
        typer.echo(f"wrote {out / relative}")


@app.command()
def backup(
    out: Annotated[Path, typer.Option("--out", help="the archive to write")],
    recipient: Annotated[str | None, typer.Option(
        "--recipient", help="recovery public key (its text or a file of it) to seal to")] = None,
    insecure_plaintext: Annotated[bool, typer.Option(
        "--insecure-plaintext", help="development only: write the archive unsealed")] = False,
    data_dir: DataDir = None,
) -> None:
    """Archive a consistent database snapshot and the encrypted keys, with a manifest,
    sealed to an offline recovery key (``cardsvc keys recovery-keypair``).

    The server may keep running. The key passphrase is never included. With PostgreSQL,
    back the database up with pg_dump as well; the archive holds the keys and the anchor.
    """
    from cardsvc.services.backup import create_backup
    from keys.recipient import RecipientError, load_recipient

    if recipient is None and not insecure_plaintext:
        raise _fail(Invalid("RECIPIENT_REQUIRED",
                            "give --recipient (a recovery public key); --insecure-plaintext"
                            " writes an unsealed archive for development"))
    try:
        public = None if recipient is None else load_recipient(recipient)
    except RecipientError as error:
        raise _fail(Invalid("RECIPIENT_INVALID", str(error))) from None
    settings = _settings(data_dir)
    _database(settings).dispose()
    try:
        manifest = create_backup(settings, out=out, now=_now(), recipient=public)
    except DomainError as error:
        raise _fail(error) from None
    sealed = "sealed to the recovery key" if public is not None else "NOT sealed"
    typer.echo(f"backup written: {out} ({len(manifest.files)} files, mode 0600, {sealed})")
    typer.echo(f"audit anchor:   {manifest.audit_anchor}")
    if manifest.database == "postgresql":
        typer.echo("PostgreSQL: the database itself is not in the archive; pg_dump it too.")


@app.command()
def restore(
    archive: Annotated[Path, typer.Option("--from", help="an archive from cardsvc backup",
                                          exists=True, dir_okay=False, readable=True)],
    identity: Annotated[Path | None, typer.Option(
        "--identity", help="the recovery private key a sealed backup needs",
        exists=True, dir_okay=False, readable=True)] = None,
    data_dir: DataDir = None,
) -> None:
    """Unpack a backup into an empty data dir; check its digests and its audit chain."""
    from cardsvc.services.backup import restore_backup
    from keys.recipient import RecipientError, load_identity

    try:
        private = None if identity is None else load_identity(identity)
    except RecipientError as error:
        raise _fail(Invalid("IDENTITY_INVALID", str(error))) from None
    settings = _settings(data_dir)
    try:
        manifest = restore_backup(archive=archive, data_dir=settings.data_dir, identity=private)
    except DomainError as error:
        raise _fail(error) from None
    typer.echo(f"restored into {settings.data_dir.resolve()} (backup of {manifest.created_at})")
    typer.echo(f"root fingerprint: {manifest.root_fingerprint}")
    typer.echo(f"audit chain holds the saved head {manifest.audit_anchor}")
    in_token = [name for name in manifest.data_keks if name.startswith("pkcs11:")]
    if in_token:
        typer.echo(f"the data keys are wrapped by {', '.join(in_token)} in the token: "
                   "plug it in and set CARDSVC_HSM_PIN")
    typer.echo("set CARDSVC_KEY_PASSPHRASE, then: cardsvc serve --data-dir "
               f"{settings.data_dir}")


@keys_app.command("recovery-keypair")
def keys_recovery_keypair(
    out: Annotated[Path, typer.Option("--out", help="a new directory for the two files")],
) -> None:
    """Make the offline recovery key that backups are sealed to: ``recovery.key`` (private,
    keep it offline, away from the backups) and ``recovery.pub`` (give to --recipient)."""
    from keys._atomic import write_atomically
    from keys.recipient import recovery_keypair

    if out.exists() and any(out.iterdir()):
        raise _fail(Conflict("RECOVERY_KEY_EXISTS", f"{out} is not empty"))
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_pem, public_text = recovery_keypair()
    write_atomically(out / "recovery.key", private_pem, mode=0o600)
    write_atomically(out / "recovery.pub", (public_text + "\n").encode(), mode=0o644)
    typer.echo(f"recovery key: {out / 'recovery.key'} (private: move it offline)")
    typer.echo(f"recipient:    {public_text}")


@keys_app.command("rotate-data-key")
def keys_rotate_data_key(
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="rows per transaction")] = 500,
    data_dir: DataDir = None,
) -> None:
    """Make a new data-encryption key and re-seal every passport number and portrait with
    it, one batch per transaction (safe while serving; run again if cut short)."""
    from cardsvc.services.audit import Actor, append_audit
    from cardsvc.services.sealing import data_keks_for, reseal_batch, rotate_data_key

    settings = _settings(data_dir)
    database = _database(settings)
    try:
        keks = data_keks_for(settings)

        def rotate(session: Session) -> int:
            dek_id = rotate_data_key(session.connection(), keks=keks, now=_now())
            append_audit(session, actor=Actor.cli(), action="keys.data_key_rotated",
                         subject=f"dek-{dek_id}", details={"dek": dek_id}, now=_now())
            return dek_id

        dek_id = database.transact(rotate)
        database.sealer.forget()
        total = 0
        while done := database.transact(lambda session: reseal_batch(session, batch=batch)):
            total += done
    except DomainError as error:
        raise _fail(error) from None
    finally:
        database.dispose()
    typer.echo(f"data key dek-{dek_id} seals from now on; {total} fields re-sealed with it")


def _rewrap_command(action: str, data_dir: Path | None, *, destroy_old_token_kek: bool
                    ) -> None:
    """Re-wrap every data key with a new KEK in one transaction (audited), then destroy
    the KEKs no row names any more: always a file KEK (a backup holds its own copy), a
    token KEK only when asked (a backup made before needs it to be restored)."""
    from cardsvc.services.audit import Actor, append_audit
    from cardsvc.services.sealing import (
        Rewrapped,
        data_keks_for,
        move_kek_to_hsm,
        retire_keks,
        rotate_kek,
    )
    from keys.kek import FILE_PREFIX

    settings = _settings(data_dir)
    database = _database(settings)
    try:
        keks = data_keks_for(settings)

        def rewrap(session: Session) -> Rewrapped:
            connection = session.connection()
            done = (move_kek_to_hsm(connection, keks=keks) if action == "moved"
                    else rotate_kek(connection, keks=keks))
            if done.rows:
                append_audit(session, actor=Actor.cli(), action=f"keys.kek_{action}",
                             subject=done.kek, details={"kek": done.kek, "rows": done.rows,
                                                        "replaced": list(done.replaced)},
                             now=_now())
            return done

        done = database.transact(rewrap)
        database.sealer.forget()
        doomed = tuple(name for name in done.replaced
                       if name.startswith(FILE_PREFIX) or destroy_old_token_kek)
        destroyed = database.transact(lambda session: retire_keks(
            session.connection(), keks=keks, names=doomed), readonly=True)
    except DomainError as error:
        raise _fail(error) from None
    finally:
        database.dispose()
    if not done.rows:
        typer.echo(f"every data key is already wrapped by {done.kek}; nothing changed")
        return
    typer.echo(f"{done.rows} data keys re-wrapped by {done.kek}")
    for name in destroyed:
        typer.echo(f"destroyed {name} (no data key names it)")
    for name in sorted(set(done.replaced) - set(destroyed)):
        typer.echo(f"kept {name}: backups made before need it (--destroy-old to drop it)")


@keys_app.command("move-kek")
def keys_move_kek(
    to_hsm: Annotated[bool, typer.Option("--to-hsm", help="into the token of --keys pkcs11:…"
                                         )] = False,
    data_dir: DataDir = None,
) -> None:
    """Move the data KEK into the authority's token: a new AES-256 key made there
    re-wraps every data key in one transaction, then the file KEK is destroyed.
    Idempotent; audited (keys.kek_moved)."""
    if not to_hsm:
        raise _fail(Invalid("KEK_TARGET_REQUIRED", "say where: --to-hsm"))
    _rewrap_command("moved", data_dir, destroy_old_token_kek=False)


@keys_app.command("rotate-kek")
def keys_rotate_kek(
    destroy_old: Annotated[bool, typer.Option(
        "--destroy-old", help="also delete the old KEK in the token (backups made before"
        " it can then no longer be restored)")] = False,
    data_dir: DataDir = None,
) -> None:
    """A new data KEK (in the token with --keys pkcs11:…, else in the key store); every
    data key re-wrapped with it in one transaction. The data keys themselves stay: rotate
    them too with rotate-data-key. Audited (keys.kek_rotated)."""
    _rewrap_command("rotated", data_dir, destroy_old_token_kek=destroy_old)


@app.command()
def upgrade(data_dir: DataDir = None) -> None:
    """Apply the database migrations (those converting data open the key store, e.g. the
    sealing of passport numbers and portraits) and make missing data keys."""
    from cardsvc.migrations import upgrade_to_head
    from cardsvc.services.sealing import data_keks_for, data_key_store, ensure_data_keys

    settings = _settings(data_dir)
    try:
        data_store = data_key_store(settings)
        upgrade_to_head(settings.database_url_or_default(), key_store=data_store)
        keks = data_keks_for(settings)
        database = Database.from_settings(settings)
        try:
            database.transact(lambda session: ensure_data_keys(
                session.connection(), keks=keks, now=_now()))
        finally:
            database.dispose()
    except DomainError as error:
        raise _fail(error) from None
    typer.echo("database at the newest schema; personal data sealed")


def main() -> None:
    try:
        app(prog_name="cardsvc")
    except ValidationError as error:  # from any command: a variable that cannot be used
        problem = settings_problem(error)
        if problem is None:
            raise
        typer.echo(f"error: SETTINGS_INVALID: {problem}", err=True)
        raise SystemExit(2) from None
    except (DBAPIError, PoolTimeout) as error:  # as the API answers it (503), for any command
        cause = type(getattr(error, "orig", None) or error).__name__
        typer.echo(f"error: DATABASE_UNAVAILABLE: the database could not complete the command"
                   f" ({cause}); check CARDSVC_DATABASE_URL and that the database is running",
                   err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
