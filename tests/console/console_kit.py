"""Test kit for the officer console: an initialised authority with one officer per role,
an in-process app with a fixed clock, signed-in HTTP clients, portraits, and a real
``cardsvc serve`` process for the browser tests.
"""

from __future__ import annotations

import functools
import io
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kit.clock import NOW, Clock
from kit.names import in_letters
from kit.postgres import pg_create, pg_drop, pg_url, unique_name
from kit.processes import CardsvcServer, clean_env, run_cli
from PIL import Image, ImageDraw

from cardsvc.api import create_app
from cardsvc.db import Database
from cardsvc.services.audit import Actor
from cardsvc.services.bootstrap import initialise
from cardsvc.services.officers import create_officer
from cardsvc.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-output" / "console"
ROLES = ("registrar", "supervisor", "auditor", "cashier")
CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')


def add_officers(settings: Settings, now: datetime) -> dict[str, str]:
    """One officer per role (plus one holding both registrar and supervisor): their tokens."""
    database = Database.from_settings(settings)
    try:
        def work(session: Any) -> dict[str, str]:
            tokens = {}
            for role in ROLES:
                _, tokens[role] = create_officer(session, name=f"Officer {role.title()}",
                                                 roles=[role], actor=Actor.cli(), now=now)
            _, tokens["registrar+supervisor"] = create_officer(
                session, name="Officer Both", roles=["registrar", "supervisor"],
                actor=Actor.cli(), now=now)
            return tokens

        return database.transact(work)
    finally:
        database.dispose()


@dataclass
class Authority:
    """An initialised authority served in-process with a fixed clock."""

    settings: Settings
    database: Database
    clock: Clock
    tokens: dict[str, str]
    app: FastAPI = field(init=False)

    def __post_init__(self) -> None:
        self.app = create_app(self.settings, database=self.database, clock=self.clock)

    def client(self, **headers: str) -> TestClient:
        return TestClient(self.app, headers=headers, follow_redirects=False)

    def signed_in(self, role: str, **headers: str) -> TestClient:
        client = self.client(**headers)
        sign_in(client, self.tokens[role])
        return client

    def seed_persons(self, count: int) -> None:
        """Persons enrolled through the service directly (no photo): quick bulk data."""
        from datetime import date

        from cardsvc.services.persons import PassportDetails, PersonDetails, enrol_person

        def work(session: Any) -> None:
            for number in range(count):
                enrol_person(
                    session, details=PersonDetails(f"TRADER{in_letters(number)}", "Seed", "TUR",
                                                   date(1950 + number, 1, 1), "F"),
                    passport=PassportDetails(f"S{number:07d}", "TUR", date(2032, 1, 1)),
                    actor=Actor.cli(), now=self.clock.now, issuer=self.settings.issuer)

        self.database.transact(work)

    def audit_head(self) -> int:
        from cardsvc.models import AuditHead

        def read(session: Any) -> int:
            head = session.get(AuditHead, 1)
            return int(head.seq)

        return self.database.transact(read, readonly=True)


def _settings(data_dir: Path, database_url: str | None = None) -> Settings:
    return get_settings(data_dir=data_dir, status_list_size=1024, database_url=database_url,
                        public_url="http://testserver")


@dataclass(frozen=True)
class Template:
    """An initialised data dir with its officers, copied for each test (a copy is fast)."""

    data_dir: Path
    tokens: dict[str, str]

    database_url: str | None = None  # PostgreSQL; None: SQLite in the data dir

    @staticmethod
    def create(base: Path, database_url: str | None = None) -> Template:
        settings = _settings(base / "data", database_url)
        initialise(settings, now=NOW - timedelta(days=1))
        return Template(settings.data_dir, add_officers(settings, NOW - timedelta(hours=1)),
                        database_url)

    def authority(self, tmp: Path) -> Authority:
        """A copy of the SQLite template (PostgreSQL templates are used as they are)."""
        data_dir = tmp / "data"
        shutil.copytree(self.data_dir, data_dir)
        settings = _settings(data_dir, self.database_url)
        return Authority(settings, Database.from_settings(settings), Clock(), dict(self.tokens))


