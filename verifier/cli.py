"""The ``verifier`` command (docs/DESIGN.md section 8): sync, check, serve, status, portraits.

Examples::

    verifier --cache /var/cache/fmc sync --server https://authority.example --root kPrK_qmx...
    verifier --cache /var/cache/fmc check --as hospital --image photo.jpg
    verifier --cache /var/cache/fmc check --as school --text 'FMC1:...' --json
    wallet-sim show --purpose id --text | verifier --cache /var/cache/fmc check --as counter -
    verifier --cache /var/cache/fmc serve --port 8080        # the counter page

``check`` exits 0 when accepted, 1 when refused, 2 on a usage or configuration error.

More command groups plug in with one line (the cache directory is in the context)::

    app.add_typer(terminal_app, name="terminal")      # then: cache_dir(ctx) inside

"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from verifier._cli_context import RootSettings, cache_dir, parse_time, settings_of
from verifier._outside_text import outside
from verifier.cache import CacheError, VerifierCache, default_cache_dir
from verifier.checkpoint import (
    DEFAULT_STATUS_GRACE,
    DEFAULT_TRUST_GRACE,
    CheckOutcome,
    Checkpoint,
    UnknownService,
)
from verifier.policy import POLICIES
from verifier.qr import MAX_IMAGE_BYTES
from verifier.replay_store import ReplayStoreError
from verifier.settings import variable
from verifier.terminal.cli import terminal_app

if TYPE_CHECKING:
    from schemas.federation import FederationClaims
    from verifier.portraits import PortraitFetcher
    from verifier.sync import SyncReport

__all__ = ["app", "cache_dir", "main", "parse_duration", "parse_time"]

EXIT_ACCEPTED, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2

app = typer.Typer(
    name="verifier",
    help="Offline verifier of Foreign Merchant Card QR codes (外籍商友卡核验).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # never dump locals (they may hold secrets)
)
portraits_app = typer.Typer(help="Portraits kept in the cache, shown by the counter page.",
                            no_args_is_help=True)
app.add_typer(portraits_app, name="portraits")
app.add_typer(terminal_app, name="terminal")

_out = Console(highlight=False, soft_wrap=False)
_err = Console(stderr=True, highlight=False)


class Lang(StrEnum):
    en = "en"
    zh = "zh"


@app.callback()
def _root(
    ctx: typer.Context,
    cache: Annotated[Path, typer.Option(
        "--cache", envvar=variable("cache"), file_okay=False,
        help="Cache directory (lists, replay store, portraits).",
    )] = default_cache_dir(),
) -> None:
    ctx.obj = RootSettings(VerifierCache(cache))


# -- shared parsing ----------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str) -> int:
    """Seconds from ``90``, ``90s``, ``15m``, ``24h`` or ``7d``."""
    match = _DURATION_RE.match(text.lower())
    if match is None:
        raise typer.BadParameter("a duration like 3600, 90m, 24h or 7d")
    return int(match.group(1)) * _UNIT[match.group(2)]


def _now(at: str | None) -> int:
    return int(time.time()) if at is None else parse_time(at)


AtOption = Annotated[str | None, typer.Option(
    "--at", help="Check as of this moment (ISO 8601) instead of the clock.",
)]
StatusGrace = Annotated[str, typer.Option(
    "--status-grace", envvar=variable("status_grace"), metavar="DURATION",
    help="Accept a status list this long past its iat + ttl (e.g. 24h) when offline;"
         " its hard exp still applies. The signed timestamp gets the same grace past its"
         " exp.",
)]
TrustGrace = Annotated[str, typer.Option(
    "--trust-grace", envvar=variable("trust_grace"), metavar="DURATION",
    help="Accept a trust list this long past its exp (e.g. 0, 12h).",
)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
PortraitToken = Annotated[Path | None, typer.Option(
    "--portrait-token-file", envvar=variable("portrait_token_file"), dir_okay=False,
    help="A file holding a token with the authority's verifier role: portraits not in the"
         " cache are then fetched (checked against the card's digest) when online.",
)]


def _fail(code: str, detail: str, *, as_json: bool, lang: str | None = None,
          exit_code: int = EXIT_USAGE) -> NoReturn:
    if as_json:
        _print_json({"ok": False, "code": code, "error": code, "detail": detail})
    else:
        from verifier._render import render_error

        render_error(_err, code, detail, lang)
    raise typer.Exit(exit_code)


def _print_json(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _checkpoint(ctx: typer.Context, status_grace: str, trust_grace: str,
                portrait_token_file: Path | None = None, *, as_json: bool = False) -> Checkpoint:
    cache = settings_of(ctx).cache
    fetcher = None
    if portrait_token_file is not None:
        fetcher = _portrait_fetcher(cache, portrait_token_file, as_json=as_json)
    return Checkpoint(cache, status_grace=parse_duration(status_grace),
                      trust_grace=parse_duration(trust_grace), portrait_fetcher=fetcher)


def _portrait_fetcher(cache: VerifierCache, token_file: Path, *,
                      as_json: bool) -> PortraitFetcher | None:
    from verifier.portraits import PortraitFetcher

    try:
        token = token_file.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        _fail("PORTRAIT_TOKEN", f"cannot read {token_file}: {error}", as_json=as_json)
    if not token or any(c.isspace() for c in token):
        _fail("PORTRAIT_TOKEN", f"{token_file} does not hold one token", as_json=as_json)
    try:
        server = cache.load().contents.server
    except CacheError:
        return None  # the check itself reports the missing cache
    return None if server is None else PortraitFetcher(server, token)


# -- sync --------------------------------------------------------------------------------

@app.command()
def sync(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option(
        "--server", help="The authority's base URL, or the national publication's (remembered"
                         " after the first sync).",
    )] = None,
    root: Annotated[str | None, typer.Option(
        "--root", metavar="FINGERPRINT",
        help="The root key's RFC 7638 thumbprint (pinned by the first sync): a city root, or"
             " the national root to accept every listed city's cards.",
    )] = None,
    mirror: Annotated[list[str] | None, typer.Option(
        "--mirror", metavar="URL",
        help="Another place serving the same signed lists (e.g. cardsvc publish --out behind"
             " any web server), repeatable, tried in order; one that fails or serves a list"
             " that is refused is passed over.",
    )] = None,
    at: AtOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Fetch the trust list and status lists, verify them, and store them for offline use.

    Pinned to the national root, it fetches the federation list and every active city's
    status lists (docs/FEDERATION.md). On any failure the previous cache is kept and the
    exit code is 1 (2 for a usage or configuration error)."""
    from verifier.sync import SyncError, sync_cache

    cache = settings_of(ctx).cache
    now = _now(at)
    try:
        if _national(cache, server, root, timeout):
            _sync_national(cache, server=server, root=root, mirrors=tuple(mirror or ()),
                           now=now, timeout=timeout, as_json=as_json)
            return
        report = sync_cache(cache, server=server, root_fingerprint=root, now=now,
                            timeout=timeout, mirrors=tuple(mirror or ()))
    except SyncError as error:
        kept = _kept_note(cache, now)
        _fail(error.code, f"{error.detail}. {kept}", as_json=as_json,
              exit_code=EXIT_USAGE if error.usage else EXIT_REFUSED)
    _print_sync(report, as_json=as_json)


