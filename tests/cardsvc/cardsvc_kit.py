"""Test kit for the authority: a fixed clock, throwaway databases (SQLite or PostgreSQL),
an in-process app with helpers that play registrar and wallet, and a real server process.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from kit.clock import NOW, Clock
from kit.names import in_letters
from kit.postgres import conninfo, pg_create, pg_drop, pg_url, unique_name
from kit.processes import PYTHON
from PIL import Image

from cardsvc.api import create_app
from cardsvc.db import Database
from cardsvc.services.bootstrap import initialise
from cardsvc.settings import Settings, get_settings
from keys import Ed25519Signer
from schemas import b64url_encode
from schemas.provisioning import provisioning_proof_message
from verifier import POLICIES, MemoryReplayCache, TrustedSet, VerificationResult, VerifierState
from verifier import verify_presentation as _verify

REPO = Path(__file__).resolve().parents[2]
INIT_TIME = NOW - timedelta(days=1)
BACKENDS = ("sqlite", "postgresql")


# --- databases ---------------------------------------------------------------------------

def migrated_schema_diffs(url: str) -> list[Any]:
    """Migrate the database at ``url`` to head; Alembic's differences from the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    from cardsvc.migrations import upgrade_to_head
    from cardsvc.models import Base

    upgrade_to_head(url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))
    finally:
        engine.dispose()


@dataclass
class _Snapshot:
    """Every row of a PostgreSQL database, to put it back between tests (much faster
    than CREATE DATABASE ... TEMPLATE for each test)."""

    tables: list[tuple[str, list[str], list[tuple[Any, ...]]]]
    serials: list[tuple[str, str, str]]  # (table, column, sequence)

    @staticmethod
    def take(name: str) -> _Snapshot:
        with psycopg.connect(conninfo(name)) as conn:
            names = [row[0] for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                " AND table_type = 'BASE TABLE' AND table_name <> 'alembic_version'")]
            tables = []
            for table in names:
                cursor = conn.execute(f'SELECT * FROM "{table}"')
                columns = [column.name for column in cursor.description or ()]
                tables.append((table, columns, list(cursor.fetchall())))
            serials = [(t, c, str(seq)) for t, c, seq in conn.execute(
                "SELECT table_name, column_name, pg_get_serial_sequence("
                "quote_ident(table_name), column_name) FROM information_schema.columns "
                "WHERE table_schema = 'public' AND (column_default LIKE 'nextval%%' "
                "OR is_identity = 'YES')") if seq is not None]
        return _Snapshot(tables, serials)

    def restore(self, name: str) -> None:
        with psycopg.connect(conninfo(name)) as conn:
            conn.execute("SET session_replication_role = replica")  # no FK order needed
            for table, _, _ in self.tables:  # DELETE beats TRUNCATE on tiny tables
                conn.execute(f'DELETE FROM "{table}"')
            with conn.cursor() as cursor:
                for table, columns, rows in self.tables:
                    if rows:
                        names = ", ".join(f'"{c}"' for c in columns)
                        marks = ", ".join(["%s"] * len(columns))
                        cursor.executemany(
                            f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)
            for table, column, sequence in self.serials:
                conn.execute(f"SELECT setval('{sequence}', "
                             f'COALESCE((SELECT MAX("{column}") FROM "{table}"), 0) + 1, false)')


@dataclass
class Template:
    """An initialised authority (database + keys), handed fresh to each test."""

    backend: str
    data_dir: Path
    admin_token: str
    root_fingerprint: str
    pg_name: str | None = None
    snapshot: _Snapshot | None = None

    @staticmethod
    def create(backend: str, base: Path) -> Template:
        data_dir = base / f"template-{backend}"
        pg_name = None
        url = f"sqlite:///{data_dir / 'cardsvc.db'}"
        if backend == "postgresql":
            pg_name = unique_name("cardsvc_test")
            pg_create(pg_name)
            url = pg_url(pg_name)
        settings = get_settings(data_dir=data_dir, database_url=url, key_passphrase="test-pass")
        result = initialise(settings, now=INIT_TIME)
        assert result.admin_token is not None
        snapshot = None if pg_name is None else _Snapshot.take(pg_name)
        return Template(backend, data_dir, result.admin_token, result.root_fingerprint,
                        pg_name, snapshot)

    def copy(self, target: Path) -> tuple[Path, str]:
        """A fresh copy: (data dir, database URL). On PostgreSQL the session's database
        is put back to the state right after init."""
        data_dir = target / "data"
        shutil.copytree(self.data_dir, data_dir)
        if self.pg_name is None:
            return data_dir, f"sqlite:///{data_dir / 'cardsvc.db'}"
        assert self.snapshot is not None
        self.snapshot.restore(self.pg_name)
        return data_dir, pg_url(self.pg_name)

    def drop(self) -> None:
        if self.pg_name is not None:
            pg_drop(self.pg_name)


# --- the wallet side ------------------------------------------------------------------------

def device_key(seed: int) -> Ed25519Signer:
    return Ed25519Signer(bytes((seed + i) % 256 for i in range(32)), kid="device")


def provision_request(code: str, device: Ed25519Signer) -> dict[str, str]:
    proof = device.sign(provisioning_proof_message(code, device.public_key))
    return {"provisioning_code": code, "device_key": b64url_encode(device.public_key),
            "proof": b64url_encode(proof)}


