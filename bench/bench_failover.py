"""P12: time from a SIGKILLed primary to the first successful charge on the promoted standby.

A primary with a synchronous hot standby (bench/_pgcluster.py: two private clusters,
``remote_apply``), ``cardsvc serve`` on the URL that lists both hosts with
``target_session_attrs=read-write``, and a till charging a dozen cards in turn the way a
till does: a refused charge (503) is sent again with the same pay code and idempotency key
until it is answered. The primary (postmaster and every backend) is SIGKILLed and the
standby promoted at once, as a failover manager would, while a probe sends one charge
every 10 ms until it is answered 201. Rows, the median over rounds:
seconds from the kill to the first 201 beside the floor ``pg_ctl promote -w`` alone (the
same rounds); answers other than 201 and 503 DATABASE_UNAVAILABLE during the outage (must
be 0); acknowledged charges missing on the promoted standby (must be 0, with the ledger
and the audit chain checked).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench._loadgen import Acked, check_invariants
from bench._pgcluster import ReplicatedPostgres
from bench._table import BenchRow
from keys import Ed25519Signer, sign_presentation
from schemas import b64url_encode
from schemas.provisioning import provisioning_proof_message

REPO = Path(__file__).resolve().parent.parent
_FEN = 100
_CARDS = 12  # a charge every ~80 ms, each card's proofs one a second


class _Card:
    """A provisioned card; its pay proofs are at most one a second and never from the
    future (a verifier refuses those), so the till takes turns over several cards."""

    def __init__(self, number: str, device: Ed25519Signer, pay_credential: str) -> None:
        self.number, self.device, self.pay_credential = number, device, pay_credential
        self.last_proof = 0

    def pay_code(self) -> str:
        proof_time = max(int(time.time()), self.last_proof + 1)
        time.sleep(max(0.0, proof_time - time.time()))
        self.last_proof = proof_time
        return sign_presentation(self.pay_credential, self.device, proof_time=proof_time,
                                 purpose="pay")


@dataclass
class _Till:
    """Charges cards in turn from a thread; every answer is counted."""

    url: str
    terminal: str
    cards: list[_Card]
    acked: Acked = field(default_factory=Acked)
    successes: list[float] = field(default_factory=list)  # when each 201 arrived
    unclean: int = 0  # neither 201 nor 503 DATABASE_UNAVAILABLE
    refused: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.terminal}"})

    def run(self) -> None:
        with self.client() as client:
            turn = 0
            while not self.stop.is_set():
                self.charge(client, self.cards[turn % len(self.cards)])
                turn += 1

    def charge(self, client: httpx.Client, card: _Card) -> None:
        """One charge, sent again (the same pay code and idempotency key) until a 201."""
        body = {"pay_code": card.pay_code(), "amount_fen": _FEN,
                "idempotency_key": secrets.token_hex(8)}
        while not self.stop.is_set():
            try:
                answer = client.post("/v1/payments", json=body)
            except httpx.HTTPError:
                self.unclean += 1
                continue
            if answer.status_code == 201:
                self.successes.append(time.monotonic())
                self.acked.payments[answer.json()["payment_id"]] = (card.number, _FEN)
                return
            if (answer.status_code, answer.json().get("code")) == (
                    503, "DATABASE_UNAVAILABLE"):
                self.refused += 1
            else:
                self.unclean += 1
            time.sleep(0.01)


@dataclass(frozen=True)
class _Round:
    recovery_s: float
    promote_s: float
    refused: int
    unclean: int
    charges: int
    checks: int
    problems: list[str]


def _authority(pair: ReplicatedPostgres, data_dir: Path) -> tuple[dict[str, str], str, str]:
    pair.primary.create_database("cardsvc")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
    env.update(CARDSVC_DATABASE_URL=pair.database_url("cardsvc"),
               CARDSVC_DATA_DIR=str(data_dir), CARDSVC_KEY_PASSPHRASE="bench-failover-pass")
    init = subprocess.run([sys.executable, "-m", "cardsvc", "init"], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    token = re.search(r"admin token:\s+(\S+)", init.stdout)
    root = re.search(r"root fingerprint:\s+(\S+)", init.stdout)
    assert token and root, init.stdout
    return env, token.group(1), root.group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "cardsvc", "serve", "--port", str(port)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("cardsvc serve did not start")
        try:
            if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)


def _till(url: str, admin_token: str, cards: int) -> _Till:
    """A merchant's till and provisioned cards with money on them."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"},
                      timeout=30) as client:
        merchant = client.post("/v1/merchants", json={"name": "Failover Market"}).json()
        terminal = client.post(f"/v1/merchants/{merchant['merchant_id']}/terminals",
                               json={"name": "till"}).json()["token"]
        return _Till(url, terminal, [_card(client, serial) for serial in range(cards)])