def _national(cache: VerifierCache, server: str | None, root: str | None,
              timeout: float) -> bool:
    """A cache already pinned nationally, or a first sync whose server publishes a
    federation list signed by the root given (a city root never signs one)."""
    from verifier.cache import KIND_NATIONAL
    from verifier.federation_sync import federation_root_matches
    from verifier.sync import SyncError

    try:
        kind = cache.pinned_kind()
    except CacheError as error:
        raise SyncError(error.code, error.detail) from None
    if kind is not None:
        return kind == KIND_NATIONAL
    if server is None or root is None:
        return False
    import httpx

    with httpx.Client(timeout=timeout, follow_redirects=False,
                      headers={"User-Agent": "fmc-verifier"}) as http:
        return federation_root_matches(http, server.rstrip("/"), root)


def _sync_national(cache: VerifierCache, *, server: str | None, root: str | None,
                   mirrors: tuple[str, ...], now: int, timeout: float, as_json: bool) -> None:
    from verifier._render import render_federation_sync, when
    from verifier.federation_sync import sync_federation

    report = sync_federation(cache, server=server, root_fingerprint=root, now=now,
                             mirrors=mirrors, timeout=timeout)
    if not as_json:
        render_federation_sync(_out, report)
        return
    _print_json({
        "ok": True,
        "kind": "national",
        "server": report.server,
        "mirrors": list(report.mirrors),
        "root": report.root_fingerprint,
        "federation_version": report.federation_version,
        "federation_updated": report.federation_updated,
        "federation_expires_at": when(report.federation_expires_at),
        "federation_source": report.federation_source,
        "cities": {code: {"state": city.state, "outcome": city.outcome,
                          "status_lists": dict(city.lists), "error": city.error}
                   for code, city in report.cities.items()},
        "bytes_received": report.bytes_received,
        "synced_at": datetime.fromtimestamp(report.synced_at, UTC).isoformat(),
    })


