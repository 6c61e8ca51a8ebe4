"""``cardsvc payments ...``: the daily interchange report between two cities.

Example::

    cardsvc payments interchange-report --day 2027-01-15 --with CN-HZ > yw.json
    cardsvc payments interchange-report --day 2027-01-15 --with CN-HZ \\
        --reconcile hz-report.jwt        # the peer's signed report; exit 1 on a break
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.federation.state import held_federation
from cardsvc.payments.interchange_report import interchange_report, reconcile, sign_report
from cardsvc.services.bootstrap import open_keyring
from cardsvc.services.errors import DomainError
from cardsvc.services.trust import active_signer, signing_alg
from cardsvc.settings import get_settings
from schemas.federation import FederationClaims

__all__ = ["payments_app"]

payments_app = typer.Typer(help="Payments between cities: the daily interchange report.",
                           no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="data directory "
                                              "(default $CARDSVC_DATA_DIR or .data)")]


@payments_app.command("interchange-report")
def report(
    day: Annotated[str, typer.Option("--day", help="business day (Asia/Shanghai) YYYY-MM-DD")],
    peer: Annotated[str, typer.Option("--with", help="the other city's code, e.g. CN-HZ")],
    reconcile_with: Annotated[Path | None, typer.Option(
        "--reconcile", help="the peer's signed report (JWT file): list the breaks")] = None,
    data_dir: DataDir = None,
) -> None:
    """Print our signed report with the other city ({"report", "jwt"}), or reconcile it."""
    settings = get_settings(data_dir=data_dir)
    try:
        on = date.fromisoformat(day)
    except ValueError:
        typer.echo("error: INVALID_DAY: --day is YYYY-MM-DD", err=True)
        raise typer.Exit(2) from None
    database = Database.from_settings(settings)
    keyring = open_keyring(settings)
    try:
        def work(session: Session) -> tuple[dict[str, Any], str, FederationClaims | None]:
            body = interchange_report(session, own_code=settings.issuer, peer=peer, day=on)
            jwt = sign_report(body, active_signer(session, keyring=keyring),
                              alg=signing_alg(session, now=datetime.now(UTC)))
            return body, jwt, held_federation(session)

        body, jwt, federation = database.transact(work, readonly=True)
    except DomainError as error:
        typer.echo(f"error: {error.code}: {error.detail}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    if reconcile_with is None:
        typer.echo(json.dumps({"report": body, "jwt": jwt}, indent=2, ensure_ascii=False))
        return
    if federation is None:
        typer.echo("error: FEDERATION_NOT_CONFIGURED: no federation list held; run cardsvc"
                   " federation sync", err=True)
        raise typer.Exit(2)
    result = reconcile(body, unverified_peer_jwt=reconcile_with.read_text().strip(),
                       federation=federation)
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    if not result["reconciled"]:
        raise typer.Exit(1)
