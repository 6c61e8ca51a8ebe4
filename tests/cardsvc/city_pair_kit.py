"""Two cities in one test process: Yiwu (``yw.test``, kids ``k..``) and Hangzhou
(``hz.test``, kids ``h..``), each an app over its own SQLite database and key store,
under one national root and one fixed clock. Their outgoing requests to each other go
through an httpx transport that routes by host to the other app; a city taken off the
route table is unreachable (a connection error, as when it is down).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cardsvc_kit import INIT_TIME, Authority
from fastapi.testclient import TestClient
from federation_kit import NATIONAL_FINGERPRINT, NATIONAL_ROOT
from kit.clock import Clock
from sqlalchemy import select

from cardsvc.api import create_app
from cardsvc.db import Database
from cardsvc.federation.state import accept_federation_list
from cardsvc.models import AuditEntry
from cardsvc.services.bootstrap import initialise
from cardsvc.settings import get_settings
from keys.jws import sign_federation_list
from schemas import b64url_decode
from schemas._jose import parse_json_object, split_compact
from schemas.federation import FederationClaims, IssuerEntry, IssuerState, SequenceBlock
from verifier.trust import verify_trust_list

DAY = 86_400
CITIES = {"CN-YW": ("k", "yw.test", "Yiwu", "义乌", SequenceBlock(1, 100)),
          "CN-HZ": ("h", "hz.test", "Hangzhou", "杭州", SequenceBlock(101, 200))}


@dataclass
class CityTemplate:
    code: str
    data_dir: Path
    admin_token: str
    root_fingerprint: str

    @staticmethod
    def create(code: str, base: Path) -> CityTemplate:
        data_dir = base / code
        prefix = CITIES[code][0]
        settings = get_settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir}/c.db",
                                key_passphrase="test-pass", issuer=code, kid_prefix=prefix)
        result = initialise(settings, now=INIT_TIME)
        assert result.admin_token is not None
        return CityTemplate(code, data_dir, result.admin_token, result.root_fingerprint)


class ByHost(httpx.BaseTransport):
    """Hands each request to the app serving its host; unknown host: ConnectError."""

    def __init__(self) -> None:
        self.apps: dict[str, TestClient] = {}
        self.down: set[str] = set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        client = self.apps.get(request.url.host)
        if client is None or request.url.host in self.down:
            raise httpx.ConnectError(f"{request.url.host} unreachable", request=request)
        return client._transport.handle_request(request)


@dataclass
class CityPair:
    yw: Authority
    hz: Authority
    transport: ByHost
    clock: Clock
    version: int = 0

    def city(self, code: str) -> Authority:
        return self.yw if code == "CN-YW" else self.hz

    def publish(self, **states: IssuerState) -> FederationClaims:
        """The national list naming both cities as their trust lists say now (states by
        code with '-' as '_': ``CN_HZ=IssuerState.SUSPENDED``); both accept it."""
        self.version += 1
        entries = []
        for authority in (self.yw, self.hz):
            code = authority.settings.issuer
            _, host, name_en, name_zh, block = CITIES[code]
            jwt = authority.client.get("/v1/trust-list").text
            trust = verify_trust_list(jwt, root_fingerprint=authority.root_fingerprint)
            header = parse_json_object(split_compact(jwt)[1])
            entries.append(IssuerEntry(
                code, name_en, name_zh, states.get(code.replace("-", "_"), IssuerState.ACTIVE),
                b64url_decode(header["jwk"]["x"]), trust.keys,
                f"http://{host}/v1/status-lists", f"http://{host}", (block,), trust.version,
                trust.interchange_keys))
        now = self.clock.epoch
        claims = FederationClaims("CN", self.version, now, now + 7 * DAY, tuple(entries))
        jwt = sign_federation_list(claims, NATIONAL_ROOT)
        for authority in (self.yw, self.hz):
            authority.database.transact(lambda session: accept_federation_list(
                session, unverified_jwt=jwt, pinned_root=NATIONAL_FINGERPRINT, now=now))
        return claims


def audit_of(authority: Authority, action_prefix: str = "") -> list[dict[str, Any]]:
    """The audit entries of one city (action, subject, details as stored)."""
    rows = authority.database.transact(lambda session: [
        (row.action, row.subject, row.details, row.actor) for row in session.scalars(
            select(AuditEntry).order_by(AuditEntry.seq))], readonly=True)
    return [{"action": a, "subject": s, "details": d, "actor": actor}
            for a, s, d, actor in rows if a.startswith(action_prefix)]


@contextmanager
def city_pair(templates: dict[str, CityTemplate], tmp: Path,
              **overrides: Any) -> Iterator[CityPair]:
    """Both cities, fresh copies of their templates; ``overrides`` go to both settings."""
    clock = Clock()
    transport = ByHost()
    http = httpx.Client(transport=transport, timeout=5.0)
    cities: dict[str, Authority] = {}
    with ExitStack() as stack:
        for code, template in templates.items():
            data_dir = tmp / code
            shutil.copytree(template.data_dir, data_dir)
            prefix, host = CITIES[code][0], CITIES[code][1]
            settings = get_settings(data_dir=data_dir,
                                    database_url=f"sqlite:///{data_dir}/c.db",
                                    key_passphrase="test-pass", issuer=code,
                                    kid_prefix=prefix, public_url=f"http://{host}",
                                    **overrides)
            database = Database.from_settings(settings, pool_size=5)
            stack.callback(database.dispose)
            client = stack.enter_context(TestClient(
                create_app(settings, database=database, clock=clock, http=http),
                base_url=f"http://{host}"))
            transport.apps[host] = client
            cities[code] = Authority("sqlite", settings, database, client, clock,
                                     template.admin_token, template.root_fingerprint)
        yield CityPair(cities["CN-YW"], cities["CN-HZ"], transport, clock)
    http.close()