def _print_sync(report: SyncReport, *, as_json: bool) -> None:
    from verifier._render import render_sync, when

    if as_json:
        _print_json({
            "ok": True,
            "server": report.server,
            "source": report.source,
            "root": report.root_fingerprint,
            "trust_list_version": report.trust_list_version,
            "trust_list_updated": report.trust_list_updated,
            "trust_list_expires_at": when(report.trust_list_expires_at),
            "status_lists": dict(report.status_lists),
            "removed_status_lists": list(report.removed_status_lists),
            "bytes_received": report.bytes_received,
            "synced_at": datetime.fromtimestamp(report.synced_at, UTC).isoformat(),
            "timestamp_version": report.timestamp_version,
        })
    else:
        render_sync(_out, report)


@app.command("sync-portraits")
def sync_portraits(
    ctx: typer.Context,
    at: AtOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Fetch the sealed portrait bundle's changes (after `verifier sync`): only missing
    segments, resumed after a break, each checked against the signed manifest.

    Pinned to the national root: every active city's bundle, from the api_url its
    federation entry names and checked with that city's keys, kept per city.

    Afterwards a check opens the presented holder's portrait offline. On any failure the
    copy held is kept and the exit code is 1."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from verifier.portrait_bundle import (
        PortraitBundleError,
        PortraitBundleStore,
        sync_portrait_bundle,
    )

    cache = settings_of(ctx).cache
    now = _now(at)
    try:
        snapshot = cache.load()
    except CacheError as error:
        _fail(error.code, error.detail, as_json=as_json, exit_code=EXIT_USAGE)
    server = snapshot.contents.server
    if server is None:
        _fail("NO_SERVER", "run `verifier sync --server URL` first", as_json=as_json,
              exit_code=EXIT_USAGE)
    store = PortraitBundleStore(cache.directory / "portrait-bundle")
    progress = Progress("[progress.description]{task.description}", BarColumn(),
                        DownloadColumn(), TransferSpeedColumn(), console=_err,
                        disable=as_json or not _err.is_terminal, transient=True)
    task = progress.add_task("portraits", total=None)
    if snapshot.federation is not None:
        _sync_city_portraits(store.directory, snapshot.federation, now, timeout,
                             as_json=as_json)
        return
    try:
        with progress:
            report = sync_portrait_bundle(
                store, server=server, trust_list=snapshot.trust_list, now=now,
                timeout=timeout,
                progress=lambda done, total: progress.update(task, completed=done, total=total))
    except PortraitBundleError as error:
        _fail(error.code, f"{error.detail}. The portrait bundle held is kept.",
              as_json=as_json)
    finally:
        store.close()
    if as_json:
        _print_json({"ok": True, "version": report.version,
                     "previous_version": report.previous_version,
                     "segments_fetched": report.segments_fetched,
                     "bytes_received": report.bytes_received, "entries": report.entries,
                     "portraits": report.blobs, "rebuilt": report.rebuilt})
    else:
        _out.print(f"Portrait bundle v{report.version}: {report.segments_fetched} segment(s),"
                   f" {report.bytes_received} bytes; {report.blobs} portraits,"
                   f" {report.entries} credentials.")


def _sync_city_portraits(directory: Path, federation: FederationClaims, now: int,
                         timeout: float, *, as_json: bool) -> None:
    """``sync-portraits`` pinned nationally: one bundle per active city."""
    from verifier.portrait_bundle import CityPortraitBundles, sync_city_portrait_bundles

    bundles = CityPortraitBundles(directory)
    try:
        cities = sync_city_portrait_bundles(bundles, federation=federation, now=now,
                                            timeout=timeout)
    finally:
        bundles.close()
    ok = all(city.outcome != "kept" for city in cities.values())
    if as_json:
        _print_json({"ok": ok, "kind": "national", "cities": {
            code: {"outcome": city.outcome, "code": city.error, "detail": city.detail,
                   **({} if city.report is None else {
                       "version": city.report.version,
                       "segments_fetched": city.report.segments_fetched,
                       "bytes_received": city.report.bytes_received,
                       "entries": city.report.entries, "portraits": city.report.blobs})}
            for code, city in cities.items()}})
    else:
        for code, city in cities.items():
            if city.report is not None:
                _out.print(f"{code}: portrait bundle v{city.report.version}:"
                           f" {city.report.segments_fetched} segment(s),"
                           f" {city.report.bytes_received} bytes; {city.report.blobs}"
                           f" portraits, {city.report.entries} credentials.")
            elif city.outcome == "dropped":
                _out.print(f"{code}: no longer active; its portrait bundle is deleted.")
            else:
                _err.print(f"{code}: {city.error}: {city.detail}. The portrait bundle held"
                           " is kept.")
    if not ok:
        raise typer.Exit(1)


