"""A payment terminal: signed receipts checked offline, a durable offline queue, and the
``verifier terminal`` commands a shop runs (setup, charge, upload, queue).

``charge`` sends the pay code to the authority (``POST /v1/payments``). When the authority
cannot be reached it verifies the code itself against the synced cache and accepts it
offline if the amount fits the terminal's floor and what is left of the card's offline
limit on this terminal; the code is then kept in ``terminal-queue.sqlite`` (fsynced)
until ``upload`` sends it (``POST /v1/payments/offline-batch``). Every code is recorded
in the cache's replay store first, so this terminal never takes one code twice.

Receipts are compact JWS signed by the authority's issuer key (``typ`` fmc-receipt+jwt);
:func:`verify_receipt` checks one against the synced trust list, with no network.

Examples::

    export FMC_TERMINAL_TOKEN=...            # the terminal's token, never on the command line
    verifier --cache DIR sync --server https://authority.example --root kPrK_qmx...
    verifier --cache DIR terminal setup --server https://authority.example
    verifier --cache DIR terminal charge --image scan.jpg --amount 1250
    verifier --cache DIR terminal upload

    receipt = verify_receipt(jwt, trust_list=VerifierCache(path).load().trust_list)
    receipt.amount_fen, receipt.balance_fen, receipt.pay_code
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from keys._atomic import write_atomically
from schemas._jose import b64url_encode, parse_json_object
from schemas.codes import (
    FmcError,
    KeyNotValidAtIssue,
    Malformed,
    UnknownKey,
)
from schemas.presentation import decode_presentation
from schemas.trust_list import KeyState, TrustListClaims
from verifier._cli_context import cache_dir, parse_time
from verifier._outside_text import outside
from verifier._sqlite import open_wal
from verifier.check import VerificationResult
from verifier.replay import replay_key
from verifier.trust import verify_issuer_signed

__all__ = [
    "MAX_AMOUNT_FEN",
    "QUEUE_DB",
    "RECEIPT_TYP",
    "OfflineQueue",
    "QueuedPayment",
    "Receipt",
    "Sale",
    "TerminalConfig",
    "format_fen",
    "offline_decision",
    "pay_code_key",
    "receipt_matches_sale",
    "terminal_app",
    "verify_receipt",
]

RECEIPT_TYP = "fmc-receipt+jwt"
QUEUE_DB = "terminal-queue.sqlite"
CONFIG_FILE = "terminal.json"
MAX_AMOUNT_FEN = 10_000_000  # 100,000 yuan: the authority's cap on one payment
_RECEIPT_SIGNERS = (KeyState.ACTIVE, KeyState.RETIRED, KeyState.NEXT)
_BATCH = 100  # items per upload request
EXIT_ACCEPTED, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


# -- receipts -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Receipt:
    """What the authority signs for a charge or a refund.

    ``pay_code`` is the pay code's replay key (base64url of SHA-256 over the credential
    signature and the proof time): the terminal recomputes it from the code it scanned.
    """

    receipt_id: str  # the payment id, or the refund id
    kind: str  # payment | refund
    payment_id: str
    issuer: str
    card_number: str
    merchant_id: int
    terminal_id: int
    amount_fen: int  # charged, or refunded
    balance_fen: int  # the card's balance after it
    overdraft_fen: int  # the part of this payment the holder now owes (offline only)
    mode: str  # online | offline (of the payment)
    issued_at: int
    accepted_at: int
    pay_code: str

    _NAMES = (("rid", "receipt_id", str), ("knd", "kind", str), ("pid", "payment_id", str),
              ("iss", "issuer", str), ("cn", "card_number", str), ("mid", "merchant_id", int),
              ("tid", "terminal_id", int), ("amt", "amount_fen", int),
              ("bal", "balance_fen", int), ("od", "overdraft_fen", int), ("mode", "mode", str),
              ("iat", "issued_at", int), ("at", "accepted_at", int), ("pc", "pay_code", str))

    def to_payload(self) -> dict[str, Any]:
        return {claim: getattr(self, name) for claim, name, _ in self._NAMES}

    @staticmethod
    def from_payload(payload: dict[str, Any]) -> Receipt:
        values: dict[str, Any] = {}
        for claim, name, kind in Receipt._NAMES:
            value = payload.get(claim)
            if type(value) is not kind:
                raise Malformed(f"receipt claim {claim} missing or of the wrong type")
            if isinstance(value, int) and value < 0:
                raise Malformed(f"receipt claim {claim} is negative")
            values[name] = value
        if values["kind"] not in ("payment", "refund") or values["mode"] not in (
                "online", "offline"):
            raise Malformed("unknown receipt kind or mode")
        return Receipt(**values)


def verify_receipt(unverified_jwt: str, *, trust_list: TrustListClaims) -> Receipt:
    """Check a receipt offline: header (alg first), a trusted issuer key, the signature,
    then the claims, the issuer and the key's window. Raises FmcError with its code."""
    key, payload_bytes = verify_issuer_signed(
        unverified_jwt, trust_list=trust_list, typ=RECEIPT_TYP,
        signer_states=_RECEIPT_SIGNERS, what="receipt",
    )
    receipt = Receipt.from_payload(parse_json_object(payload_bytes))
    if receipt.issuer != trust_list.issuer:
        raise UnknownKey("receipt issuer is not the trust list's issuer")
    if receipt.issued_at < key.valid_from or (
            key.valid_until is not None and receipt.issued_at >= key.valid_until):
        raise KeyNotValidAtIssue("the key was not valid when this receipt was signed")
    return receipt


