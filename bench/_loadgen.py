"""Load on the authority over HTTP, and the invariants that must hold after it.

Worker threads play every actor in turn: a registrar enrols a foreigner and issues a card,
the phone redeems the provisioning code, a cashier tops the account up, a terminal
charges two fresh pay codes, a verifier syncs (trust list and status lists, with and
without ETag) and now and then a supervisor revokes the card. Every answer is timed per
operation; everything the server acknowledged (a 2xx) is remembered so that it can be
looked for in the database afterwards, however the run ended. The floor mix asks only
``GET /v1/health`` and a trust list with a matching ETag (304).

Used by bench/bench_load.py (throughput, p50/p99) and tests/faults (nothing acknowledged
may be lost to a fault).

Example::

    load = LoadGenerator("http://127.0.0.1:8000", admin_token=token,
                         terminal_tokens=[till_token])
    report = load.run(workers=8, seconds=20)
    print(report.ops["enrol"].per_second(report.seconds), report.errors)
    problems = check_invariants(database_url, load.acked, server=..., root_fingerprint=...)
"""

from __future__ import annotations

import contextlib
import secrets
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from keys import Ed25519Signer, sign_presentation
from schemas import STATUS_REVOKED, STATUS_SUSPENDED, STATUS_VALID, StatusList, b64url_encode
from schemas.provisioning import provisioning_proof_message

__all__ = [
    "FLOOR_OPS",
    "STORY_OPS",
    "Acked",
    "Failure",
    "LoadGenerator",
    "LoadReport",
    "OpStats",
    "authority_app",
    "check_invariants",
]

STORY_OPS = ("enrol", "issue", "provision", "topup", "pay", "revoke", "trust_list",
             "trust_list_etag", "status_index", "status_list", "status_list_etag")
FLOOR_OPS = ("health", "trust_list_304")
_KEPT_FAILURES = 500
_TOPUP_FEN = 10_000
_PAY_FEN = 100


def authority_app() -> Any:
    """``uvicorn bench._loadgen:authority_app --factory --workers N``: the app that
    ``cardsvc serve`` runs, built from the ``CARDSVC_*`` environment in every worker."""
    from cardsvc.api import create_app
    from cardsvc.settings import get_settings

    return create_app(get_settings())


@dataclass(frozen=True)
class Failure:
    """An answer that was not the expected one (``status`` None: no answer at all)."""

    op: str
    status: int | None
    code: str | None
    content_type: str | None
    detail: str
    at: float  # time.monotonic()


@dataclass
class OpStats:
    latencies_s: list[float] = field(default_factory=list)
    failures: int = 0

    @property
    def count(self) -> int:
        return len(self.latencies_s)

    def per_second(self, seconds: float) -> float:
        return (self.count - self.failures) / seconds if seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        if len(self.latencies_s) == 1:
            return self.latencies_s[0] * 1000
        cuts = statistics.quantiles(self.latencies_s, n=100, method="inclusive")
        return cuts[min(98, max(0, round(q * 100) - 1))] * 1000


@dataclass
class Acked:
    """What the server acknowledged with a 2xx (and so must never lose)."""

    persons: set[str] = field(default_factory=set)  # foreigner codes
    cards: dict[str, str] = field(default_factory=dict)  # card number -> foreigner code
    provisioned: dict[str, bytes] = field(default_factory=dict)  # card -> device key
    topups: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (card, fen)
    payments: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (card, fen)
    revoked: set[str] = field(default_factory=set)  # card numbers

    @property
    def writes(self) -> int:
        return (len(self.persons) + len(self.cards) + len(self.provisioned) + len(self.topups)
                + len(self.payments) + len(self.revoked))

    @staticmethod
    def union(parts: list[Acked]) -> Acked:
        """Everything several generators (e.g. one per app node) had acknowledged."""
        whole = Acked()
        for part in parts:
            whole.persons |= part.persons
            whole.cards.update(part.cards)
            whole.provisioned.update(part.provisioned)
            whole.topups.update(part.topups)
            whole.payments.update(part.payments)
            whole.revoked |= part.revoked
        return whole


@dataclass
class LoadReport:
    seconds: float
    ops: dict[str, OpStats]
    failures: list[Failure]  # the first few hundred, in order

    @property
    def requests(self) -> int:
        return sum(stats.count for stats in self.ops.values())

    @property
    def errors(self) -> int:
        return sum(stats.failures for stats in self.ops.values())


class _Card:
    """A provisioned card as its phone holds it."""

    def __init__(self, number: str, device: Ed25519Signer, pay_credential: str) -> None:
        self.number, self.device, self.pay_credential = number, device, pay_credential
        self.last_proof = 0

    def pay_code(self) -> str:
        # One card's proof times strictly increase: no two of its pay codes are equal.
        proof_time = max(int(time.time()), self.last_proof + 1)
        self.last_proof = proof_time
        return sign_presentation(self.pay_credential, self.device, proof_time=proof_time,
                                 purpose="pay")