def _card(client: httpx.Client, serial: int) -> _Card:
    person = client.post("/v1/persons", json={
        "surname": "FAILOVER", "given_names": "Bench", "nationality": "KEN",
        "birth_date": "1990-02-03", "sex": "F", "confirm_new": True,
        "passport": {"number": f"F{serial:07d}", "country": "KEN", "expires": "2035-01-01"}})
    issued = client.post("/v1/cards", json={
        "foreigner_code": person.json()["foreigner_code"], "valid_until": "2034-12-31",
        "entitlements": ["payment"]}).json()
    code = issued["provisioning_code"]
    device = Ed25519Signer(secrets.token_bytes(32), kid="device")
    bundle = client.post("/v1/provision", json={
        "provisioning_code": code, "device_key": b64url_encode(device.public_key),
        "proof": b64url_encode(device.sign(provisioning_proof_message(
            code, device.public_key)))}).json()
    topup = client.post(f"/v1/accounts/{issued['card_number']}/topups", json={
        "amount_fen": 10_000_000, "idempotency_key": secrets.token_hex(8)})
    assert topup.status_code == 201, topup.text
    return _Card(issued["card_number"], device, bundle["credentials"]["pay"])


def _one_round() -> _Round:
    pair = ReplicatedPostgres()
    data_dir = Path(tempfile.mkdtemp(prefix="fmc-bench-failover-"))
    process = None
    try:
        pair.start()
        env, admin_token, root_fingerprint = _authority(pair, data_dir)
        process, url = _serve(env)
        till = _till(url, admin_token, _CARDS + 1)
        # One card answers the question; the others keep the till busy (requests in flight).
        probe = _Till(url, till.terminal, [till.cards.pop()])
        thread = threading.Thread(target=till.run, daemon=True)
        thread.start()
        while len(till.successes) < _CARDS:
            time.sleep(0.01)
        with probe.client() as client:
            killed = time.monotonic()
            pair.primary.kill()
            promoted: list[float] = []
            promoter = threading.Thread(target=lambda: (pair.promote(),
                                                        promoted.append(time.monotonic())))
            promoter.start()
            probe.charge(client, probe.cards[0])  # until it is answered 201
            promoter.join(timeout=60)
        time.sleep(0.5)  # a few charges on the new primary too
        till.stop.set()
        thread.join(timeout=60)
        acked = Acked.union([till.acked, probe.acked])
        checks, problems = check_invariants(env["CARDSVC_DATABASE_URL"], acked,
                                            server=url, root_fingerprint=root_fingerprint)
        return _Round(probe.successes[0] - killed, promoted[0] - killed,
                      till.refused + probe.refused, till.unclean + probe.unclean,
                      len(acked.payments), checks, problems)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        pair.remove()
        shutil.rmtree(data_dir, ignore_errors=True)


def run(quick: bool = False) -> list[BenchRow]:
    rounds = [_one_round() for _ in range(1 if quick else 3)]
    problems = [p for r in rounds for p in r.problems]
    unclean = sum(r.unclean for r in rounds)
    rows = [
        BenchRow("failover: primary SIGKILL to first charge on the promoted standby "
                 "(median of rounds)", statistics.median(r.recovery_s for r in rounds),
                 "s", "floor: pg_ctl promote -w alone (same rounds)",
                 statistics.median(r.promote_s for r in rounds)),
        BenchRow("failover: answers other than 201 / 503 DATABASE_UNAVAILABLE (must be 0)",
                 unclean, "answers", "charge requests sent (201s and 503s)",
                 sum(r.refused + r.charges for r in rounds)),
        BenchRow("failover: acknowledged charges missing or invariants broken (must be 0)",
                 len(problems), "violations", "acknowledged charges checked",
                 sum(r.charges for r in rounds)),
    ]
    if unclean or problems:
        for problem in problems[:20]:
            print(f"  invariant: {problem}", flush=True)
        raise RuntimeError(f"failover: {unclean} unclean answers, {len(problems)} problems")
    return rows