@dataclass(frozen=True, slots=True)
class Sale:
    """The sale a terminal expects a receipt for: its own ids (from ``terminal setup``),
    the amount it asked for and the replay key of the pay code it scanned."""

    terminal_id: int
    merchant_id: int
    amount_fen: int
    pay_code: str


def receipt_matches_sale(receipt: Receipt, sale: Sale) -> str:
    """``RECEIPT_OK`` when a verified receipt is the payment receipt of exactly this sale,
    else the first failed check's code, in this fixed order: kind, terminal, merchant,
    amount, pay code. A signature alone proves nothing about which sale it is for: a
    fake or man-in-the-middle authority can replay a genuine receipt of another sale.

    Example::

        receipt_matches_sale(receipt, Sale(7, 3, 1250, pay_code_key(code)))  # "RECEIPT_OK"
    """
    if receipt.kind != "payment":
        return "RECEIPT_NOT_A_PAYMENT"
    if receipt.terminal_id != sale.terminal_id:
        return "RECEIPT_OTHER_TERMINAL"
    if receipt.merchant_id != sale.merchant_id:
        return "RECEIPT_OTHER_MERCHANT"
    if receipt.amount_fen != sale.amount_fen:
        return "RECEIPT_OTHER_AMOUNT"
    if receipt.pay_code != sale.pay_code:
        return "RECEIPT_OTHER_PAY_CODE"
    return "RECEIPT_OK"


def pay_code_key(unverified_pay_code: str) -> str:
    """The replay key of a pay code (base64url), as receipts carry it; verifies nothing.

    Raises Malformed when the text is not a presentation."""
    parts = decode_presentation(unverified_pay_code)
    return b64url_encode(replay_key(parts.signature, parts.proof_time))