class LoadGenerator:
    """Worker threads on one authority; ``acked`` and the stats fill while it runs."""

    def __init__(self, base_url: str, *, admin_token: str, terminal_tokens: list[str],
                 floor_only: bool = False, revoke_every: int = 4, timeout: float = 20.0,
                 nationality: str = "NGA") -> None:
        if not terminal_tokens and not floor_only:
            raise ValueError("payments need at least one terminal token")
        self.base_url = base_url.rstrip("/")
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.terminals = [{"Authorization": f"Bearer {t}"} for t in terminal_tokens]
        self.floor_only = floor_only
        self.revoke_every = revoke_every
        self.timeout = timeout
        self.nationality = nationality
        self.acked = Acked()
        self.ops: dict[str, OpStats] = {
            op: OpStats() for op in (FLOOR_OPS if floor_only else STORY_OPS)}
        self.failures: list[Failure] = []
        self._successes: list[float] = []
        self._lock = threading.Lock()
        self._serial = iter(range(1, 10**12))
        self._run_tag = secrets.token_hex(3).upper()
        self._floor_etag: str | None = None

    # -- running ----------------------------------------------------------------------------

    def run(self, *, workers: int, seconds: float | None = None,
            stop: threading.Event | None = None) -> LoadReport:
        """Run until ``seconds`` have passed or ``stop`` is set (whichever comes first)."""
        stop = stop or threading.Event()
        threads = [threading.Thread(target=self._worker, args=(i, stop), daemon=True)
                   for i in range(workers)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        deadline = None if seconds is None else started + seconds
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stop.wait(0.05)
        stop.set()
        for thread in threads:
            thread.join(timeout=self.timeout + 10)
        return self.report(time.monotonic() - started)

    def report(self, seconds: float) -> LoadReport:
        with self._lock:
            ops = {op: OpStats(list(s.latencies_s), s.failures) for op, s in self.ops.items()}
            return LoadReport(seconds, ops, list(self.failures))

    def first_success_after(self, moment: float) -> float | None:
        """The start of the first successful request sent after ``moment`` (None: none)."""
        with self._lock:
            later = [t for t in self._successes if t > moment]
        return min(later) if later else None

    def _worker(self, index: int, stop: threading.Event) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            n = 0
            while not stop.is_set():
                n += 1
                if self.floor_only:
                    self._floor(client)
                else:
                    self._story(client, index, n)

    def _call(self, client: httpx.Client, op: str, method: str, path: str, *,
              ok: tuple[int, ...], headers: dict[str, str] | None = None,
              json: Any = None) -> httpx.Response | None:
        started = time.monotonic()
        try:
            answer = client.request(method, path, headers=headers, json=json)
        except httpx.HTTPError as error:
            self._record(op, started, Failure(op, None, None, None,
                                              f"{type(error).__name__}: {error}", started))
            return None
        if answer.status_code in ok:
            self._record(op, started, None)
            return answer
        code = None
        content_type = answer.headers.get("content-type")
        with contextlib.suppress(ValueError, AttributeError):
            code = answer.json().get("code")
        self._record(op, started, Failure(op, answer.status_code, code, content_type,
                                          answer.text[:300], started))
        return None

    def _record(self, op: str, started: float, failure: Failure | None) -> None:
        elapsed = time.monotonic() - started
        with self._lock:
            stats = self.ops[op]
            stats.latencies_s.append(elapsed)
            if failure is None:
                self._successes.append(started)
            else:
                stats.failures += 1
                if len(self.failures) < _KEPT_FAILURES:
                    self.failures.append(failure)

    # -- the mixes --------------------------------------------------------------------------

    def _floor(self, client: httpx.Client) -> None:
        self._call(client, "health", "GET", "/v1/health", ok=(200,))
        etag = self._floor_etag
        if etag is None:
            etag = self._floor_etag = client.get("/v1/trust-list").headers.get("etag", "")
        self._call(client, "trust_list_304", "GET", "/v1/trust-list", ok=(304,),
                   headers={"If-None-Match": etag})

    def _story(self, client: httpx.Client, index: int, n: int) -> None:
        serial = next(self._serial)
        passport = f"L{self._run_tag}{serial:08d}"
        birth_date = f"19{50 + serial % 50}-0{1 + serial % 9}-1{serial % 9}"
        person = self._call(client, "enrol", "POST", "/v1/persons", ok=(201,),
                            headers=self.admin, json={
                                "surname": "LOAD",
                                "given_names": "Test", "nationality": self.nationality,
                                "birth_date": birth_date,
                                "sex": "MFX"[serial % 3], "confirm_new": True,
                                "passport": {"number": passport, "country": self.nationality,
                                             "expires": "2035-01-01"}})
        if person is None:
            return
        code = person.json()["foreigner_code"]
        with self._lock:
            self.acked.persons.add(code)
        issued = self._call(client, "issue", "POST", "/v1/cards", ok=(201,), headers=self.admin,
                            json={"foreigner_code": code, "valid_until": "2034-12-31",
                                  "entitlements": ["healthcare", "education", "payment"]})
        if issued is None:
            return
        number = issued.json()["card_number"]
        with self._lock:
            self.acked.cards[number] = code
        card = self._provision(client, number, issued.json()["provisioning_code"])
        if card is not None and self._top_up(client, number):
            terminal = self.terminals[index % len(self.terminals)]
            for _ in range(2):
                self._pay(client, card, terminal)
        self._sync(client)
        if n % self.revoke_every == 0:
            revoked = self._call(client, "revoke", "POST", f"/v1/cards/{number}/revoke",
                                 ok=(200,), headers=self.admin, json={"reason": "load test"})
            if revoked is not None:
                with self._lock:
                    self.acked.revoked.add(number)

    def _provision(self, client: httpx.Client, number: str, code: str) -> _Card | None:
        device = Ed25519Signer(secrets.token_bytes(32), kid="device")
        proof = device.sign(provisioning_proof_message(code, device.public_key))
        bundle = self._call(client, "provision", "POST", "/v1/provision", ok=(200,), json={
            "provisioning_code": code, "device_key": b64url_encode(device.public_key),
            "proof": b64url_encode(proof)})
        if bundle is None:
            return None
        with self._lock:
            self.acked.provisioned[number] = device.public_key
        return _Card(number, device, bundle.json()["credentials"]["pay"])

    def _top_up(self, client: httpx.Client, number: str) -> bool:
        answer = self._call(client, "topup", "POST", f"/v1/accounts/{number}/topups", ok=(201,),
                            headers=self.admin, json={"amount_fen": _TOPUP_FEN,
                                                      "idempotency_key": secrets.token_hex(8)})
        if answer is None:
            return False
        with self._lock:
            self.acked.topups[answer.json()["topup_id"]] = (number, _TOPUP_FEN)
        return True

    def _pay(self, client: httpx.Client, card: _Card, terminal: dict[str, str]) -> None:
        answer = self._call(client, "pay", "POST", "/v1/payments", ok=(201,), headers=terminal,
                            json={"pay_code": card.pay_code(), "amount_fen": _PAY_FEN,
                                  "idempotency_key": secrets.token_hex(8)})
        if answer is not None:
            with self._lock:
                self.acked.payments[answer.json()["payment_id"]] = (card.number, _PAY_FEN)

    def _sync(self, client: httpx.Client) -> None:
        trust = self._call(client, "trust_list", "GET", "/v1/trust-list", ok=(200,))
        if trust is not None:
            self._call(client, "trust_list_etag", "GET", "/v1/trust-list", ok=(200, 304),
                       headers={"If-None-Match": trust.headers.get("etag", "")})
        index = self._call(client, "status_index", "GET", "/v1/status-lists", ok=(200,))
        if index is None or not index.json()["status_lists"]:
            return
        list_id = index.json()["status_lists"][0]["id"]
        listed = self._call(client, "status_list", "GET", f"/v1/status-lists/{list_id}",
                            ok=(200,))
        if listed is not None:
            self._call(client, "status_list_etag", "GET", f"/v1/status-lists/{list_id}",
                       ok=(200, 304), headers={"If-None-Match": listed.headers.get("etag", "")})


# --- after the run ------------------------------------------------------------------------------

_STATE_STATUS = {"active": STATUS_VALID, "suspended": STATUS_SUSPENDED,
                 "revoked": STATUS_REVOKED}


def check_invariants(database_url: str, acked: Acked, *, server: str,
                     root_fingerprint: str) -> tuple[int, list[str]]:
    """(checks made, problems found): every acknowledged write is in the database; each
    card's status entry says its state; the signed status lists served now carry exactly
    the entries' bits; the ledger sums to zero with every balance in step; the audit chain
    verifies."""
    from sqlalchemy import select

    from cardsvc.db import Database
    from cardsvc.models import Card, Person, StatusEntry
    from cardsvc.payments.ledger import check_ledger
    from cardsvc.payments.models import Payment, TopUp
    from cardsvc.services.audit import verify_chain

    problems: list[str] = []
    checks = 0
    database = Database(database_url, pool_size=2)
    try:
        with database.sessions() as session:
            codes = set(session.scalars(select(Person.foreigner_code)))
            cards = {card.card_number: card for card in session.scalars(select(Card))}
            entries = {(e.list_id, e.idx): e for e in session.scalars(select(StatusEntry))}
            payments = {p.id: p for p in session.scalars(select(Payment))}
            topups = {t.id: t for t in session.scalars(select(TopUp))}
            numbers_by_id = {card.id: number for number, card in cards.items()}
        checks += 5
        problems += [f"acknowledged person {c} missing" for c in acked.persons - codes]
        problems += [f"acknowledged card {n} missing" for n in set(acked.cards) - set(cards)]
        for number, device in acked.provisioned.items():
            checks += 1
            if number in cards and cards[number].device_key != device:
                problems.append(f"card {number}: the acknowledged phone is not bound")
        for number in acked.revoked:
            checks += 1
            if number in cards and cards[number].state != "revoked":
                problems.append(f"card {number}: acknowledged revocation lost")
        for kind, found, wanted in (("top-up", topups, acked.topups),
                                    ("payment", payments, acked.payments)):
            for key, (number, amount) in wanted.items():
                checks += 1
                row = found.get(key)
                if row is None or row.amount_fen != amount or numbers_by_id.get(
                        row.card_id) != number:
                    problems.append(f"acknowledged {kind} {key} missing or changed")
        for number, card in cards.items():
            checks += 1
            entry = entries.get((card.status_list_id or "", card.status_index or -1))
            if entry is None or entry.status != _STATE_STATUS[card.state]:
                problems.append(f"card {number} ({card.state}): status entry disagrees")
        ledger = database.transact(check_ledger, readonly=True)
        chain = database.transact(verify_chain, readonly=True)
        checks += 2
        if not ledger.ok:
            problems.append(f"ledger: {ledger}")
        if not chain.ok:
            problems.append(f"audit chain broken at {chain.broken_at}: {chain.reason}")
    finally:
        database.dispose()

    # Another process's change reaches a server's held lists within its recheck (1 s by
    # default): the served lists must agree with the entries by then, and stay agreeing.
    deadline = time.monotonic() + _SERVED_CATCH_UP_SECONDS
    while True:
        served_checks, served_problems = _served_lists_agree(server, root_fingerprint, entries)
        if not served_problems or time.monotonic() >= deadline:
            return checks + served_checks, problems + served_problems
        time.sleep(0.25)


_SERVED_CATCH_UP_SECONDS = 5.0


def _served_lists_agree(server: str, root_fingerprint: str,
                        entries: dict[tuple[str, int], Any]) -> tuple[int, list[str]]:
    from verifier import TrustedSet

    checks, problems = 0, []
    now = int(time.time())
    trusted = TrustedSet(root_fingerprint=root_fingerprint)
    with httpx.Client(base_url=server, timeout=30) as client:
        trusted.update_trust_list(client.get("/v1/trust-list").text, now=now)
        for ref in client.get("/v1/status-lists").json()["status_lists"]:
            claims = trusted.update_status_list(
                client.get(f"/v1/status-lists/{ref['id']}").text, now=now)
            listed = {index: entry.status for (list_id, index), entry in entries.items()
                      if list_id == ref["id"]}
            checks += 1
            wrong = [i for i, status in listed.items() if claims.statuses.get(i) != status]
            if wrong:
                problems.append(f"status list {ref['id']}: {len(wrong)} bits disagree with "
                                f"the entries, e.g. index {wrong[0]}")
            checks += 1
            if _nonzero(claims.statuses) != sum(1 for s in listed.values() if s):
                problems.append(f"status list {ref['id']}: bits set for no entry")
    return checks, problems


def _nonzero(statuses: StatusList) -> int:
    """How many entries of the list are not 0 (valid)."""
    per_byte = 8 // statuses.bits
    mask = (1 << statuses.bits) - 1
    table = [sum(1 for k in range(per_byte) if (byte >> (k * statuses.bits)) & mask)
             for byte in range(256)]
    return sum(table[byte] for byte in statuses.raw)


def serve(host: str, port: int, workers: int) -> None:
    """uvicorn with ``workers`` processes on :func:`authority_app`, on a socket created with
    IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets, and without it an answer
    written in two parts (headers, body) waits for the client's delayed ACK (~40 ms)."""
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    config = uvicorn.Config("bench._loadgen:authority_app", factory=True, workers=workers,
                            log_level="warning", access_log=False, backlog=1024)
    server = uvicorn.Server(config)
    if workers > 1:
        Multiprocess(config, target=server.run, sockets=[sock]).run()
    else:
        server.run(sockets=[sock])


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench._loadgen")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    serve(arguments.host, arguments.port, arguments.workers)
