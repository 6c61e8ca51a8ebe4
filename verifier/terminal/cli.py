"""``verifier terminal``: the commands a shop runs (setup, charge, upload, queue).

Thin: it reads the inputs, builds a :class:`~verifier.terminal.service.Terminal` with an
HTTP client holding the token, and prints the answer (rich, every outside value as data,
or ``--json``). Exit 0 accepted, 1 refused, 2 a usage or configuration error."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.text import Text

from schemas.receipt import MAX_AMOUNT_FEN
from verifier._cli_context import cache_dir, parse_time
from verifier._outside_text import outside
from verifier.messages import Bilingual, reason
from verifier.settings import variable
from verifier.terminal._words import charge_words
from verifier.terminal.queue import QUEUE_DB, OfflineQueue
from verifier.terminal.service import ChargeAnswer, Terminal, TerminalError, format_fen

__all__ = ["terminal_app"]

EXIT_ACCEPTED, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2

terminal_app = typer.Typer(
    help="A payment terminal: charge pay codes online, or offline when the authority is"
         " unreachable, and upload what was taken offline.",
    no_args_is_help=True,
)
_out = Console(highlight=False, soft_wrap=False)
_err = Console(stderr=True, highlight=False)

ServerOption = Annotated[str | None, typer.Option(
    "--server", help="The authority's base URL (default: from setup or the last sync).")]
TokenOption = Annotated[str | None, typer.Option(
    "--token", envvar=variable("terminal_token"), show_envvar=True,
    help="The terminal's bearer token (prefer the environment variable).")]
TimeoutOption = Annotated[float, typer.Option(help="Seconds to wait for the authority.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
AtOption = Annotated[str | None, typer.Option(
    "--at", help="Use this moment (ISO 8601) as the terminal's clock.")]


def _print_json(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _words(words: Bilingual) -> None:
    # One line each, wrapped by the terminal itself: a sentence stays greppable.
    _out.print(outside(f"  {words.en}"), soft_wrap=True)
    _out.print(outside(f"  {words.zh}"), soft_wrap=True)


def _fail(code: str, detail: str, *, as_json: bool, exit_code: int = EXIT_USAGE) -> NoReturn:
    if as_json:
        _print_json({"ok": False, "code": code, "detail": detail})
    else:
        _err.print(Text.assemble(("REFUSED", "bold red"), " ", outside(code), ": ",
                                 outside(detail)))
        plain = reason(code)
        if plain.en != reason("").en:  # known words: say what to do
            _err.print(outside(f"  {plain.en}"))
            _err.print(outside(f"  {plain.zh}"))
    raise typer.Exit(exit_code)


def _failed(error: TerminalError, *, as_json: bool) -> NoReturn:
    _fail(error.code, error.detail, as_json=as_json,
          exit_code=EXIT_USAGE if error.usage else EXIT_REFUSED)


def _token(token: str | None, *, as_json: bool) -> str:
    if not token:
        _fail("NO_TOKEN", "set FMC_TERMINAL_TOKEN (or --token)", as_json=as_json)
    return token


def _client(token: str, timeout: float) -> httpx.Client:
    return httpx.Client(timeout=timeout, follow_redirects=False, headers={
        "Authorization": f"Bearer {token}", "User-Agent": "fmc-terminal"})


def _clock(at: str | None) -> Any:
    fixed = None if at is None else parse_time(at)
    return (lambda: int(time.time())) if fixed is None else (lambda: fixed)


@terminal_app.command()
def setup(
    ctx: typer.Context, server: ServerOption = None, token: TokenOption = None,
    timeout: TimeoutOption = 10.0, as_json: JsonOption = False,
) -> None:
    """Fetch this terminal's merchant and offline floor from the authority and keep them."""
    bearer = _token(token, as_json=as_json)
    with _client(bearer, timeout) as http:
        terminal = Terminal(cache_dir(ctx), http=http)
        try:
            config = terminal.setup(terminal.server(server))
        except TerminalError as error:
            _failed(error, as_json=as_json)
    if as_json:
        _print_json({"ok": True, **asdict(config)})
    else:
        _out.print(outside(f"terminal {config.terminal_id} ({config.name}) of merchant"
                           f" {config.merchant_id} ({config.merchant_name}); offline floor"
                           f" {format_fen(config.offline_floor_fen)} yuan"))