def format_fen(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


# -- the offline decision ---------------------------------------------------------------------

def offline_decision(
    result: VerificationResult, *, amount_fen: int, floor_fen: int, queued_fen: int
) -> str:
    """``OK`` when a terminal may accept this pay code offline, else the refusal code.

    The code must verify (payment policy, synced cache); the amount must fit the
    terminal's floor and what is left of the card's offline limit (``ol``) after the
    payments this terminal holds for the card and has not uploaded yet.
    """
    if not result.ok or result.credential is None:
        return result.code.value
    if amount_fen > floor_fen:
        return "OFFLINE_FLOOR_EXCEEDED"
    limit = result.credential.offline_limit_fen or 0
    if queued_fen + amount_fen > limit:
        return "OFFLINE_LIMIT_EXCEEDED"
    return "OK"


# -- the durable queue ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class QueuedPayment:
    idempotency_key: str
    pay_code: str
    pay_code_key: str
    card_number: str
    amount_fen: int
    accepted_at: int
    state: str = "queued"  # queued | settled | double_spend | refused
    code: str | None = None
    payment_id: str | None = None
    receipt: str | None = None

    def upload_item(self) -> dict[str, Any]:
        return {"pay_code": self.pay_code, "amount_fen": self.amount_fen,
                "accepted_at": datetime.fromtimestamp(self.accepted_at, UTC).isoformat(),
                "idempotency_key": self.idempotency_key}


_QUEUE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS queued_payment ("
    " idempotency_key TEXT PRIMARY KEY, pay_code TEXT NOT NULL,"
    " pay_code_key TEXT NOT NULL UNIQUE, card_number TEXT NOT NULL,"
    " amount_fen INTEGER NOT NULL CHECK (amount_fen > 0), accepted_at INTEGER NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'queued', code TEXT, payment_id TEXT, receipt TEXT,"
    " uploaded_at INTEGER)",
    "CREATE INDEX IF NOT EXISTS queued_payment_state ON queued_payment (state, card_number)",
)
_COLUMNS = ("idempotency_key, pay_code, pay_code_key, card_number, amount_fen, accepted_at,"
            " state, code, payment_id, receipt")


class OfflineQueue:
    """Pay codes accepted offline, in SQLite (WAL, synchronous FULL): an accepted payment
    is on disk before the terminal says ACCEPTED. Safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_wal(path, busy_timeout_ms=10_000, synchronous="FULL",
                            schema=_QUEUE_SCHEMA)

    def enqueue(self, item: QueuedPayment) -> bool:
        """Keep one payment; False when this pay code is already in the queue."""
        with self._lock:
            cursor = self._db.execute(
                f"INSERT INTO queued_payment ({_COLUMNS}) VALUES (?,?,?,?,?,?,'queued',"  # noqa: S608
                "NULL,NULL,NULL) ON CONFLICT DO NOTHING",
                (item.idempotency_key, item.pay_code, item.pay_code_key, item.card_number,
                 item.amount_fen, item.accepted_at))
            return cursor.rowcount == 1

    def queued_fen(self, card_number: str) -> int:
        """What this terminal accepted offline for the card and has not settled yet."""
        with self._lock:
            row = self._db.execute(
                "SELECT coalesce(sum(amount_fen), 0) FROM queued_payment"
                " WHERE state = 'queued' AND card_number = ?", (card_number,)).fetchone()
        return int(row[0])

    def items(self, *, state: str | None = None) -> list[QueuedPayment]:
        query = f"SELECT {_COLUMNS} FROM queued_payment"  # noqa: S608
        args: tuple[str, ...] = ()
        if state is not None:
            query += " WHERE state = ?"
            args = (state,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY accepted_at, rowid", args).fetchall()
        return [QueuedPayment(*row) for row in rows]

    def record_outcome(
        self, idempotency_key: str, *, state: str, code: str | None, payment_id: str | None,
        receipt: str | None, now: int,
    ) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE queued_payment SET state = ?, code = ?, payment_id = ?, receipt = ?,"
                " uploaded_at = ? WHERE idempotency_key = ?",
                (state, code, payment_id, receipt, now, idempotency_key))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> OfflineQueue:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


# -- the terminal's configuration -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TerminalConfig:
    """What ``terminal setup`` learnt from the authority (``GET /v1/terminal``)."""

    server: str
    terminal_id: int
    name: str
    merchant_id: int
    merchant_name: str
    offline_floor_fen: int

    @staticmethod
    def load(directory: Path) -> TerminalConfig | None:
        try:
            raw = json.loads((directory / CONFIG_FILE).read_text("utf-8"))
            return TerminalConfig(**{name: raw[name] for name in TerminalConfig.__slots__})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(directory / CONFIG_FILE,
                         json.dumps(asdict(self), indent=1, sort_keys=True).encode("utf-8"))


# -- the commands -----------------------------------------------------------------------------

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
    "--token", envvar="FMC_TERMINAL_TOKEN", show_envvar=True,
    help="The terminal's bearer token (prefer the environment variable).")]
TimeoutOption = Annotated[float, typer.Option(help="Seconds to wait for the authority.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
AtOption = Annotated[str | None, typer.Option(
    "--at", help="Use this moment (ISO 8601) as the terminal's clock.")]


def _directory(ctx: typer.Context) -> Path:
    return cache_dir(ctx)  # the root command owns --cache


def _now(at: str | None) -> int:
    return int(time.time()) if at is None else parse_time(at)


def _print_json(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _fail(code: str, detail: str, *, as_json: bool, exit_code: int = EXIT_USAGE) -> NoReturn:
    if as_json:
        _print_json({"ok": False, "code": code, "detail": detail})
    else:
        _err.print(Text.assemble(("REFUSED", "bold red"), " ", outside(code), ": ",
                                 outside(detail)))
    raise typer.Exit(exit_code)


def _server(directory: Path, given: str | None, *, as_json: bool) -> str:
    from verifier.cache import CacheError, VerifierCache

    server = given
    if server is None:
        config = TerminalConfig.load(directory)
        server = config.server if config is not None else None
    if server is None:
        with contextlib.suppress(CacheError):
            server = VerifierCache(directory).load().contents.server
    if not server or not server.startswith(("http://", "https://")):
        _fail("NO_SERVER", "give --server URL (or run terminal setup)", as_json=as_json)
    return server.rstrip("/")


def _token(token: str | None, *, as_json: bool) -> str:
    if not token:
        _fail("NO_TOKEN", "set FMC_TERMINAL_TOKEN (or --token)", as_json=as_json)
    return token


def _client(token: str, timeout: float) -> Any:
    import httpx

    return httpx.Client(timeout=timeout, follow_redirects=False, headers={
        "Authorization": f"Bearer {token}", "User-Agent": "fmc-terminal"})


def _problem_code(response: Any) -> str:
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        code = None
    return str(code) if code else f"HTTP_{response.status_code}"


@terminal_app.command()
def setup(
    ctx: typer.Context, server: ServerOption = None, token: TokenOption = None,
    timeout: TimeoutOption = 10.0, as_json: JsonOption = False,
) -> None:
    """Fetch this terminal's merchant and offline floor from the authority and keep them."""
    import httpx

    directory = _directory(ctx)
    base = _server(directory, server, as_json=as_json)
    try:
        with _client(_token(token, as_json=as_json), timeout) as http:
            response = http.get(base + "/v1/terminal")
    except httpx.TransportError as error:
        _fail("AUTHORITY_UNREACHABLE", f"{base}: {type(error).__name__}", as_json=as_json,
              exit_code=EXIT_REFUSED)
    if response.status_code != 200:
        _fail(_problem_code(response), "the authority refused", as_json=as_json)
    try:
        body = response.json()
        config = TerminalConfig(base, int(body["terminal_id"]), str(body["name"]),
                                int(body["merchant_id"]), str(body["merchant_name"]),
                                int(body["offline_floor_fen"]))
    except (ValueError, KeyError, TypeError):
        _fail("BAD_ANSWER", "the authority's answer is not a terminal", as_json=as_json,
              exit_code=EXIT_REFUSED)
    config.store(directory)
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


def _check_receipt(directory: Path, jwt: Any, *, expect_amount: int,
                   expect_pay_code: str | None) -> tuple[str, Receipt | None]:
    """``RECEIPT_OK``, ``RECEIPT_UNCHECKED`` (no synced trust list) or a refusal code.

    Without the terminal's own ids (no ``terminal setup``) or the scanned code's key, no
    receipt can prove this sale: that is a refusal (fail closed), not "unchecked"."""
    from verifier.cache import CacheError, VerifierCache

    try:
        trust_list = VerifierCache(directory).load().trust_list
    except CacheError:
        return "RECEIPT_UNCHECKED", None
    if not isinstance(jwt, str):
        return "RECEIPT_MISSING", None
    try:
        receipt = verify_receipt(jwt, trust_list=trust_list)
    except FmcError as error:
        return f"RECEIPT_{error.code.value}", None
    config = TerminalConfig.load(directory)
    if config is None or expect_pay_code is None:
        return "RECEIPT_SALE_UNKNOWN", receipt
    sale = Sale(terminal_id=config.terminal_id, merchant_id=config.merchant_id,
                amount_fen=expect_amount, pay_code=expect_pay_code)
    return receipt_matches_sale(receipt, sale), receipt


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
    timeout: TimeoutOption = 5.0,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Charge a pay code: online, or ACCEPTED OFFLINE when the authority is unreachable.

    Exit 0 when accepted, 1 when refused, 2 on a usage or configuration error."""
    import httpx

    from verifier.cache import VerifierCache
    from verifier.policy import POLICIES
    from verifier.replay_store import ReplayStoreError, SqliteReplayCache

    directory = _directory(ctx)
    code_text = _read_code(stdin, text, image, as_json=as_json)
    base = _server(directory, server, as_json=as_json)
    bearer = _token(token, as_json=as_json)
    now = _now(at)
    try:
        own_key: str | None = pay_code_key(code_text)
    except FmcError:
        own_key = None  # not a pay code; the authority will say why
    if own_key is not None:
        # This terminal takes a code once, online or not (the authority's guard is global).
        parts = decode_presentation(code_text)
        policy = POLICIES["payment"]
        try:
            with SqliteReplayCache(VerifierCache(directory).replay_path) as replay:
                fresh = replay.check_and_add(
                    replay_key(parts.signature, parts.proof_time),
                    expires_at=parts.proof_time + policy.proof_window + 2 * policy.leeway + 1,
                    now=now)
        except ReplayStoreError as error:
            _fail(error.code, str(error), as_json=as_json)
        if not fresh:
            _answer({"ok": False, "mode": None, "code": "REPLAYED", "amount_fen": amount},
                    as_json=as_json)
    idempotency_key = uuid.uuid4().hex
    request = {"pay_code": code_text, "amount_fen": amount, "idempotency_key": idempotency_key}
    response = None
    with _client(bearer, timeout) as http:
        for attempt in range(2):  # one retry with the same key: it can never charge twice
            try:
                response = http.post(base + "/v1/payments", json=request)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code < 500:
                break
            if attempt == 0:
                time.sleep(0.2)
    if response is None or response.status_code >= 500:
        _charge_offline(directory, code_text, own_key, amount, floor, now,
                        idempotency_key, as_json=as_json)
        return
    if response.status_code == 201:
        body = response.json()
        check, _ = _check_receipt(directory, body.get("receipt"), expect_amount=amount,
                                  expect_pay_code=own_key)
        ok = check in ("RECEIPT_OK", "RECEIPT_UNCHECKED")
        _answer({"ok": ok, "mode": "online", "code": "OK" if ok else check,
                 "amount_fen": amount, "payment_id": body.get("payment_id"),
                 "balance_fen": body.get("balance_fen"), "receipt": check,
                 "idempotency_key": idempotency_key}, as_json=as_json)
    code = _problem_code(response)
    _answer({"ok": False, "mode": "online", "code": code, "amount_fen": amount},
            as_json=as_json, exit_code=EXIT_USAGE if response.status_code in (401, 403)
            else EXIT_REFUSED)


def _charge_offline(
    directory: Path, code_text: str, own_key: str | None, amount: int, floor: int | None,
    now: int, idempotency_key: str, *, as_json: bool,
) -> None:
    from verifier.cache import CacheError, VerifierCache
    from verifier.check import verify_presentation
    from verifier.checkpoint import Checkpoint

    config = TerminalConfig.load(directory)
    floor_fen = floor if floor is not None else (config.offline_floor_fen if config else 0)
    checkpoint = Checkpoint(VerifierCache(directory))
    try:
        snapshot = checkpoint.snapshot()
    except CacheError as error:
        _answer({"ok": False, "mode": "offline", "code": error.code, "amount_fen": amount,
                 "detail": "authority unreachable and no synced cache"}, as_json=as_json)
    finally:
        checkpoint.close()
    # Replay was settled above (the replay store); the queue's unique key backs it up.
    result = verify_presentation(code_text, state=snapshot.state,
                                 policy=checkpoint.policy("payment"), now=now,
                                 replay_cache=None)
    with OfflineQueue(directory / QUEUE_DB) as queue:
        card = result.credential.card_number if result.credential is not None else ""
        decision = offline_decision(result, amount_fen=amount, floor_fen=floor_fen,
                                    queued_fen=queue.queued_fen(card) if card else 0)
        if decision == "OK" and own_key is not None:
            item = QueuedPayment(idempotency_key, code_text, own_key, card, amount, now)
            if not queue.enqueue(item):
                decision = "REPLAYED"
        waiting = len(queue.items(state="queued"))
        left = ((result.credential.offline_limit_fen or 0) - queue.queued_fen(card)
                if result.credential is not None else 0)
    _answer({"ok": decision == "OK", "mode": "offline", "code": decision,
             "amount_fen": amount, "card": card or None, "queued": waiting,
             "offline_limit_left_fen": max(left, 0), "idempotency_key": idempotency_key},
            as_json=as_json)


def _answer(answer: dict[str, Any], *, as_json: bool,
            exit_code: int | None = None) -> NoReturn:
    ok = bool(answer["ok"])
    if as_json:
        _print_json(answer)
    else:
        amount = format_fen(int(answer["amount_fen"]))
        if ok and answer["mode"] == "online":
            checked = ("receipt verified" if answer["receipt"] == "RECEIPT_OK"
                       else "receipt not checked: run verifier sync")
            _out.print(Text.assemble(
                ("ACCEPTED ONLINE", "bold green"), f"  {amount} yuan  payment ",
                outside(answer["payment_id"]),
                f"  balance {format_fen(int(answer['balance_fen']))} yuan  ({checked})"))
        elif ok:
            _out.print(Text.assemble(
                ("ACCEPTED OFFLINE", "bold yellow"), f"  {amount} yuan  card ",
                outside(answer["card"]), f"  kept for upload ({answer['queued']} waiting)"))
        else:
            where = f" ({answer['mode']})" if answer.get("mode") else ""
            _out.print(Text.assemble(("REFUSED", "bold red"), outside(where), "  ",
                                     outside(answer["code"]), f"  {amount} yuan"))
    raise typer.Exit(EXIT_ACCEPTED if ok else (exit_code or EXIT_REFUSED))


@terminal_app.command()
def upload(
    ctx: typer.Context, server: ServerOption = None, token: TokenOption = None,
    timeout: TimeoutOption = 30.0, at: AtOption = None, as_json: JsonOption = False,
) -> None:
    """Send the payments taken offline to the authority and record how each settled.

    Exit 0 when the queue is empty afterwards, 1 when the authority could not be reached
    (nothing is lost: the queue is kept), 2 on a usage or configuration error."""
    import httpx

    directory = _directory(ctx)
    base = _server(directory, server, as_json=as_json)
    bearer = _token(token, as_json=as_json)
    now = _now(at)
    counts = {"settled": 0, "double_spend": 0, "refused": 0}
    settled_fen = 0
    codes: dict[str, int] = {}
    with OfflineQueue(directory / QUEUE_DB) as queue, _client(bearer, timeout) as http:
        pending = queue.items(state="queued")
        for start in range(0, len(pending), _BATCH):
            chunk = pending[start:start + _BATCH]
            try:
                response = http.post(base + "/v1/payments/offline-batch",
                                     json={"items": [item.upload_item() for item in chunk]})
            except httpx.TransportError as error:
                _fail("AUTHORITY_UNREACHABLE", f"{type(error).__name__}; {len(pending) - start}"
                      " payments kept for the next upload", as_json=as_json,
                      exit_code=EXIT_REFUSED)
            if response.status_code != 200:
                _fail(_problem_code(response), f"{len(pending) - start} payments kept",
                      as_json=as_json, exit_code=EXIT_USAGE if response.status_code in (
                          401, 403, 422) else EXIT_REFUSED)
            by_key = {item.idempotency_key: item for item in chunk}
            for result in response.json().get("results", []):
                item = by_key.get(str(result.get("idempotency_key")))
                outcome = str(result.get("outcome"))
                if item is None or outcome not in counts:
                    continue
                receipt = result.get("receipt")
                if outcome == "settled":
                    check, _ = _check_receipt(directory, receipt, expect_amount=item.amount_fen,
                                              expect_pay_code=item.pay_code_key)
                    if check not in ("RECEIPT_OK", "RECEIPT_UNCHECKED"):
                        continue  # not proven: keep it queued and say so below
                    settled_fen += item.amount_fen
                code = result.get("code")
                if code:
                    codes[str(code)] = codes.get(str(code), 0) + 1
                queue.record_outcome(item.idempotency_key, state=outcome,
                                     code=None if code is None else str(code),
                                     payment_id=result.get("payment_id") or
                                     result.get("original_payment_id"),
                                     receipt=receipt if isinstance(receipt, str) else None,
                                     now=now)
                counts[outcome] += 1
        left = len(queue.items(state="queued"))
    summary = {"ok": left == 0, "uploaded": sum(counts.values()), **counts,
               "settled_fen": settled_fen, "codes": codes, "still_queued": left}
    if as_json:
        _print_json(summary)
    else:
        _out.print(outside(f"uploaded {summary['uploaded']}: settled {counts['settled']}"
                           f" ({format_fen(settled_fen)} yuan), double spends"
                           f" {counts['double_spend']}, refused {counts['refused']}"
                           + (f" {codes}" if codes else "") + f"; still queued {left}"))
    raise typer.Exit(EXIT_ACCEPTED if left == 0 else EXIT_REFUSED)


@terminal_app.command("queue")
def show_queue(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the payments taken offline and how each settled."""
    with OfflineQueue(_directory(ctx) / QUEUE_DB) as queue:
        items = queue.items()
    if as_json:
        _print_json({"ok": True, "items": [
            {"idempotency_key": i.idempotency_key, "card": i.card_number,
             "amount_fen": i.amount_fen, "accepted_at": i.accepted_at, "state": i.state,
             "code": i.code, "payment_id": i.payment_id} for i in items]})
        return
    for i in items:
        when = datetime.fromtimestamp(i.accepted_at, UTC).isoformat()
        _out.print(outside(f"{when}  {i.card_number}  {format_fen(i.amount_fen):>10} yuan"
                           f"  {i.state}{'  ' + i.code if i.code else ''}"
                           f"{'  ' + i.payment_id if i.payment_id else ''}"))
    if not items:
        _out.print("no payments taken offline")
