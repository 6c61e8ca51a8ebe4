"""Two city authorities as real processes (``cardsvc serve``), each on its own new
PostgreSQL database, with interchange keys and one national federation list naming both
(wall clock). Used by the process tests and by bench/bench_interchange.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from federation_kit import NATIONAL_FINGERPRINT, federation, federation_jwt, hangzhou, yiwu
from kit.clock import RealClock
from kit.postgres import pg_create, pg_drop, pg_url, unique_name
from kit.processes import CardsvcServer
from payments_kit import PASSPHRASE, PayWorld

from cardsvc.db import Database
from cardsvc.federation import accept_federation_list
from cardsvc.models import InterchangeKeyRecord
from cardsvc.payments._paycode import authority_trust
from cardsvc.services.bootstrap import initialise, open_keyring
from cardsvc.settings import get_settings
from schemas import IssuerKey, KeyState
from schemas.federation import SequenceBlock

YW, HZ = "CN-YW", "CN-HZ"
DAY = 86_400


@dataclass
class City:
    code: str
    db_name: str
    env: dict[str, str]
    data_dir: Path
    server: CardsvcServer
    world: PayWorld

    def restart(self) -> None:
        self.server = CardsvcServer(self.data_dir, self.env, port=self.server.port).start()


def _start(tmp: Path, code: str, prefix: str) -> tuple[City, bytes, IssuerKey]:
    name = unique_name(f"ic_{prefix}")
    pg_create(name)
    url = pg_url(name)
    data_dir = tmp / code / "data"
    settings = get_settings(data_dir=data_dir, database_url=url, key_passphrase=PASSPHRASE,
                            issuer=code, kid_prefix=prefix)
    started = datetime.now(UTC) - timedelta(minutes=1)
    result = initialise(settings, now=started)
    assert result.admin_token is not None
    keyring = open_keyring(settings)
    link_key = keyring.generate(f"{prefix}i1")
    database = Database(url, pool_size=2)
    database.transact(lambda session: session.add(InterchangeKeyRecord(
        kid=link_key.kid, seq=1, public_key=link_key.public_key, state="active",
        valid_from=int(started.timestamp()), valid_until=None, created_at=started)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
    env.update(CARDSVC_DATABASE_URL=url, CARDSVC_KEY_PASSPHRASE=PASSPHRASE,
               CARDSVC_ISSUER=code, CARDSVC_KID_PREFIX=prefix,
               CARDSVC_FEDERATION_ROOT=NATIONAL_FINGERPRINT,
               CARDSVC_INTERCHANGE_TIMEOUT_SECONDS="2", CARDSVC_INTERCHANGE_ATTEMPTS="2",
               CARDSVC_INTERCHANGE_RECOVERY_SECONDS="1")
    server = CardsvcServer(data_dir, env).start()
    http = httpx.Client(base_url=server.url, timeout=30)
    world = PayWorld("postgresql", settings, database, server.url, RealClock(),
                     result.admin_token, result.root_fingerprint, None, http)
    ik = IssuerKey(link_key.kid, link_key.public_key, KeyState.ACTIVE,
                   int(started.timestamp()))
    return City(code, name, env, data_dir, server, world), keyring.root().public_key, ik


@contextmanager
def two_city_processes(tmp_path: Path) -> Iterator[tuple[City, City]]:
    """Yiwu and Hangzhou as two ``cardsvc serve`` processes on two new PostgreSQL
    databases, both holding one national list naming both; dropped at the end. Both
    ledgers are checked when the block ends without an error."""
    started: list[City] = []
    try:
        yw, yw_root, yw_ik = _start(tmp_path, YW, "k")
        started.append(yw)
        hz, hz_root, hz_ik = _start(tmp_path, HZ, "h")
        started.append(hz)
        now = int(time.time())

        def keys(city: City) -> tuple[IssuerKey, ...]:
            return city.world.database.transact(lambda session: authority_trust(
                session, issuer=city.code, now=now).keys, readonly=True)

        claims = federation(
            replace(yiwu(), root_key=yw_root, keys=keys(yw), interchange_keys=(yw_ik,),
                    api_url=yw.server.url, status_url=yw.server.url + "/v1/status-lists",
                    sequence_blocks=(SequenceBlock(1, 100),)),
            replace(hangzhou(), root_key=hz_root, keys=keys(hz), interchange_keys=(hz_ik,),
                    api_url=hz.server.url, status_url=hz.server.url + "/v1/status-lists",
                    sequence_blocks=(SequenceBlock(101, 200),)),
            issued_at=now - 60, expires_at=now + DAY)
        jwt = federation_jwt(claims)
        for city in (yw, hz):
            city.world.database.transact(lambda session: accept_federation_list(
                session, unverified_jwt=jwt, pinned_root=NATIONAL_FINGERPRINT, now=now))
        yield yw, hz
        for city in (yw, hz):
            check = city.world.ledger()
            assert check.ok, (city.code, check)
    finally:
        for city in started:
            city.server.stop()
            city.world.http.close()
            city.world.database.dispose()
            pg_drop(city.db_name)