def _kept_note(cache: VerifierCache, now: int) -> str:
    from verifier._render import age_words

    try:
        snapshot = cache.load()
    except CacheError:
        return "No usable cache yet."
    return (f"The previous cache is kept (trust list v{snapshot.trust_list.version},"
            f" synced {age_words(snapshot.age_seconds(now))} ago).")


# -- check -------------------------------------------------------------------------------

_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def _looks_like_image(raw: bytes) -> bool:
    return raw.startswith(_IMAGE_MAGIC) or (raw[:4] == b"RIFF" and raw[8:12] == b"WEBP")


@app.command()
def check(
    ctx: typer.Context,
    service: Annotated[str, typer.Option(
        "--as", metavar="SERVICE", help=f"Service policy: {', '.join(POLICIES)}.",
    )],
    stdin: Annotated[str | None, typer.Argument(
        metavar="[-]", help="'-' reads the code text, or a picture, from stdin.",
        show_default=False,
    )] = None,
    text: Annotated[str | None, typer.Option("--text", help="The FMC1: text.")] = None,
    image: Annotated[Path | None, typer.Option(
        "--image", dir_okay=False, help="A picture of the QR code (PNG, JPEG, photo).",
    )] = None,
    as_json: JsonOption = False,
    at: AtOption = None,
    lang: Annotated[Lang | None, typer.Option(
        "--lang", help="One language for the answer (default: English and Chinese).",
    )] = None,
    status_grace: StatusGrace = f"{DEFAULT_STATUS_GRACE}",
    trust_grace: TrustGrace = f"{DEFAULT_TRUST_GRACE}",
    portrait_token_file: PortraitToken = None,
) -> None:
    """Check one QR code offline: ACCEPTED (exit 0) or REFUSED (exit 1) with the reason."""
    language = None if lang is None else lang.value
    sources = [s for s in (stdin, text, image) if s is not None]
    if len(sources) != 1 or (stdin is not None and stdin != "-"):
        _fail("BAD_INPUT", "give exactly one of --text STRING, --image FILE or -",
              as_json=as_json, lang=language)
    now = _now(at)
    checkpoint = _checkpoint(ctx, status_grace, trust_grace, portrait_token_file,
                             as_json=as_json)
    try:
        outcome = _run_check(checkpoint, service, now, text=text, image=image,
                             from_stdin=stdin is not None, as_json=as_json, lang=language)
    except UnknownService as error:
        _fail(error.code, str(error), as_json=as_json, lang=language)
    except CacheError as error:
        _fail(error.code, error.detail, as_json=as_json, lang=language)
    except ReplayStoreError as error:
        _fail(error.code, str(error), as_json=as_json, lang=language)
    finally:
        checkpoint.close()
    outcome = _write_offline_portrait(outcome, settings_of(ctx).cache)
    if as_json:
        _print_json(outcome.to_json())
    else:
        from verifier._render import render_outcome

        render_outcome(_out, outcome, language)
    raise typer.Exit(EXIT_ACCEPTED if outcome.ok else EXIT_REFUSED)


def _write_offline_portrait(outcome: CheckOutcome, cache: VerifierCache) -> CheckOutcome:
    """A portrait opened from the sealed bundle goes to one file, overwritten by the next
    check (``portrait-bundle/last-shown.webp``): the counter keeps no gallery."""
    import dataclasses

    if outcome.portrait_source != "offline" or outcome.portrait is None:
        return outcome
    extension = outcome.portrait_media_type.split("/")[1].replace("jpeg", "jpg")
    path = cache.directory / "portrait-bundle" / f"last-shown.{extension}"
    try:
        for old in path.parent.glob("last-shown.*"):
            old.unlink()
        path.write_bytes(outcome.portrait)
    except OSError:
        return outcome
    return dataclasses.replace(outcome, portrait_file=str(path))


def _run_check(
    checkpoint: Checkpoint, service: str, now: int, *, text: str | None, image: Path | None,
    from_stdin: bool, as_json: bool, lang: str | None,
) -> CheckOutcome:
    if text is not None:
        return checkpoint.check_text(text, service=service, now=now)
    if image is not None:
        try:
            with open(image, "rb") as handle:
                raw = handle.read(MAX_IMAGE_BYTES + 1)
        except OSError as error:
            _fail("FILE_NOT_FOUND", f"{image}: {error.strerror}", as_json=as_json, lang=lang)
        return checkpoint.check_image(raw, service=service, now=now)
    raw = sys.stdin.buffer.read(MAX_IMAGE_BYTES + 1)
    if _looks_like_image(raw):
        return checkpoint.check_image(raw, service=service, now=now)
    return checkpoint.check_text(raw.decode("utf-8", "replace"), service=service, now=now)


