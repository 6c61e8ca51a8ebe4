"""Two city authorities (Yiwu CN-YW, kids k1.., and Hangzhou CN-HZ, kids h1..) on two
databases, each served by uvicorn on 127.0.0.1, both holding one federation list signed
by the national root that names both (their real issuer keys, API URLs and interchange
keys). Yiwu's leg B to Hangzhou goes over real HTTP through :class:`FaultyLink`, which
can drop the call before it is sent, or lose the answer after Hangzhou committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from federation_kit import NATIONAL_FINGERPRINT, federation, federation_jwt, hangzhou, yiwu
from interauth_kit import HANGZHOU_IK, YIWU_IK, ik
from kit.clock import Clock
from kit.net import serving
from payments_kit import INIT_TIME, PASSPHRASE, PayWorld, database_url
from sqlalchemy.orm import Session

from cardsvc.api import create_app
from cardsvc.db import Database
from cardsvc.federation import accept_federation_list
from cardsvc.federation.interauth import InterauthClient
from cardsvc.payments._paycode import authority_trust
from cardsvc.payments.forwarding import ForwardPolicy
from cardsvc.services.bootstrap import initialise, open_keyring
from cardsvc.settings import get_settings
from schemas.federation import FederationClaims, SequenceBlock
from support import DAY

YW, HZ = "CN-YW", "CN-HZ"


class FaultyLink:
    """Leg B with injected faults: ``down`` (nothing reaches Hangzhou), ``lose_answers``
    (the next N requests reach Hangzhou and are done there, but their answers are lost:
    a timeout after the issuer committed), ``garbled`` (path, status, body: requests to
    that path are done at Hangzhou, and Yiwu reads that status and body as the answer)."""

    def __init__(self, client: InterauthClient) -> None:
        self.client = client
        self.down = False
        self.lose_answers = 0
        self.garbled: tuple[str, int, bytes] | None = None
        self.sent: list[tuple[str, str | None]] = []

    def post(self, callee_code: str, path: str, json_body: dict[str, Any], *,
             idempotency_key: str | None = None, officer_id: int | None = None,
             reason: str) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("injected: Hangzhou unreachable")
        self.sent.append((path, idempotency_key))
        response = self.client.post(callee_code, path, json_body, reason=reason,
                                    idempotency_key=idempotency_key, officer_id=officer_id)
        if self.lose_answers:
            self.lose_answers -= 1
            raise httpx.ReadTimeout("injected: the answer was lost")
        if self.garbled is not None and path == self.garbled[0]:
            _, status, body = self.garbled
            return httpx.Response(status, content=body, request=response.request,
                                  headers={"content-type": "application/json"})
        return response


@dataclass
class TwoCities:
    yw: PayWorld
    hz: PayWorld
    link: FaultyLink
    claims: FederationClaims
    clock: Clock

    def ledgers_ok(self) -> None:
        for world in (self.yw, self.hz):
            check = world.ledger()
            assert check.ok, (world.settings.issuer, check)


def _entry_keys(database: Database, issuer: str, now: int) -> Any:
    return database.transact(lambda session: authority_trust(session, issuer=issuer,
                                                             now=now).keys, readonly=True)


@contextmanager
def two_cities(backend: str, directory: Path) -> Iterator[TwoCities]:
    clock = Clock()
    with ExitStack() as stack:
        worlds: dict[str, PayWorld] = {}
        apps = {}
        for code, prefix in ((YW, "k"), (HZ, "h")):
            here = directory / code
            here.mkdir(parents=True, exist_ok=True)
            url = stack.enter_context(database_url(backend, here, code.lower().replace("-", ""),
                                                   durable=False))
            init_settings = get_settings(data_dir=here / "data", database_url=url,
                                         key_passphrase=PASSPHRASE, issuer=code,
                                         kid_prefix=prefix)
            result = initialise(init_settings, now=INIT_TIME)
            assert result.admin_token is not None
            settings = get_settings(data_dir=here / "data", database_url=url,
                                    key_passphrase=PASSPHRASE, issuer=code, kid_prefix=prefix,
                                    federation_root=NATIONAL_FINGERPRINT,
                                    interchange_recovery_seconds=3600,
                                    public_url="http://testserver")
            database = Database.from_settings(settings, pool_size=8)
            stack.callback(database.dispose)
            app = create_app(settings, database=database, clock=clock)
            served = stack.enter_context(serving(app))
            http = stack.enter_context(httpx.Client(base_url=served, timeout=30))
            apps[code] = app
            worlds[code] = PayWorld(backend, settings, database, served, clock,
                                    result.admin_token, result.root_fingerprint, None, http)
        now = clock.epoch
        roots = {code: open_keyring(worlds[code].settings).root().public_key
                 for code in (YW, HZ)}
        yw_entry = replace(yiwu(), root_key=roots[YW], api_url=worlds[YW].url,
                           status_url=worlds[YW].url + "/v1/status-lists",
                           keys=_entry_keys(worlds[YW].database, YW, now),
                           interchange_keys=(ik(YIWU_IK),),
                           sequence_blocks=(SequenceBlock(1, 100),))
        hz_entry = replace(hangzhou(), root_key=roots[HZ], api_url=worlds[HZ].url,
                           status_url=worlds[HZ].url + "/v1/status-lists",
                           keys=_entry_keys(worlds[HZ].database, HZ, now),
                           interchange_keys=(ik(HANGZHOU_IK),),
                           sequence_blocks=(SequenceBlock(101, 200),))
        claims = federation(yw_entry, hz_entry, issued_at=now - DAY, expires_at=now + 30 * DAY)
        jwt = federation_jwt(claims)
        for world in worlds.values():
            world.database.transact(lambda session, w=world: accept(session, jwt, now))
        link = FaultyLink(InterauthClient(
            stack.enter_context(httpx.Client(timeout=10)), signer=YIWU_IK, federation=claims,
            caller=YW, clock=lambda: clock.epoch))
        apps[YW].state.issuer_link = link
        apps[YW].state.forward_policy = ForwardPolicy(attempts=2, backoff_seconds=0.0,
                                                      in_flight_seconds=15,
                                                      sleep=lambda _s: None)
        # Hangzhou forwards nothing in these tests; its link is the real client.
        apps[HZ].state.issuer_link = InterauthClient(
            stack.enter_context(httpx.Client(timeout=10)), signer=HANGZHOU_IK,
            federation=claims, caller=HZ, clock=lambda: clock.epoch)
        yield TwoCities(worlds[YW], worlds[HZ], link, claims, clock)


def accept(session: Session, jwt: str, now: int) -> None:
    accept_federation_list(session, unverified_jwt=jwt, pinned_root=NATIONAL_FINGERPRINT,
                           now=now)