@contextmanager
def postgres_database(purpose: str) -> Iterator[str]:
    """A uniquely named PostgreSQL database, dropped afterwards; fails when unreachable."""
    name = unique_name(purpose)
    pg_create(name)
    try:
        yield pg_url(name)
    finally:
        pg_drop(name)


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: TestClient, token: str) -> httpx.Response:
    page = client.get("/sign-in")
    answer = client.post("/sign-in", data={"csrf": csrf_of(page.text), "token": token,
                                           "next": "/"})
    assert answer.status_code == 303, answer.text
    return answer


@functools.lru_cache(maxsize=16)
def portrait(color: tuple[int, int, int] = (90, 120, 160), *, fmt: str = "JPEG",
             size: tuple[int, int] = (300, 400)) -> bytes:
    """A plausible passport photo: a plain background, a head and shoulders."""
    image = Image.new("RGB", size, (225, 230, 236))
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.ellipse((width * 0.3, height * 0.18, width * 0.7, height * 0.58), fill=(224, 184, 150))
    draw.rectangle((width * 0.15, height * 0.66, width * 0.85, height), fill=color)
    draw.ellipse((width * 0.1, height * 0.58, width * 0.9, height * 0.9), fill=color)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def enrol_fields(**overrides: str) -> dict[str, str]:
    fields = {"surname": "MOHAMMED", "given_names": "Ahmed Ali", "nationality": "EGY",
              "birth_date": "1985-03-02", "sex": "M", "passport_number": "A1234567",
              "passport_country": "EGY", "passport_expires": "2031-05-01"}
    fields.update(overrides)
    return fields


def field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-field-error="(\w+)" data-code="(\w+)"', html))


def error_code(html: str) -> str | None:
    found = re.search(r'data-testid="error" data-status="\d+" data-code="(\w+)"', html)
    return None if found is None else found.group(1)


# --- pages driven over HTTP ----------------------------------------------------------------

CARD_RE = re.compile(r'data-testid="provisioning-code">([^<]+)<')


def enrol(client: TestClient, *, photo: bytes | None = None, expect: int = 303,
          **overrides: str) -> Any:
    page = client.get("/persons/new")
    data = {"csrf": csrf_of(page.text), **enrol_fields(**overrides)}
    files = {"portrait": ("photo.jpg", photo if photo is not None else portrait(),
                          "image/jpeg")}
    answer = client.post("/persons/new", data=data, files=files)
    assert answer.status_code == expect, answer.text
    return answer


def code_of(answer: Any) -> str:
    found = re.match(r"/persons/(\w{18})\?", answer.headers["location"])
    assert found is not None
    return found.group(1)


def issue(client: TestClient, code: str, expect: int = 200, **overrides: Any) -> Any:
    page = client.get(f"/persons/{code}/cards/new")
    data: dict[str, Any] = {"csrf": csrf_of(page.text), "entitlements":
                            ["healthcare", "education", "payment"],
                            "valid_until": "2031-01-01", "offline_limit": "200"}
    data.update(overrides)
    answer = client.post(f"/persons/{code}/cards/new", data=data)
    assert answer.status_code == expect, answer.text
    return answer


def issued_card(client: TestClient, code: str) -> tuple[str, str]:
    html = issue(client, code).text
    found = CARD_RE.search(html)
    number = re.search(r'data-card="(\d+)"', html)
    assert found is not None and number is not None
    return number.group(1), found.group(1)



# --- a real server process ----------------------------------------------------------------

def cardsvc_init(data_dir: Path) -> str:
    """``cardsvc init``; returns the admin token it prints once."""
    done = run_cli("cardsvc", "init", "--data-dir", str(data_dir), env=_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    found = re.search(r"admin token:\s+(\S+)", done.stdout)
    assert found is not None, done.stdout
    return found.group(1)


def _env() -> dict[str, str]:
    return clean_env(CARDSVC_STATUS_LIST_SIZE="1024")


@contextmanager
def served(data_dir: Path) -> Iterator[str]:
    """``cardsvc serve`` on a free port; yields its base URL and always stops it."""
    server = CardsvcServer(data_dir, _env(), data_dir.parent / "serve.log", start_timeout=30)
    try:
        yield server.start().url
    finally:
        server.stop()
