"""What a terminal does, without a command line: set up, charge, upload.

Every outside effect is injected: the HTTP client (with the terminal's token already on
it), the clock and the pause between retries, so tests drive it with a fake authority
and a fixed clock. Answers are values; nothing here prints.

Example::

    with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as http:
        terminal = Terminal(Path("/var/lib/shop"), http=http)
        answer = terminal.charge(scanned_text, amount_fen=1250, server=url)
        answer.ok, answer.mode, answer.code        # True, "online", "OK"
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from schemas._jose import b64url_encode
from schemas.challenge import Challenge, new_challenge
from schemas.codes import ChallengeMismatch, FmcError
from schemas.presentation import decode_presentation
from verifier.cache import CacheError, VerifierCache
from verifier.check import verify_presentation
from verifier.checkpoint import Checkpoint
from verifier.policy import POLICIES
from verifier.receipts import ReceiptCheck, Sale, check_receipt
from verifier.replay import replay_key
from verifier.replay_store import ReplayStoreError, SqliteReplayCache
from verifier.terminal.challenges import CHALLENGE_DB, ChallengeStore
from verifier.terminal.config import TerminalConfig
from verifier.terminal.offline import offline_account, offline_decision, unbound_floor
from verifier.terminal.queue import QUEUE_DB, OfflineQueue, QueuedPayment

__all__ = ["ChargeAnswer", "Terminal", "TerminalError", "UploadSummary", "format_fen"]

_BATCH = 100  # items per upload request
# Refusals about this terminal, not about the card: the code was never really used, so it
# is not burnt in the terminal's replay store (the customer can show it again).
_NOT_ABOUT_THE_CARD = {401, 403}


def format_fen(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


class TerminalError(Exception):
    """The terminal cannot do what was asked; ``usage`` when the fix is in its setup."""

    def __init__(self, code: str, detail: str, *, usage: bool = False) -> None:
        super().__init__(detail)
        self.code, self.detail, self.usage = code, detail, usage


@dataclass(frozen=True, slots=True)
class ChargeAnswer:
    """One charge: ``ok``, where it was decided (``online``/``offline``/``None`` when it
    never left the terminal), the code, and the figures behind it."""

    ok: bool
    mode: str | None
    code: str
    amount_fen: int
    payment_id: str | None = None
    balance_fen: int | None = None
    receipt: str | None = None  # RECEIPT_OK or the receipt's refusal code
    card: str | None = None
    queued: int | None = None
    offline_limit_fen: int | None = None
    offline_limit_left_fen: int | None = None
    floor_fen: int | None = None
    detail: str | None = None
    idempotency_key: str | None = None
    usage: bool = False  # refused because of this terminal's own setup (401/403)
    unbound_floor_fen: int | None = None  # offline: the most taken without a challenge

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "mode": self.mode, "code": self.code,
                               "amount_fen": self.amount_fen}
        for name in ("payment_id", "balance_fen", "receipt", "card", "queued",
                     "offline_limit_fen", "offline_limit_left_fen", "floor_fen", "detail",
                     "idempotency_key", "unbound_floor_fen"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(slots=True)
class UploadSummary:
    settled: int = 0
    double_spend: int = 0
    refused: int = 0
    settled_fen: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    still_queued: int = 0

    @property
    def ok(self) -> bool:
        return self.still_queued == 0

    @property
    def uploaded(self) -> int:
        return self.settled + self.double_spend + self.refused

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "uploaded": self.uploaded, "settled": self.settled,
                "double_spend": self.double_spend, "refused": self.refused,
                "settled_fen": self.settled_fen, "codes": self.codes,
                "still_queued": self.still_queued}


def _problem(response: httpx.Response) -> tuple[str, str]:
    """The problem's code and detail (both data from outside: shown, never trusted)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"HTTP_{response.status_code}", ""
    code, detail = body.get("code"), body.get("detail")
    return (str(code) if code else f"HTTP_{response.status_code}",
            str(detail) if detail else "")


def _wall_clock() -> int:
    return int(time.time())


_PENDING_RETRIES = 5  # 202 answers (a cross-city charge under way) asked again


def _retry_after(response: httpx.Response) -> float:
    """The server's Retry-After in seconds (1 to 5), 1 when absent or unreadable."""
    try:
        return min(max(float(response.headers.get("retry-after", "1")), 1.0), 5.0)
    except ValueError:
        return 1.0


