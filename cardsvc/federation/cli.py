"""``cardsvc federation ...``: the authority's own copy of the national federation list.

Example::

    export CARDSVC_FEDERATION_ROOT=<national fingerprint>
    export CARDSVC_FEDERATION_URL=https://national.example.cn/federation.jwt
    cardsvc federation sync --data-dir data       # fetch, verify, hold (exit 1 if refused)
    cardsvc federation show --data-dir data       # version, expiry, this city's entry
    cardsvc federation highest-sequence --data-dir data   # block size Yiwu registers with
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer

from cardsvc.db import Database
from cardsvc.federation.fetch import FETCH_TIMEOUT_SECONDS, sync_federation
from cardsvc.federation.state import held_federation, highest_sequence
from cardsvc.services.errors import DomainError, Unavailable
from cardsvc.settings import Settings, get_settings

__all__ = ["federation_app"]

federation_app = typer.Typer(help="The national federation list this authority holds (P10).",
                             no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="data directory "
                                              "(default $CARDSVC_DATA_DIR or .data)")]
_SETUP_CODES = ("NOT_INITIALISED", "NO_PASSPHRASE", "FEDERATION_NOT_CONFIGURED")


def _fail(error: DomainError) -> typer.Exit:
    typer.echo(f"error: {error.code}: {error.detail}", err=True)
    return typer.Exit(2 if error.code in _SETUP_CODES else 1)


def _database(settings: Settings) -> Database:
    if settings.database_url is None and not (settings.data_dir / "cardsvc.db").exists():
        raise _fail(Unavailable("NOT_INITIALISED",
                                f"no database in {settings.data_dir}; run cardsvc init"))
    return Database.from_settings(settings)


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@federation_app.command("sync")
def sync(
    data_dir: DataDir = None,
    url: Annotated[list[str] | None, typer.Option(
        "--url", help="fetch from here instead of $CARDSVC_FEDERATION_URL; repeatable")] = None,
) -> None:
    """Fetch the federation list, verify it against $CARDSVC_FEDERATION_ROOT and hold it."""
    settings = get_settings(data_dir=data_dir)
    database = _database(settings)
    try:
        with httpx.Client(timeout=FETCH_TIMEOUT_SECONDS) as http:
            claims = sync_federation(database, settings=settings, http=http,
                                     now=int(datetime.now(UTC).timestamp()),
                                     urls=tuple(url) if url else None)
    except DomainError as error:
        raise _fail(error) from None
    finally:
        database.dispose()
    entry = claims.issuers_by_code.get(settings.issuer)
    typer.echo(f"federation list version {claims.version} held (expires "
               f"{_when(claims.expires_at)}, {len(claims.issuers)} cities)")
    if entry is None:
        typer.echo(f"warning: {settings.issuer} is not on the list: no sequence block,"
                   " so no foreigner code can be allocated", err=True)
    else:
        typer.echo(f"{entry.code} is {entry.state.value}")


@federation_app.command("show")
def show(data_dir: DataDir = None) -> None:
    """The held list: version, expiry, every city with state, kids and sequence blocks."""
    settings = get_settings(data_dir=data_dir)
    database = _database(settings)
    try:
        claims = database.transact(held_federation, readonly=True)
    except DomainError as error:
        raise _fail(error) from None
    finally:
        database.dispose()
    if claims is None:
        raise _fail(Unavailable("FEDERATION_NOT_CONFIGURED",
                                "no federation list held; run cardsvc federation sync"))
    now = int(datetime.now(UTC).timestamp())
    typer.echo(f"national authority: {claims.issuer}")
    typer.echo(f"version {claims.version}, issued {_when(claims.issued_at)}, expires "
               f"{_when(claims.expires_at)}" + (" (EXPIRED)" if claims.expires_at <= now else ""))
    for entry in claims.issuers:
        own = "  (this authority)" if entry.code == settings.issuer else ""
        blocks = " ".join(f"{block.first}-{block.last}" for block in entry.sequence_blocks)
        kids = " ".join(f"{key.kid}:{key.state.value}" for key in entry.keys)
        typer.echo(f"{entry.code:<12} {entry.state.value:<10} seq {blocks}  keys {kids}{own}")
        typer.echo(f"{'':<12} api {entry.api_url}  status {entry.status_url}")


@federation_app.command("highest-sequence")
def highest(data_dir: DataDir = None) -> None:
    """The highest foreigner-code sequence number ever allocated here (0 if none).

    A city joining with existing codes registers with a block reaching at least this
    (``cardsvc national add-issuer ... --block-size N``), so none of them lies in
    another city's block."""
    settings = get_settings(data_dir=data_dir)
    database = _database(settings)
    try:
        value = database.transact(highest_sequence, readonly=True)
    finally:
        database.dispose()
    typer.echo(str(value))
