"""``wallet-sim``: the foreigner's phone on the command line (docs/DESIGN.md section 8).

The PIN comes from ``FMC_WALLET_PIN`` when set, otherwise it is asked for (hidden).
Exit codes: 0 done, 1 refused (server said no, credentials expired, network down),
2 usage or configuration error (no wallet, bad arguments); a wrong PIN is a refusal (1).

Example::

    export FMC_WALLET_PIN=482913
    wallet-sim --wallet phone.wallet provision --server http://127.0.0.1:8000 --code K7QM-4XPA-9TZC
    wallet-sim --wallet phone.wallet show --purpose pay              # QR in the terminal
    wallet-sim --wallet phone.wallet show --purpose id --png id.png --text
    wallet-sim --wallet phone.wallet serve --port 8766               # phone page in a browser
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from schemas import FmcError, Purpose
from schemas.challenge import Challenge, decode_challenge
from schemas.text import printable
from wallet_sim import authority
from wallet_sim._atomic import write_atomically
from wallet_sim.card import (
    RENEW_SECONDS,
    Card,
    Freshness,
    OneUsePay,
    present,
    take_one_use_pay,
)
from wallet_sim.errors import WalletError, WalletErrorCode
from wallet_sim.qr import qr_code, qr_halfblocks, qr_png
from wallet_sim.settings import WalletSettings, variable
from wallet_sim.wallet import KdfLimits, Wallet, create_wallet, open_wallet

__all__ = ["PIN_ENV", "main", "make_app"]

PIN_ENV = variable("wallet_pin")
_EPILOG = (
    "PIN: set FMC_WALLET_PIN for non-interactive use, otherwise it is asked for. "
    "Exit codes: 0 done, 1 refused, 2 usage or configuration error."
)


def _real_clock() -> int:
    return int(time.time())


@dataclass(frozen=True, slots=True)
class _Runtime:
    clock: Callable[[], int]
    sleep: Callable[[float], None]
    kdf_limits: KdfLimits | None
    wallet_option: Path | None

    @property
    def wallet_path(self) -> Path:
        # Checked here rather than by Typer so that every `--help` works without --wallet.
        if self.wallet_option is None:
            raise WalletError(WalletErrorCode.WALLET_REQUIRED,
                              "no wallet file: pass --wallet PATH or set FMC_WALLET")
        return self.wallet_option


def _date(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _say(message: str) -> None:
    # Messages carry a server's error text: control characters are spelled out, not obeyed.
    typer.echo(printable(message), err=True)


@contextlib.contextmanager
def _reporting() -> Iterator[None]:
    """Turn wallet errors into one clear line and the contract's exit code."""
    try:
        yield
    except WalletError as error:
        _say(f"error [{error.code}]: {error.message}")
        raise typer.Exit(2 if error.is_usage_error else 1) from None


def _read_pin(*, new: bool) -> str:
    given = WalletSettings().wallet_pin
    if given is not None:
        return given.get_secret_value()
    if not sys.stdin.isatty():
        raise WalletError(WalletErrorCode.PIN_REQUIRED,
                          f"no PIN: set {PIN_ENV} or run in a terminal to type it")
    prompt = "Choose a PIN for the new wallet" if new else "Wallet PIN"
    pin = str(typer.prompt(prompt, hide_input=True))
    if new and str(typer.prompt("Repeat the PIN", hide_input=True)) != pin:
        raise WalletError(WalletErrorCode.PIN_MISMATCH, "the two PINs differ; nothing was written")
    return pin


def _open(runtime: _Runtime) -> Wallet:
    if not runtime.wallet_path.exists():
        raise WalletError(WalletErrorCode.WALLET_NOT_FOUND,
                          f"no wallet file at {runtime.wallet_path}; run `provision` first")
    return open_wallet(runtime.wallet_path, _read_pin(new=False))


def _refresh_hint(runtime: _Runtime, card: Card) -> str:
    return (f"to renew them run `wallet-sim --wallet {runtime.wallet_path} refresh --card "
            f"{card.card_number}` (needs the network), or ask the registrar for a new "
            "provisioning code and run `provision` again")


def _refuse_revoked(card: Card) -> None:
    if card.revoked_at is not None:
        raise WalletError(WalletErrorCode.CARD_REVOKED,
                          f"card {card.card_number} was revoked by the authority (learned "
                          f"{_date(card.revoked_at)}); its codes are refused everywhere, so "
                          "none is shown; ask the registrar about a new card")
    if card.suspended:
        raise WalletError(WalletErrorCode.CARD_SUSPENDED,
                          f"card {card.card_number} is suspended by the authority; its codes "
                          "are refused until it is reinstated; then run `refresh`")


