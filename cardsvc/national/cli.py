"""``cardsvc national ...``: the national root's tooling (runs offline, no database).

Every command takes ``--dir`` (the national directory) and answers a refusal with
``error: CODE: detail`` on stderr and exit status 1 (2 when the setup is missing), never a
traceback. The national root's passphrase comes from ``FMC_NATIONAL_PASSPHRASE``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from cardsvc.national.registry import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_LIFETIME_SECONDS,
    NationalError,
    RootAccess,
    add_issuer,
    grant_block,
    init_registry,
    load_registry,
    publish,
    root_token,
    set_issuer_state,
    update_issuer,
)
from cardsvc.settings import NationalSettings
from keys._atomic import write_atomically
from keys.ed25519 import jwk_thumbprint, public_jwk
from schemas.federation import IssuerEntry, IssuerState

__all__ = ["PASSPHRASE_ENV", "national_app"]

PASSPHRASE_ENV = "FMC_NATIONAL_PASSPHRASE"  # noqa: S105 (the variable's name, not a secret)
_MAX_TRUST_LIST_BYTES = 400_000

national_app = typer.Typer(
    help="The national root: register city issuers and sign the federation list.",
    no_args_is_help=True)

Dir = Annotated[Path, typer.Option("--dir", help="the national directory (root key, registry)")]
Code = Annotated[str, typer.Option("--code", help="the city issuer code, e.g. CN-YW")]


def _fail(error: NationalError) -> typer.Exit:
    typer.echo(f"error: {error.code}: {error.detail}", err=True)
    return typer.Exit(2 if error.code in ("NOT_INITIALISED", "NO_PASSPHRASE", "NO_PIN") else 1)


def _passphrase() -> bytes:
    secret = NationalSettings().passphrase
    value = "" if secret is None else secret.get_secret_value()
    if not value:
        raise NationalError("NO_PASSPHRASE", f"set {PASSPHRASE_ENV}: the national root is "
                            "never kept in clear")
    return value.encode("utf-8")


def _root_access(directory: Path, keys_uri: str | None = None) -> RootAccess:
    """The PIN when the root is in a token (FMC_NATIONAL_PIN), else the passphrase."""
    if keys_uri is not None or root_token(directory) is not None:
        secret = NationalSettings().pin
        return RootAccess(pin=None if secret is None else secret.get_secret_value())
    return RootAccess(passphrase=_passphrase())


def _now() -> int:
    return int(time.time())


def _read_trust_list(source: str) -> str:
    """A city's trust list from a file or an http(s) URL (its signature is checked later)."""
    if source.startswith(("https://", "http://")):
        try:
            response = httpx.get(source, timeout=10.0, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise NationalError("NETWORK_UNAVAILABLE",
                                f"{source}: {type(exc).__name__}") from None
        if response.status_code != 200 or len(response.content) > _MAX_TRUST_LIST_BYTES:
            raise NationalError("BAD_RESPONSE", f"{source} answered {response.status_code}")
        return response.text
    try:
        path = Path(source)
        if path.stat().st_size > _MAX_TRUST_LIST_BYTES:
            raise NationalError("BAD_TRUST_LIST", f"{source} is too large")
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise NationalError("BAD_TRUST_LIST", f"cannot read {source}: "
                            f"{type(exc).__name__}") from None


def _describe(entry: IssuerEntry) -> str:
    keys = ", ".join(f"{key.kid} {key.state.value}" for key in entry.keys)
    blocks = ", ".join(f"{block.first}-{block.last}" for block in entry.sequence_blocks)
    root = jwk_thumbprint(public_jwk(entry.root_key))
    return (f"{entry.code:<12} {entry.state.value:<10} {entry.name_en} / {entry.name_zh}\n"
            f"{'':13}city root {root}  trust list v{entry.trust_list_version}\n"
            f"{'':13}keys: {keys}\n{'':13}sequence: {blocks}\n"
            f"{'':13}status: {entry.status_url}\n{'':13}api:    {entry.api_url}")


@national_app.command("init")
def init(
    directory: Dir,
    name: Annotated[str, typer.Option("--name", help="the national authority's name")] = "CN",
    keys: Annotated[str | None, typer.Option(
        "--keys", help="make the root in a PKCS#11 token, `pkcs11:token=LABEL` (PIN in"
        " FMC_NATIONAL_PIN), plugged in only to publish; default: the encrypted file store")
    ] = None,
) -> None:
    """Create the offline national root; print its fingerprint (verifiers pin it)."""
    try:
        access = _root_access(directory, keys)
        fingerprint, created = init_registry(directory, passphrase=access.passphrase,
                                             pin=access.pin, name=name, keys_uri=keys)
    except NationalError as error:
        raise _fail(error) from None
    typer.echo(f"national root fingerprint:  {fingerprint}")
    if not created:
        typer.echo("already initialised; no new root was made")


@national_app.command("add-issuer")
def add_issuer_command(
    directory: Dir,
    code: Code,
    name_en: Annotated[str, typer.Option("--name-en", help="the city's name in English")],
    name_zh: Annotated[str, typer.Option("--name-zh", help="the city's name in Chinese")],
    trust_list: Annotated[str, typer.Option(
        "--trust-list", help="the city's trust list: a file or its /v1/trust-list URL")],
    city_root_fingerprint: Annotated[str, typer.Option(
        "--city-root-fingerprint", help="the city's root fingerprint, obtained out of band")],
    status_url: Annotated[str, typer.Option("--status-url", help="where its status lists live")],
    api_url: Annotated[str, typer.Option("--api-url", help="its authority API base URL")],
    block_size: Annotated[int, typer.Option(
        "--block-size", help="foreigner-code sequence numbers granted")] = DEFAULT_BLOCK_SIZE,
) -> None:
    """Register a city: its trust list must verify under the given city root."""
    try:
        entry = add_issuer(
            directory, code=code, name_en=name_en, name_zh=name_zh,
            trust_list_jwt=_read_trust_list(trust_list), trust_list_source=trust_list,
            city_root_fingerprint=city_root_fingerprint, status_url=status_url,
            api_url=api_url, now=_now(), block_size=block_size)
    except NationalError as error:
        raise _fail(error) from None
    typer.echo(_describe(entry))
    typer.echo("publish to make it known to verifiers")


@national_app.command("update-issuer")
def update_issuer_command(
    directory: Dir,
    code: Code,
    trust_list: Annotated[str | None, typer.Option(
        "--trust-list", help="a file or URL (default: where it was pulled from)")] = None,
    status_url: Annotated[str | None, typer.Option("--status-url")] = None,
    api_url: Annotated[str | None, typer.Option("--api-url")] = None,
) -> None:
    """Re-pull a city's keys, e.g. after a rotation or a compromise, then publish."""
    try:
        source = trust_list or load_registry(directory).issuer(code).trust_list_source
        entry = update_issuer(directory, code=code, trust_list_jwt=_read_trust_list(source),
                              trust_list_source=source, status_url=status_url,
                              api_url=api_url, now=_now())
    except NationalError as error:
        raise _fail(error) from None
    typer.echo(_describe(entry))


def _set_state(directory: Path, code: str, state: IssuerState) -> None:
    try:
        entry = set_issuer_state(directory, code=code, state=state)
    except NationalError as error:
        raise _fail(error) from None
    typer.echo(f"{entry.code} {entry.state.value}; publish to cut it off at the next sync"
               if state is not IssuerState.ACTIVE else f"{entry.code} active again; publish")


@national_app.command("suspend-issuer")
def suspend_issuer(directory: Dir, code: Code) -> None:
    """Refuse a city's cards everywhere from the next published list (reversible)."""
    _set_state(directory, code, IssuerState.SUSPENDED)


@national_app.command("reinstate-issuer")
def reinstate_issuer(directory: Dir, code: Code) -> None:
    """Accept a suspended city's cards again from the next published list."""
    _set_state(directory, code, IssuerState.ACTIVE)


@national_app.command("remove-issuer")
def remove_issuer(directory: Dir, code: Code) -> None:
    """Remove a city for good; its sequence blocks stay reserved."""
    _set_state(directory, code, IssuerState.REMOVED)


@national_app.command("grant-block")
def grant_block_command(
    directory: Dir,
    code: Code,
    block_size: Annotated[int, typer.Option(
        "--block-size", help="foreigner-code sequence numbers granted")] = DEFAULT_BLOCK_SIZE,
) -> None:
    """Grant a city a further sequence block (the lowest free one), then publish."""
    try:
        entry = grant_block(directory, code=code, block_size=block_size)
    except NationalError as error:
        raise _fail(error) from None
    typer.echo(_describe(entry))
    typer.echo("publish to let the city allocate from it (after its next federation sync)")


@national_app.command("publish")
def publish_command(
    directory: Dir,
    out: Annotated[Path, typer.Option("--out", help="where to write the signed list")],
    lifetime_days: Annotated[int, typer.Option(
        "--lifetime-days", min=1, max=90, help="days until verifiers refuse it")] =
        DEFAULT_LIFETIME_SECONDS // 86_400,
) -> None:
    """Sign the next federation list (its version is one above the last published)."""
    try:
        access = _root_access(directory)
        claims, jwt = publish(directory, passphrase=access.passphrase, pin=access.pin,
                              now=_now(),
                              lifetime_seconds=lifetime_days * 86_400)
        # The version is recorded before the file is written: a version is never signed
        # twice with different contents, which verifiers would refuse as a fork.
        write_atomically(out, (jwt + "\n").encode("ascii"), mode=0o644)
    except NationalError as error:
        raise _fail(error) from None
    except OSError as exc:
        raise _fail(NationalError("WRITE_FAILED", f"{out}: {type(exc).__name__}")) from None
    typer.echo(f"federation list v{claims.version}: {len(claims.issuers)} issuers, "
               f"expires at {claims.expires_at} -> {out}")


@national_app.command("show")
def show(directory: Dir) -> None:
    """The national root fingerprint, last published version and every city."""
    try:
        registry = load_registry(directory)
    except NationalError as error:
        raise _fail(error) from None
    typer.echo(f"national root fingerprint:  {registry.root_fingerprint}")
    typer.echo(f"name: {registry.name}  last published version: {registry.published_version}")
    for registered in registry.issuers:
        typer.echo(_describe(registered.entry))