def portrait_bytes(fmt: str = "PNG", size: tuple[int, int] = (60, 80)) -> bytes:
    image = Image.new("RGB", size, (200, 150, 120))
    for x in range(size[0]):
        image.putpixel((x, x % size[1]), (10, 20, 30))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def verify(
    state: VerifierState, credential_jws: str, device: Ed25519Signer, *, purpose: str,
    service: str, now: int,
) -> VerificationResult:
    from keys import sign_presentation

    text = sign_presentation(credential_jws, device, proof_time=now, purpose=purpose)
    return _verify(text, state=state, policy=POLICIES[service], now=now,
                   replay_cache=MemoryReplayCache())


# --- the in-process authority -----------------------------------------------------------------

_person_counter = iter(range(1, 10**9))


@dataclass
class Authority:
    """An app over a throwaway database, with a fixed clock and an admin token."""

    backend: str
    settings: Settings
    database: Database
    client: TestClient
    clock: Clock
    admin_token: str
    root_fingerprint: str
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def as_role(self, role: str) -> dict[str, str]:
        """Headers of an officer holding only ``role`` (made once per test)."""
        if role not in self.tokens:
            answer = self.client.post("/v1/officers", headers=self.admin,
                                      json={"name": f"{role} officer", "roles": [role]})
            assert answer.status_code == 201, answer.text
            self.tokens[role] = answer.json()["token"]
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def enrol(self, expect: int = 201, **overrides: Any) -> dict[str, Any]:
        n = next(_person_counter)
        body: dict[str, Any] = {
            "surname": f"TESTER{in_letters(n)}", "given_names": "Alex", "nationality": "NGA",
            "birth_date": "1985-03-02", "sex": "M",
            "passport": {"number": f"P{n:07d}", "country": "NGA", "expires": "2031-01-01"},
            "confirm_new": True,
        }
        body.update(overrides)
        answer = self.client.post("/v1/persons", json=body, headers=self.admin)
        assert answer.status_code == expect, answer.text
        return dict(answer.json())

    def issue(self, foreigner_code: str, expect: int = 201, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "foreigner_code": foreigner_code,
            "entitlements": ["healthcare", "education", "social_insurance", "payment"],
            "valid_until": "2030-12-31",
        }
        body.update(overrides)
        answer = self.client.post("/v1/cards", json=body, headers=self.admin)
        assert answer.status_code == expect, answer.text
        return dict(answer.json())

    def provision(self, code: str, device: Ed25519Signer, expect: int = 200) -> dict[str, Any]:
        answer = self.client.post("/v1/provision", json=provision_request(code, device))
        assert answer.status_code == expect, answer.text
        return dict(answer.json())

    def card_with_phone(self, device: Ed25519Signer, **enrol: Any) -> dict[str, Any]:
        person = self.enrol(**enrol)
        issued = self.issue(person["foreigner_code"])
        return self.provision(issued["provisioning_code"], device)

    def state(self) -> VerifierState:
        """A verifier synced now from this authority's public routes."""
        now = self.clock.epoch
        trusted = TrustedSet(root_fingerprint=self.root_fingerprint)
        trusted.update_trust_list(self.client.get("/v1/trust-list").text, now=now)
        for entry in self.client.get("/v1/status-lists").json()["status_lists"]:
            trusted.update_status_list(
                self.client.get(f"/v1/status-lists/{entry['id']}").text, now=now)
        timestamp = self.client.get("/v1/timestamp")  # P8.5: the check then holds it too
        if timestamp.status_code == 200:
            trusted.update_timestamp(timestamp.text, now=now)
        return trusted.snapshot()

    def check(self, bundle: dict[str, Any], device: Ed25519Signer, purpose: str = "id",
              service: str = "counter", state: VerifierState | None = None) -> str:
        result = verify(state or self.state(), bundle["credentials"][purpose], device,
                        purpose=purpose, service=service, now=self.clock.epoch)
        return result.code.value

    def revoke(self, card_number: str, action: str = "revoke", expect: int = 200) -> None:
        answer = self.client.post(f"/v1/cards/{card_number}/{action}", headers=self.admin,
                                  json={"reason": "test"})
        assert answer.status_code == expect, answer.text


@contextmanager
def authority_from(template: Template, tmp: Path) -> Iterator[Authority]:
    data_dir, url = template.copy(tmp)
    settings = get_settings(data_dir=data_dir, database_url=url, key_passphrase="test-pass",
                            public_url="http://testserver")
    database = Database.from_settings(settings, pool_size=5)
    clock = Clock()
    try:
        with TestClient(create_app(settings, database=database, clock=clock)) as client:
            yield Authority(template.backend, settings, database, client, clock,
                            template.admin_token, template.root_fingerprint)
    finally:
        database.dispose()


# --- a real server process ----------------------------------------------------------------------

def cli(data_dir: Path, env: dict[str, str], *args: str,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(PYTHON), "-m", "cardsvc", *args, "--data-dir", str(data_dir)],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"cardsvc {args} failed: {done.stderr}")
    return done


def server_env(database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
    env["CARDSVC_KEY_PASSPHRASE"] = "e2e-pass"
    if database_url:
        env["CARDSVC_DATABASE_URL"] = database_url
    return env


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