def _read_code(stdin: str | None, text: str | None, image: Path | None, *,
               as_json: bool) -> str:
    from verifier.qr import MAX_IMAGE_BYTES, ScanError, decode_qr

    sources = [s for s in (stdin, text, image) if s is not None]
    if len(sources) != 1 or (stdin is not None and stdin != "-"):
        _fail("BAD_INPUT", "give exactly one of --text STRING, --image FILE or -",
              as_json=as_json)
    if text is not None:
        return text.strip()
    if image is not None:
        try:
            raw = image.read_bytes()[: MAX_IMAGE_BYTES + 1]
        except OSError as error:
            _fail("FILE_NOT_FOUND", f"{image}: {error.strerror}", as_json=as_json)
    else:
        raw = sys.stdin.buffer.read(MAX_IMAGE_BYTES + 1)
        if raw.lstrip().startswith(b"FMC"):
            return raw.decode("ascii", "replace").strip()
    try:
        return decode_qr(raw)
    except ScanError as error:
        _fail(error.code, error.detail, as_json=as_json, exit_code=EXIT_REFUSED)


@terminal_app.command()
def charge(
    ctx: typer.Context,
    amount: Annotated[int, typer.Option("--amount", metavar="FEN", min=1, max=MAX_AMOUNT_FEN,
                                        help="The amount in fen (1 yuan = 100 fen).")],
    stdin: Annotated[str | None, typer.Argument(
        metavar="[-]", help="'-' reads the code text, or a picture, from stdin.",
        show_default=False)] = None,
    text: Annotated[str | None, typer.Option("--text", help="The scanned FMC1: text.")] = None,
    image: Annotated[Path | None, typer.Option(
        "--image", dir_okay=False, help="A picture of the pay code.")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    floor: Annotated[int | None, typer.Option(
        "--floor", metavar="FEN", min=0, max=MAX_AMOUNT_FEN,
        help="Largest offline payment (default: the floor from setup, else 0).")] = None,
    unbound_floor: Annotated[int | None, typer.Option(
        "--unbound-floor", metavar="FEN", min=0, max=MAX_AMOUNT_FEN,
        help="Largest offline payment by a code not bound to the sale's challenge"
             " (default: a tenth of the floor).")] = None,
    timeout: TimeoutOption = 5.0,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Charge a pay code: online, or ACCEPTED OFFLINE when the authority is unreachable.

    Exit 0 when accepted, 1 when refused, 2 on a usage or configuration error."""
    code_text = _read_code(stdin, text, image, as_json=as_json)
    bearer = _token(token, as_json=as_json)
    with _client(bearer, timeout) as http:
        terminal = Terminal(cache_dir(ctx), http=http, clock=_clock(at))
        try:
            answer = terminal.charge(code_text, amount_fen=amount,
                                     server=terminal.server(server), floor_fen=floor,
                                     unbound_floor_fen=unbound_floor)
        except TerminalError as error:
            _failed(error, as_json=as_json)
    _answer(answer, as_json=as_json)


@terminal_app.command()
def challenge(
    ctx: typer.Context,
    amount: Annotated[int, typer.Option("--amount", metavar="FEN", min=1, max=MAX_AMOUNT_FEN,
                                        help="The sale's amount in fen.")],
    png: Annotated[Path | None, typer.Option(
        "--png", dir_okay=False, help="Write the challenge QR as a PNG file.")] = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a challenge for one sale (merchant, terminal, amount, a nonce, this till's time):
    the phone signs it, and the pay code it makes is good for this sale only.

    Remembered in the cache directory until it expires (5 minutes) or is paid."""
    from schemas.qr import presentation_qr

    with httpx.Client() as http:  # unused: a challenge is made without the network
        terminal = Terminal(cache_dir(ctx), http=http, clock=_clock(at))
        try:
            sale = terminal.challenge(amount_fen=amount)
        except TerminalError as error:
            _failed(error, as_json=as_json)
    if png is not None:
        try:
            presentation_qr(sale.text).make_image().save(png)
        except OSError as error:
            _fail("WRITE_FAILED", f"{png}: {error.strerror or error}", as_json=as_json)
    if as_json:
        _print_json({"ok": True, "challenge": sale.text, "merchant_id": sale.merchant_id,
                     "terminal_id": sale.terminal_id, "amount_fen": sale.amount_fen,
                     "issued_at": sale.issued_at, "expires_at": sale.expires_at})
        return
    _out.print(outside(f"sale of {format_fen(sale.amount_fen)} yuan at terminal"
                       f" {sale.terminal_id} of merchant {sale.merchant_id}; valid until"
                       f" {datetime.fromtimestamp(sale.expires_at, UTC).isoformat()}"))
    _out.print(outside(sale.text))
    _words(Bilingual("Let the holder scan this, then charge the code the phone shows.",
                     "请持卡人扫描此码，然后对手机显示的付款码收款。"))


def _answer(answer: ChargeAnswer, *, as_json: bool) -> NoReturn:
    if as_json:
        _print_json(answer.to_json())
    else:
        amount = format_fen(answer.amount_fen)
        if answer.ok and answer.mode == "online":
            _out.print(Text.assemble(
                ("ACCEPTED ONLINE", "bold green"), f"  {amount} yuan  payment ",
                outside(answer.payment_id or ""),
                ("" if answer.balance_fen is None  # a one-use code: no balance to a till
                 else f"  balance {format_fen(answer.balance_fen)} yuan"),
                "  (receipt verified)"))
        elif answer.ok:
            _out.print(Text.assemble(
                ("ACCEPTED OFFLINE", "bold yellow"), f"  {amount} yuan  card ",
                outside(answer.card or ""), f"  kept for upload ({answer.queued} waiting)"))
        else:
            where = f" ({answer.mode})" if answer.mode else ""
            _out.print(Text.assemble(("REFUSED", "bold red"), outside(where), "  ",
                                     outside(answer.code), f"  {amount} yuan"))
            if answer.detail:
                _out.print(Text.assemble("  authority: ", outside(answer.detail)))
        _words(charge_words(answer))
    if answer.ok:
        raise typer.Exit(EXIT_ACCEPTED)
    raise typer.Exit(EXIT_USAGE if answer.usage else EXIT_REFUSED)


@terminal_app.command()
def upload(
    ctx: typer.Context, server: ServerOption = None, token: TokenOption = None,
    timeout: TimeoutOption = 30.0, at: AtOption = None, as_json: JsonOption = False,
) -> None:
    """Send the payments taken offline to the authority and record how each settled.

    Exit 0 when the queue is empty afterwards, 1 when the authority could not be reached
    (nothing is lost: the queue is kept), 2 on a usage or configuration error."""
    bearer = _token(token, as_json=as_json)
    with _client(bearer, timeout) as http:
        terminal = Terminal(cache_dir(ctx), http=http, clock=_clock(at))
        try:
            summary = terminal.upload(terminal.server(server))
        except TerminalError as error:
            _failed(error, as_json=as_json)
    if as_json:
        _print_json(summary.to_json())
    else:
        codes = summary.codes
        _out.print(outside(f"uploaded {summary.uploaded}: settled {summary.settled}"
                           f" ({format_fen(summary.settled_fen)} yuan), double spends"
                           f" {summary.double_spend}, refused {summary.refused}"
                           + (f" {codes}" if codes else "")
                           + f"; still queued {summary.still_queued}"))
    raise typer.Exit(EXIT_ACCEPTED if summary.ok else EXIT_REFUSED)


@terminal_app.command("queue")
def show_queue(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the payments taken offline and how each settled."""
    with OfflineQueue(cache_dir(ctx) / QUEUE_DB) as queue:
        items = queue.items()
    if as_json:
        _print_json({"ok": True, "items": [
            {"idempotency_key": i.idempotency_key, "card": i.card_number,
             "amount_fen": i.amount_fen, "accepted_at": i.accepted_at, "state": i.state,
             "code": i.code, "payment_id": i.payment_id,
             "bound": i.challenge is not None} for i in items]})
        return
    for i in items:
        when = datetime.fromtimestamp(i.accepted_at, UTC).isoformat()
        _out.print(outside(f"{when}  {i.card_number}  {format_fen(i.amount_fen):>10} yuan"
                           f"  {i.state}{'  ' + i.code if i.code else ''}"
                           f"{'  ' + i.payment_id if i.payment_id else ''}"))
    if not items:
        _out.print("no payments taken offline")