class Terminal:
    """One terminal over its cache directory (synced lists, replay store, queue, setup)."""

    def __init__(self, directory: Path, *, http: httpx.Client,
                 clock: Callable[[], int] = _wall_clock,
                 pause: Callable[[float], None] = time.sleep) -> None:
        self.directory, self.http, self.clock, self.pause = directory, http, clock, pause

    # -- where the authority is ------------------------------------------------------------

    def server(self, given: str | None) -> str:
        """``given``, else the one from setup, else the one the cache was synced from."""
        server = given
        if server is None:
            config = TerminalConfig.load(self.directory)
            server = config.server if config is not None else None
        if server is None:
            with contextlib.suppress(CacheError):
                snapshot = VerifierCache(self.directory).load()
                # A national cache names the national publication, not this terminal's city.
                server = snapshot.contents.server if snapshot.federation is None else None
        if not server or not server.startswith(("http://", "https://")):
            raise TerminalError("NO_SERVER", "give --server URL (or run terminal setup)",
                                usage=True)
        return server.rstrip("/")

    # -- setup ------------------------------------------------------------------------------

    def setup(self, server: str) -> TerminalConfig:
        """Ask the authority who this terminal is (merchant, floor) and keep the answer."""
        try:
            response = self.http.get(server + "/v1/terminal")
        except httpx.TransportError as error:
            raise TerminalError("AUTHORITY_UNREACHABLE",
                                f"{server}: {type(error).__name__}") from None
        if response.status_code != 200:
            code, detail = _problem(response)
            raise TerminalError(code, detail or "the authority refused", usage=True)
        try:
            body = response.json()
            config = TerminalConfig(server, int(body["terminal_id"]), str(body["name"]),
                                    int(body["merchant_id"]), str(body["merchant_name"]),
                                    int(body["offline_floor_fen"]))
        except (ValueError, KeyError, TypeError):
            raise TerminalError("BAD_ANSWER",
                                "the authority's answer is not a terminal") from None
        config.store(self.directory)
        return config

    # -- challenge (a pay code bound to one sale) ---------------------------------------------

    def challenge(self, *, amount_fen: int) -> Challenge:
        """A new challenge for a sale of ``amount_fen`` at this terminal, remembered until
        it expires or a bound pay code uses it. Needs ``setup`` (merchant and terminal)."""
        config = TerminalConfig.load(self.directory)
        if config is None:
            raise TerminalError("NOT_SET_UP", "run `verifier terminal setup` first",
                                usage=True)
        challenge = new_challenge(merchant_id=config.merchant_id,
                                  terminal_id=config.terminal_id, amount_fen=amount_fen,
                                  now=self.clock())
        with self._challenges() as store:
            store.remember(challenge)
        return challenge

    @contextlib.contextmanager
    def _challenges(self) -> Iterator[ChallengeStore]:
        try:
            with ChallengeStore(self.directory / CHALLENGE_DB) as store:
                yield store
        except (sqlite3.Error, OSError) as error:
            raise TerminalError("CHALLENGE_STORE",
                                f"the challenge database cannot be used ({type(error).__name__})",
                                usage=True) from None

    def _claim_challenge(self, unverified_digest: bytes, amount_fen: int,
                         now: int) -> Challenge:
        config = TerminalConfig.load(self.directory)
        with self._challenges() as store:
            challenge = store.claim(unverified_digest, amount_fen=amount_fen, now=now)
            if config is None or (challenge.merchant_id, challenge.terminal_id) != (
                    config.merchant_id, config.terminal_id):
                store.release(challenge.digest)  # shown before a new setup: never valid here
                raise ChallengeMismatch("the challenge names another merchant or terminal")
        return challenge

    def _release_challenge(self, challenge: Challenge | None) -> None:
        if challenge is not None:
            with self._challenges() as store:
                store.release(challenge.digest)

    # -- charge -----------------------------------------------------------------------------

    def _receipt(self, unverified_jwt: object, *, amount_fen: int,
                 pay_code: str | None) -> ReceiptCheck:
        try:
            snapshot = VerifierCache(self.directory).load()
            trust_list, federation = snapshot.trust_list, snapshot.state.federation
        except CacheError:
            trust_list, federation = None, None
        config = TerminalConfig.load(self.directory)
        sale = None if config is None or pay_code is None else Sale(
            terminal_id=config.terminal_id, merchant_id=config.merchant_id,
            amount_fen=amount_fen, pay_code=pay_code)
        return check_receipt(unverified_jwt, trust_list=trust_list, sale=sale,
                             federation=federation)

    def charge(self, code_text: str, *, amount_fen: int, server: str,
               floor_fen: int | None = None,
               unbound_floor_fen: int | None = None) -> ChargeAnswer:
        """Online when the authority answers; offline within the floor and the card's
        offline limit when it cannot be reached. A code is taken once by this terminal.

        A code bound to a sale (``FMC2:``) is taken only with a challenge this terminal
        showed, for this amount, unexpired and unused; it is sent with the challenge.
        Offline, an unbound code is taken only up to ``unbound_floor_fen`` (default a
        tenth of the floor), a bound one up to the whole floor."""
        now = self.clock()
        try:
            parts = decode_presentation(code_text)
        except FmcError:
            parts = None  # not a pay code; the authority will say why
        # The code's replay key, once: the replay store holds it, a receipt names it.
        seen = None if parts is None else replay_key(parts.signature, parts.proof_time)
        own_key = None if seen is None else b64url_encode(seen)
        challenge = None
        if parts is not None and parts.challenge_digest is not None:
            try:
                challenge = self._claim_challenge(parts.challenge_digest, amount_fen, now)
            except FmcError as error:  # decided here: no "authority:" detail to show
                return ChargeAnswer(False, None, error.code.value, amount_fen)
        claimed = None if parts is None or seen is None else self._claim(
            seen, parts.proof_time, now)
        if claimed is False:
            return ChargeAnswer(False, None, "REPLAYED", amount_fen)
        idempotency_key = uuid.uuid4().hex
        request: dict[str, object] = {"pay_code": code_text, "amount_fen": amount_fen,
                                      "idempotency_key": idempotency_key}
        if challenge is not None:
            request["challenge"] = challenge.text
        response = None
        failures = pending = 0
        while True:  # retries with the same key: it can never charge twice
            try:
                response = self.http.post(server + "/v1/payments", json=request)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 202 \
                    and pending < _PENDING_RETRIES:
                # Another city's card, its charge still under way there: ask again.
                pending += 1
                self.pause(_retry_after(response))
                continue
            if response is not None and response.status_code < 500:
                break
            failures += 1
            if failures == 2:
                break
            self.pause(0.2)
        if response is not None and response.status_code == 202:
            return ChargeAnswer(False, "online", "PENDING", amount_fen,
                                detail="the card's city has not answered yet",
                                idempotency_key=idempotency_key)
        # 5xx, including 503 ISSUER_UNREACHABLE (offline_allowed) for another city's card.
        if response is None or response.status_code >= 500:
            return self._charge_offline(code_text, own_key, amount_fen, floor_fen, now,
                                        idempotency_key, challenge, unbound_floor_fen)
        if response.status_code == 201:
            body = response.json()
            check = self._receipt(body.get("receipt"), amount_fen=amount_fen,
                                  pay_code=own_key)
            balance = body.get("balance_fen")
            return ChargeAnswer(
                check.ok, "online", "OK" if check.ok else check.code, amount_fen,
                payment_id=str(body.get("payment_id")), receipt=check.code,
                balance_fen=balance if isinstance(balance, int) else None,
                idempotency_key=idempotency_key)
        code, detail = _problem(response)
        about_this_terminal = response.status_code in _NOT_ABOUT_THE_CARD
        if about_this_terminal and claimed and seen is not None:
            self._release(seen)
            self._release_challenge(challenge)
        balance = None
        with contextlib.suppress(ValueError, AttributeError):
            found = response.json().get("balance_fen")
            balance = found if isinstance(found, int) else None
        return ChargeAnswer(False, "online", code, amount_fen, detail=detail or None,
                            balance_fen=balance, usage=about_this_terminal)

    def _claim(self, seen: bytes, proof_time: int, now: int) -> bool:
        """Record the code in the replay store; False when this terminal already took it."""
        expires_at = POLICIES["payment"].replay_expires_at(proof_time)
        try:
            with SqliteReplayCache(VerifierCache(self.directory).replay_path) as replay:
                return replay.check_and_add(seen, expires_at=expires_at, now=now)
        except ReplayStoreError as error:
            raise TerminalError(error.code, str(error), usage=True) from None

    def _release(self, seen: bytes) -> None:
        with SqliteReplayCache(VerifierCache(self.directory).replay_path) as replay:
            replay.release(seen)

    def _charge_offline(self, code_text: str, own_key: str | None, amount_fen: int,
                        floor_fen: int | None, now: int, idempotency_key: str,
                        challenge: Challenge | None,
                        unbound_floor_fen: int | None) -> ChargeAnswer:
        config = TerminalConfig.load(self.directory)
        floor = floor_fen if floor_fen is not None else (
            config.offline_floor_fen if config else 0)
        checkpoint = Checkpoint(VerifierCache(self.directory))
        try:
            snapshot = checkpoint.snapshot()
        except CacheError as error:
            return ChargeAnswer(False, "offline", error.code, amount_fen,
                                detail="authority unreachable and no synced cache")
        finally:
            checkpoint.close()
        # Replay was settled by the replay store; the queue's unique key backs it up.
        result = verify_presentation(code_text, state=snapshot.state,
                                     policy=checkpoint.policy("payment"), now=now,
                                     replay_cache=None, challenge=challenge)
        credential = result.credential
        # A one-use code (P13.3) names no card: it is counted by its handle, which this
        # till takes once ever (the authority counts per card at settlement).
        card = offline_account(credential) if credential is not None else ""
        limit = (credential.offline_limit_fen or 0) if credential is not None else 0
        with OfflineQueue(self.directory / QUEUE_DB) as queue:
            decision = offline_decision(result, amount_fen=amount_fen, floor_fen=floor,
                                        queued_fen=queue.queued_fen(card) if card else 0,
                                        bound=challenge is not None,
                                        unbound_floor_fen=unbound_floor_fen)
            if decision == "OK" and credential is not None and credential.is_one_use \
                    and queue.seen(card):
                decision = "REPLAYED"  # another code of a one-use credential taken here
            if decision == "OK" and own_key is not None:
                item = QueuedPayment(idempotency_key, code_text, own_key, card, amount_fen, now,
                                     challenge=None if challenge is None else challenge.text)
                if not queue.enqueue(item):
                    decision = "REPLAYED"
            waiting = len(queue.items(state="queued"))
            left = limit - queue.queued_fen(card) if credential is not None else 0
        return ChargeAnswer(
            decision == "OK", "offline", decision, amount_fen, card=card or None,
            queued=waiting, offline_limit_fen=limit if credential is not None else None,
            offline_limit_left_fen=max(left, 0), floor_fen=floor,
            idempotency_key=idempotency_key,
            unbound_floor_fen=unbound_floor(floor) if unbound_floor_fen is None
            else unbound_floor_fen)

    # -- upload -----------------------------------------------------------------------------

    def upload(self, server: str) -> UploadSummary:
        """Send what was taken offline; record how each settled. Raises TerminalError when
        the authority cannot be reached or refuses the batch (nothing is lost)."""
        summary = UploadSummary()
        now = self.clock()
        with OfflineQueue(self.directory / QUEUE_DB) as queue:
            pending = queue.items(state="queued")
            for start in range(0, len(pending), _BATCH):
                chunk = pending[start:start + _BATCH]
                kept = f"{len(pending) - start} payments kept for the next upload"
                try:
                    response = self.http.post(
                        server + "/v1/payments/offline-batch",
                        json={"items": [item.upload_item() for item in chunk]})
                except httpx.TransportError as error:
                    raise TerminalError("AUTHORITY_UNREACHABLE",
                                        f"{type(error).__name__}; {kept}") from None
                if response.status_code != 200:
                    code, detail = _problem(response)
                    raise TerminalError(code, f"{detail + '; ' if detail else ''}{kept}",
                                        usage=response.status_code in (401, 403, 422))
                self._record(queue, chunk, response, summary, now)
            summary.still_queued = len(queue.items(state="queued"))
        return summary

    def _record(self, queue: OfflineQueue, chunk: list[QueuedPayment],
                response: httpx.Response, summary: UploadSummary, now: int) -> None:
        by_key = {item.idempotency_key: item for item in chunk}
        try:
            results = response.json().get("results", [])
        except (ValueError, AttributeError):
            results = []
        for result in results if isinstance(results, list) else []:
            if not isinstance(result, dict):
                continue
            item = by_key.get(str(result.get("idempotency_key")))
            outcome = str(result.get("outcome"))
            if item is None or outcome not in ("settled", "double_spend", "refused"):
                continue
            receipt = result.get("receipt")
            if outcome == "settled":
                if not self._receipt(receipt, amount_fen=item.amount_fen,
                                     pay_code=item.pay_code_key).ok:
                    continue  # not proven: it stays queued, and the summary says so
                summary.settled_fen += item.amount_fen
            code = result.get("code")
            if code:
                summary.codes[str(code)] = summary.codes.get(str(code), 0) + 1
            payment_id = result.get("payment_id") or result.get("original_payment_id")
            queue.record_outcome(item.idempotency_key, state=outcome,
                                 code=None if code is None else str(code),
                                 payment_id=None if payment_id is None else str(payment_id),
                                 receipt=receipt if isinstance(receipt, str) else None,
                                 now=now)
            setattr(summary, outcome, getattr(summary, outcome) + 1)