# -- status ------------------------------------------------------------------------------

@app.command()
def status(ctx: typer.Context, at: AtOption = None, as_json: JsonOption = False) -> None:
    """Show what the cache holds and how old it is."""
    from verifier._render import age_words, when

    cache = settings_of(ctx).cache
    now = _now(at)
    try:
        snapshot = cache.load()
    except CacheError as error:
        _fail(error.code, error.detail, as_json=as_json)
    lists = {
        list_id: {"issued_at": when(claims.issued_at), "ttl": claims.ttl,
                  "expires_at": when(claims.expires_at)}
        for list_id, claims in snapshot.status_lists.items()
    }
    summary: dict[str, Any] = {
        "ok": True,
        "cache": str(cache.directory),
        "root": snapshot.contents.root_fingerprint,
        "server": snapshot.contents.server,
        "synced_at": when(snapshot.contents.synced_at),
        "cache_age_seconds": snapshot.age_seconds(now),
        "cache_fallback": snapshot.from_previous,
        "trust_list_version": snapshot.trust_list.version,
        "trust_list_expires_at": when(snapshot.trust_list.expires_at),
        "status_lists": lists,
        # The signed timestamp held (P8.5); null for an authority that publishes none.
        "timestamp": None if snapshot.state.timestamp is None else {
            "version": snapshot.state.timestamp.version,
            "expires_at": when(snapshot.state.timestamp.expires_at)},
    }
    if as_json:
        _print_json(summary)
        return
    _out.print(outside(f"cache       {summary['cache']}"))
    _out.print(outside(f"root        {summary['root']}"))
    _out.print(outside(f"server      {summary['server']}"))
    _out.print(f"synced      {summary['synced_at']} ({age_words(summary['cache_age_seconds'])}"
               " ago)")
    _out.print(f"trust list  v{summary['trust_list_version']},"
               f" expires {summary['trust_list_expires_at']}")
    for list_id, entry in lists.items():
        _out.print(outside(f"status {list_id:<5}issued {entry['issued_at']},"
                           f" ttl {entry['ttl']} s, expires {entry['expires_at']}"))
    if summary["timestamp"] is not None:
        _out.print(f"timestamp   v{summary['timestamp']['version']},"
                   f" expires {summary['timestamp']['expires_at']}")
    if snapshot.from_previous:
        _out.print("[bold yellow]the current manifest is damaged; the previous one is used")


# -- serve -------------------------------------------------------------------------------

@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on (keep it local).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    status_grace: StatusGrace = f"{DEFAULT_STATUS_GRACE}",
    trust_grace: TrustGrace = f"{DEFAULT_TRUST_GRACE}",
    portrait_token_file: PortraitToken = None,
) -> None:
    """The counter page for staff: scan with a camera or upload a picture."""
    import ipaddress

    import uvicorn

    from verifier.web import create_app

    checkpoint = _checkpoint(ctx, status_grace, trust_grace, portrait_token_file)
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host == "localhost"
    if not local:
        _err.print(Text("warning:", style="bold yellow") + outside(
            f" the counter page has no login; anyone who can reach {host}:{port} can check"
            " codes and see holders' data."))
    _err.print(outside(f"counter page on http://{host}:{port}/"
                       f"  (cache {checkpoint.cache.directory})"))
    uvicorn.run(create_app(checkpoint), host=host, port=port, log_level="warning")


# -- portraits ---------------------------------------------------------------------------

@portraits_app.command("add")
def portraits_add(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(dir_okay=False, help="JPEG or PNG portraits.")],
) -> None:
    """Store portraits in the cache under their digest (the credential's pd claim)."""
    from schemas._jose import b64url_encode

    cache = settings_of(ctx).cache
    for path in files:
        try:
            image = path.read_bytes()
        except OSError as error:
            _fail("FILE_NOT_FOUND", f"{path}: {error.strerror}", as_json=False)
        if not image.startswith((b"\xff\xd8\xff", b"\x89PNG")):
            _fail("BAD_PORTRAIT", f"{path}: not a JPEG or PNG", as_json=False)
        try:
            digest = cache.add_portrait(image)
        except ValueError as error:
            _fail("BAD_PORTRAIT", f"{path}: {error}", as_json=False)
        _out.print(outside(f"{b64url_encode(digest)}  {path}"))


def main() -> None:
    app()