def _check_expiry(runtime: _Runtime, card: Card, now: int, *, refuse: bool) -> None:
    freshness = card.freshness(now)
    if freshness is Freshness.EXPIRED:
        message = (f"the credentials of card {card.card_number} expired on "
                   f"{_date(card.expires_at)}; a verifier would refuse the code; "
                   + _refresh_hint(runtime, card))
        if refuse:
            raise WalletError(WalletErrorCode.CREDENTIALS_EXPIRED, message)
        _say(f"warning [{WalletErrorCode.CREDENTIALS_EXPIRED}]: " + message)
    elif freshness is Freshness.EXPIRING_SOON:
        days = max(0, (card.expires_at - now) // 86_400)
        _say(f"warning [EXPIRING_SOON]: the credentials of card {card.card_number} expire on "
             f"{_date(card.expires_at)} (in {days} days); " + _refresh_hint(runtime, card))


def _read_challenge(text: str | None, image: Path | None) -> Challenge:
    """The till's challenge from --challenge or --challenge-image (exactly one)."""
    if (text is None) == (image is None):
        raise WalletError(WalletErrorCode.BAD_ARGUMENT,
                          "give exactly one of --challenge TEXT or --challenge-image FILE")
    if image is not None:
        from schemas.scan import MAX_IMAGE_BYTES, ScanError, decode_qr

        try:
            text = decode_qr(image.read_bytes()[: MAX_IMAGE_BYTES + 1])
        except OSError as exc:
            raise WalletError(WalletErrorCode.BAD_CHALLENGE,
                              f"could not read {image}: {exc.strerror or exc}") from None
        except ScanError as exc:
            raise WalletError(WalletErrorCode.BAD_CHALLENGE,
                              f"no challenge in {image} ({exc.code})") from None
    assert text is not None
    try:
        return decode_challenge(text)
    except FmcError as exc:
        raise WalletError(WalletErrorCode.BAD_CHALLENGE,
                          f"not a sale challenge ({exc.code})") from None


def _describe(card: Card) -> str:
    holder = card.holder
    who = holder.full_name or "(no name on the card)"
    code = f", foreigner code {holder.foreigner_code}" if holder.foreigner_code else ""
    portrait = "with photo" if card.portrait is not None else "no photo"
    return (f"card {card.card_number}: {who}{code}; credentials "
            f"{'/'.join(p.value for p in card.purposes)} valid until {_date(card.expires_at)}; "
            f"{portrait}")


def _draw(console: Console, text: str, caption: str) -> None:
    # Dark modules on a light background whatever the terminal's colours (cameras need it).
    for line in qr_halfblocks(text):
        console.print(Text(line, style="black on bright_white"), soft_wrap=True)
    console.print(caption, markup=False, highlight=False)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise WalletError(WalletErrorCode.BAD_ARGUMENT,
                          f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def make_app(
    *,
    clock: Callable[[], int] = _real_clock,
    sleep: Callable[[float], None] = time.sleep,
    kdf_limits: KdfLimits | None = None,
) -> typer.Typer:
    """The CLI with its clock, sleep and new-wallet KDF cost injected (tests fix them)."""
    app = typer.Typer(
        name="wallet-sim",
        help="The foreigner's phone: holds Foreign Merchant Cards and shows their QR codes.",
        epilog=_EPILOG,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        wallet: Path | None = typer.Option(None, "--wallet", envvar=variable("wallet"),
                                           dir_okay=False,
                                    help="The encrypted wallet file (created by provision); "
                                    "required by every command."),
    ) -> None:
        ctx.obj = _Runtime(clock, sleep, kdf_limits, wallet)

    @app.command("provision")
    def provision_command(
        ctx: typer.Context,
        server: str = typer.Option(..., "--server", help="The authority, e.g. https://host"),
        code: str = typer.Option(..., "--code", help="The one-time provisioning code."),
    ) -> None:
        """Redeem a provisioning code: make a device key and store the card's credentials."""
        runtime: _Runtime = ctx.obj
        with _reporting():
            path = runtime.wallet_path
            # Unlock (or create) before talking to the server: a wrong PIN must not spend
            # the one-time code.
            if path.exists():
                wallet = open_wallet(path, _read_pin(new=False))
            else:
                wallet = create_wallet(path, _read_pin(new=True), limits=runtime.kdf_limits)
            card = authority.provision(server, code, now=runtime.clock())
            try:
                wallet.put(card)
            except WalletError as error:
                raise WalletError(error.code, error.message + "; the code was spent: ask the "
                                  "registrar for a new one") from error
            _say("provisioned " + _describe(card))
            _check_expiry(runtime, card, runtime.clock(), refuse=False)

    @app.command("show")
    def show_command(
        ctx: typer.Context,
        purpose: Purpose = typer.Option(..., "--purpose", case_sensitive=False,
                                        help="pay, id or svc"),
        png: Path | None = typer.Option(None, "--png", dir_okay=False,
                                        help="Write the QR as a PNG file."),
        text: bool = typer.Option(False, "--text", help="Print the FMC1: text."),
        watch: bool = typer.Option(False, "--watch",
                                   help=f"Renew every {RENEW_SECONDS} s until Ctrl-C."),
        card_number: str | None = typer.Option(None, "--card", help="Which card (see list)."),
    ) -> None:
        """Show a fresh presentation: terminal QR, --png file and/or --text."""
        runtime: _Runtime = ctx.obj
        with _reporting():
            wallet = _open(runtime)
            card = wallet.card(card_number)
            _refuse_revoked(card)
            _check_expiry(runtime, card, runtime.clock(), refuse=True)
            console = Console(highlight=False)
            one_use: OneUsePay | None = None
            try:
                while True:
                    now = runtime.clock()
                    if purpose is Purpose.PAY:
                        # One pay code per display, also across runs: remembered in the
                        # wallet before it is shown. A showing takes the next one-use pay
                        # credential (P13.3); its 30 s renewals keep it.
                        if one_use is None:
                            card, one_use = take_one_use_pay(card, now=now)
                        if one_use is None:  # the card-bound pay credential (old wallet)
                            now = card.next_pay_proof_time(now)
                            card = replace(card, last_pay_proof_time=now)
                        wallet.put(card)
                    presentation = present(card, purpose, now=now, one_use=one_use)
                    if png is not None:
                        image = qr_png(presentation)
                        write_atomically(png, image, mode=0o644)
                        _say(f"wrote {png} (QR version {qr_code(presentation).version}, "
                             f"{len(image)} bytes)")
                    if text:
                        typer.echo(presentation)
                    if png is None and not text:
                        if watch:
                            console.clear()
                        _draw(console, presentation,
                              f"{card.card_number} · {purpose.value} · "
                              + (f"renews every {RENEW_SECONDS} s, Ctrl-C to stop" if watch
                                 else f"valid for about {RENEW_SECONDS * 2} s"))
                    if not watch:
                        break
                    runtime.sleep(RENEW_SECONDS)
                    if wallet.changed_on_disk():  # `refresh` ran meanwhile
                        wallet.reload()
                        card = wallet.card(card.card_number)
            except KeyboardInterrupt:
                _say("stopped")
            except OSError as exc:
                raise WalletError(WalletErrorCode.WRITE_FAILED,
                                  f"could not write {png}: {exc.strerror or exc}") from exc

    @app.command("pay")
    def pay_command(
        ctx: typer.Context,
        challenge: str | None = typer.Option(None, "--challenge",
                                             help="The till's FMCC1: challenge text."),
        challenge_image: Path | None = typer.Option(
            None, "--challenge-image", dir_okay=False,
            help="A picture of the till's challenge QR."),
        png: Path | None = typer.Option(None, "--png", dir_okay=False,
                                        help="Write the QR as a PNG file."),
        text: bool = typer.Option(False, "--text", help="Print the FMC2: text."),
        card_number: str | None = typer.Option(None, "--card", help="Which card (see list)."),
    ) -> None:
        """Pay one sale: sign the till's challenge (merchant, terminal, amount) with the
        pay credential, so the code is good for that sale only."""
        runtime: _Runtime = ctx.obj
        with _reporting():
            sale = _read_challenge(challenge, challenge_image)
            wallet = _open(runtime)
            card = wallet.card(card_number)
            _refuse_revoked(card)
            now = runtime.clock()
            _check_expiry(runtime, card, now, refuse=True)
            # What the holder agrees to, before anything is signed.
            _say(f"paying {sale.amount_fen // 100}.{sale.amount_fen % 100:02d} yuan to"
                 f" merchant {sale.merchant_id}, terminal {sale.terminal_id}"
                 f" (challenge of {_date(sale.issued_at)})")
            card, one_use = take_one_use_pay(card, now=now)
            if one_use is None:  # the card-bound pay credential (old wallet)
                now = card.next_pay_proof_time(now)
                card = replace(card, last_pay_proof_time=now)
            wallet.put(card)
            code = present(card, Purpose.PAY, now=now, challenge=sale, one_use=one_use)
            try:
                if png is not None:
                    image = qr_png(code)
                    write_atomically(png, image, mode=0o644)
                    _say(f"wrote {png} (QR version {qr_code(code).version}, "
                         f"{len(image)} bytes)")
            except OSError as exc:
                raise WalletError(WalletErrorCode.WRITE_FAILED,
                                  f"could not write {png}: {exc.strerror or exc}") from exc
            if text:
                typer.echo(code)
            if png is None and not text:
                _draw(Console(highlight=False), code,
                      f"{card.card_number} · pay {sale.amount_fen} fen to terminal"
                      f" {sale.terminal_id} · this sale only")

    @app.command("list")
    def list_command(ctx: typer.Context) -> None:
        """List the cards in the wallet and when their credentials expire."""
        runtime: _Runtime = ctx.obj
        with _reporting():
            wallet = _open(runtime)
            if not wallet.cards:
                _say("the wallet holds no card yet; run `provision`")
                return
            now = runtime.clock()
            table = Table(title=Text(f"Cards in {runtime.wallet_path}"))
            for column in ("card", "holder", "foreigner code", "credentials", "valid until",
                           "state"):
                table.add_column(column)
            labels = {Freshness.VALID: "valid", Freshness.EXPIRING_SOON: "expires soon",
                      Freshness.EXPIRED: "EXPIRED"}
            for card in wallet.cards:
                holder = card.holder
                # Text cells: names and numbers are shown as data, never parsed as markup.
                table.add_row(Text(card.card_number), Text(holder.full_name),
                              Text(holder.foreigner_code or ""),
                              " ".join(p.value for p in card.purposes), _date(card.expires_at),
                              "REVOKED" if card.revoked_at is not None
                              else "SUSPENDED" if card.suspended
                              else labels[card.freshness(now)])
            Console(highlight=False, width=140).print(table)
            for card in wallet.cards:
                if card.revoked_at is None:
                    _check_expiry(runtime, card, now, refuse=False)

    @app.command("refresh")
    def refresh_command(
        ctx: typer.Context,
        card_number: str | None = typer.Option(None, "--card",
                                               help="Which card (default: every card)."),
    ) -> None:
        """Ask the authority for fresh credentials, signed by the card's device key."""
        runtime: _Runtime = ctx.obj
        with _reporting():
            wallet = _open(runtime)
            targets = [wallet.card(card_number)] if card_number or len(wallet.cards) <= 1 \
                else list(wallet.cards)
            if not targets:
                wallet.card(None)  # raises NO_CARDS
            failures: list[WalletError] = []
            for card in targets:
                try:
                    try:
                        fresh = authority.refresh(card, now=runtime.clock())
                    except WalletError as error:
                        if error.server_code == "CARD_REVOKED":
                            # Remember the answer: `list` and `show` must not say "valid".
                            wallet.put(replace(card, revoked_at=runtime.clock()))
                            raise WalletError(WalletErrorCode.CARD_REVOKED,
                                              f"card {card.card_number} is revoked; the wallet "
                                              "now marks it so and shows no code for it",
                                              server_code=error.server_code) from error
                        raise
                    wallet.put(fresh)
                    _say("refreshed " + _describe(fresh))
                    if fresh.suspended:
                        _say(f"warning [CARD_SUSPENDED]: card {fresh.card_number} is "
                             "suspended; no code is shown until it is reinstated")
                    elif card.suspended:
                        _say(f"note [REINSTATED]: card {fresh.card_number} was reinstated; "
                             "its codes work again")
                    if fresh.holder != card.holder:
                        # A passport change: the refresh carried it; no new code is needed.
                        _say(f"note [PERSONAL_DATA_CHANGED]: the authority updated the "
                             f"personal data of card {fresh.card_number} (e.g. a new "
                             "passport); the new credentials are in the wallet and the old "
                             "codes are refused; no new provisioning code is needed")
                except WalletError as error:
                    if len(targets) == 1:
                        raise
                    _say(f"error [{error.code}] card {card.card_number}: {error.message}")
                    failures.append(error)
            if failures:
                raise typer.Exit(2 if all(f.is_usage_error for f in failures) else 1)

    @app.command("serve")
    def serve_command(
        ctx: typer.Context,
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        port: int = typer.Option(8766, "--port", min=0, max=65535,
                                 help="Port (0: any free port)."),
    ) -> None:
        """Serve the phone page (card, photo, dynamic QR) for a browser."""
        runtime: _Runtime = ctx.obj
        # Imported here: the web stack costs half a second that other commands need not pay.
        import uvicorn

        from wallet_sim.web import LOCAL_HOSTS, create_app

        with _reporting():
            wallet = _open(runtime)
            local = host in LOCAL_HOSTS
            if not local:
                _say(f"warning: listening on {host}: anyone who reaches it sees this card")
            sock = _bind(host, port)
            bound_port = sock.getsockname()[1]
            app_ = create_app(wallet, clock=runtime.clock,
                              allowed_hosts=LOCAL_HOSTS if local else ("*",))
            shown_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
            _say(f"wallet page: http://{shown_host}:{bound_port}/  (Ctrl-C to stop)")
            server = uvicorn.Server(uvicorn.Config(app_, log_level="warning", access_log=False))
            try:
                server.run(sockets=[sock])
            finally:
                sock.close()

    return app


def main() -> None:
    """Console script entry point (``wallet-sim``), on the real clock."""
    make_app()(prog_name="wallet-sim")
