"""Test kit for the fault tests: a private PostgreSQL cluster that a test may stop and
start at will (never the machine's shared one), or a primary with a synchronous standby
(both from bench/_pgcluster.py, which the benchmarks share), the authority started by its
CLI, and small waiting helpers.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from cardsvc_kit import cli
from kit.processes import CardsvcServer

from bench._loadgen import LoadGenerator, LoadReport
from bench._pgcluster import PrivatePostgres, ReplicatedPostgres
from keys import Ed25519Signer, sign_presentation
from schemas import b64url_decode, b64url_encode
from schemas.provisioning import provisioning_proof_message

__all__ = ["Authority", "LoggedServer", "Phone", "PrivatePostgres", "ReplicatedPostgres",
           "Running", "init_authority", "phone_with_money", "private_postgres",
           "register_terminals", "replicated_postgres", "wait_until"]


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.initdb()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@contextmanager
def replicated_postgres() -> Iterator[ReplicatedPostgres]:
    pair = ReplicatedPostgres()
    try:
        pair.start()
        yield pair
    finally:
        pair.remove()


class LoggedServer(CardsvcServer):
    """``cardsvc serve`` on a free port with its log in a given file."""

    def __init__(self, data_dir: Path, env: dict[str, str], log: Path) -> None:
        super().__init__(data_dir, env, log_path=log)
        self.log = log

    def logged_bugs(self) -> int:
        """How many unhandled errors (answered 500) the server logged."""
        return self.log.read_text(errors="replace").count("unhandled error")


class Authority:
    """What ``cardsvc init`` printed once."""

    def __init__(self, admin_token: str, root_fingerprint: str) -> None:
        self.admin_token = admin_token
        self.root_fingerprint = root_fingerprint

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


def init_authority(data_dir: Path, env: dict[str, str]) -> Authority:
    printed = cli(data_dir, env, "init").stdout
    token = re.search(r"admin token:\s+(\S+)", printed)
    root = re.search(r"root fingerprint:\s+(\S+)", printed)
    assert token is not None and root is not None, printed
    return Authority(token.group(1), root.group(1))


def register_terminals(url: str, authority: Authority, count: int) -> list[str]:
    with httpx.Client(base_url=url, headers=authority.admin, timeout=30) as client:
        merchant = client.post("/v1/merchants", json={"name": "Fault Market"})
        assert merchant.status_code == 201, merchant.text
        tokens = []
        for i in range(count):
            terminal = client.post(f"/v1/merchants/{merchant.json()['merchant_id']}/terminals",
                                   json={"name": f"till {i}"})
            assert terminal.status_code == 201, terminal.text
            tokens.append(terminal.json()["token"])
        return tokens


class Phone:
    """A provisioned card with money on it, as its phone holds it."""

    def __init__(self, number: str, device: Ed25519Signer, pay: str,
                 credential_kid: str) -> None:
        self.number, self.device, self.pay = number, device, pay
        self.credential_kid = credential_kid
        self.proof_time = int(time.time())

    def pay_code(self) -> str:
        self.proof_time += 1
        return sign_presentation(self.pay, self.device, proof_time=self.proof_time,
                                 purpose="pay")


def phone_with_money(node: str, authority: Authority, serial: str) -> Phone:
    """Enrol, issue, provision and top up, every step on ``node``."""
    with httpx.Client(base_url=node, headers=authority.admin, timeout=30) as client:
        person = client.post("/v1/persons", json={
            "surname": "PHONE", "given_names": "Test", "nationality": "KEN",
            "birth_date": "1990-02-03", "sex": "F", "confirm_new": True,
            "passport": {"number": f"N{serial}", "country": "KEN", "expires": "2035-01-01"}})
        assert person.status_code == 201, person.text
        issued = client.post("/v1/cards", json={
            "foreigner_code": person.json()["foreigner_code"], "valid_until": "2034-12-31",
            "entitlements": ["payment"]})
        assert issued.status_code == 201, issued.text
        number, code = issued.json()["card_number"], issued.json()["provisioning_code"]
        device = Ed25519Signer(secrets.token_bytes(32), kid="device")
        bundle = client.post("/v1/provision", headers={}, json={
            "provisioning_code": code, "device_key": b64url_encode(device.public_key),
            "proof": b64url_encode(device.sign(provisioning_proof_message(
                code, device.public_key)))})
        assert bundle.status_code == 200, bundle.text
        topup = client.post(f"/v1/accounts/{number}/topups", json={
            "amount_fen": 1000, "idempotency_key": secrets.token_hex(8)})
        assert topup.status_code == 201, topup.text
    pay = bundle.json()["credentials"]["pay"]
    kid = json.loads(b64url_decode(pay.split(".")[0]))["kid"]
    return Phone(number, device, pay, kid)


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Running:
    """A load generator running in a thread until :meth:`stop`."""

    def __init__(self, load: LoadGenerator, workers: int) -> None:
        self.load = load
        self._stop = threading.Event()
        self.report: LoadReport | None = None
        self._thread = threading.Thread(target=self._run, args=(workers,), daemon=True)
        self._thread.start()

    def _run(self, workers: int) -> None:
        self.report = self.load.run(workers=workers, stop=self._stop)

    def stop(self) -> LoadReport:
        self._stop.set()
        self._thread.join(timeout=120)
        assert self.report is not None, "the load generator did not finish"
        return self.report
