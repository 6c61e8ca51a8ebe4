"""Two cities and the national tool as real processes (P10, docs/FEDERATION.md).

``two_cities(base_dir)`` builds, over real HTTP and real PostgreSQL:

1. the national tool: ``cardsvc national init`` in ``base_dir/national`` (its root
   fingerprint is what verifiers pin);
2. a static file server (``python -m http.server``) over ``base_dir/publication``: the
   national publication, serving the signed list at ``/v1/federation-list``;
3. each city: its own throwaway PostgreSQL database, ``cardsvc init`` with its own data
   dir, code (``CARDSVC_ISSUER``) and kid prefix (``CARDSVC_KID_PREFIX``), then
   ``cardsvc serve`` on a free port, configured to hold the national list
   (``CARDSVC_FEDERATION_ROOT``, ``CARDSVC_FEDERATION_URL`` = the publication);
4. each city registered nationally from its **served** trust list
   (``cardsvc national add-issuer --trust-list {city}/v1/trust-list``, its root
   fingerprint as printed by its init: the out-of-band hand-over), then ``publish`` and
   ``cardsvc federation sync`` in every city.

Everything is a console script or ``cardsvc serve`` of this interpreter's environment.
It is slow (two inits, two servers): tests share one per module.

Example::

    with two_cities(tmp_path) as country:
        yiwu, hangzhou = country.city("CN-YW"), country.city("CN-HZ")
        person = hangzhou.post("/v1/persons", {...})
        country.national("suspend-issuer", "--code", "CN-HZ")
        country.publish_and_sync()
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kit.net import free_port
from kit.postgres import pg_create, pg_drop, pg_url, unique_name
from kit.processes import (
    PYTHON,
    CardsvcServer,
    clean_env,
    run_cli,
    stop_process,
    wait_until_serving,
)

__all__ = ["CITIES", "City", "CitySpec", "Country", "two_cities"]

NATIONAL_PASSPHRASE = "national passphrase of the federation harness"


@dataclass(frozen=True)
class CitySpec:
    code: str
    name_en: str
    name_zh: str
    kid_prefix: str


CITIES = (CitySpec("CN-YW", "Yiwu", "义乌", "k"), CitySpec("CN-HZ", "Hangzhou", "杭州", "h"))


def _printed(output: str, label: str) -> str:
    found = re.search(rf"^{re.escape(label)}:\s+(\S+)", output, re.M)
    assert found is not None, f"{label!r} not printed: {output}"
    return found.group(1)


@dataclass
class City:
    """One authority: its own data dir, PostgreSQL database, keys and ``cardsvc serve``."""

    spec: CitySpec
    data_dir: Path
    database: str
    env: dict[str, str]
    port: int
    root_fingerprint: str = ""
    admin_token: str = ""
    server: CardsvcServer | None = None

    @property
    def code(self) -> str:
        return self.spec.code

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``cardsvc ARGS --data-dir D`` in this city's environment."""
        run = run_cli("cardsvc", *args, "--data-dir", str(self.data_dir), env=self.env)
        assert not check or run.returncode == 0, f"{self.code}: {args}: {run.stdout}{run.stderr}"
        return run

    def init(self) -> None:
        init = self.cli("init")
        self.root_fingerprint = _printed(init.stdout, "root fingerprint")
        self.admin_token = _printed(init.stdout, "admin token")

    def start(self) -> None:
        self.server = CardsvcServer(self.data_dir, self.env,
                                    self.data_dir.parent / f"{self.code}-serve.log",
                                    port=self.port).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def kill(self) -> None:
        """SIGKILL: the process dies mid-way, as in a crash."""
        if self.server is not None:
            self.server.kill()
            self.server = None

    def request(self, method: str, path: str, *, token: str | None = None,
                **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else self.admin
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def post(self, path: str, body: dict[str, Any], expect: int = 201,
             token: str | None = None) -> dict[str, Any]:
        answer = self.request("POST", path, token=token, json=body)
        assert answer.status_code == expect, f"{self.code} {path}: {answer.text}"
        return dict(answer.json())

    def get(self, path: str, token: str | None = None, **params: str) -> dict[str, Any]:
        answer = self.request("GET", path, token=token, params=params)
        assert answer.status_code == 200, f"{self.code} {path}: {answer.text}"
        return dict(answer.json())

    def officer(self, role: str) -> str:
        """A new officer of ``role``; its token."""
        created = self.post("/v1/officers", {"name": f"{self.spec.name_en} {role}",
                                             "roles": [role]})
        return str(created["token"])


@dataclass
class Country:
    """The national tool, its publication server and the cities, all running."""

    base_dir: Path
    national_dir: Path
    publication_dir: Path
    publication_port: int
    fingerprint: str = ""
    cities: dict[str, City] = field(default_factory=dict)
    publication: subprocess.Popen[bytes] | None = None

    @property
    def publication_url(self) -> str:
        """Where verifiers (``verifier sync --server``) and cities find the list."""
        return f"http://127.0.0.1:{self.publication_port}"

    @property
    def list_url(self) -> str:
        return f"{self.publication_url}/v1/federation-list"

    def city(self, code: str) -> City:
        return self.cities[code]

    def national(self, command: str, *args: str,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        """``cardsvc national COMMAND --dir N ARGS`` with the national passphrase."""
        run = run_cli("cardsvc", "national", command, "--dir", str(self.national_dir), *args,
                      env=clean_env(FMC_NATIONAL_PASSPHRASE=NATIONAL_PASSPHRASE))
        assert not check or run.returncode == 0, f"national {command}: {run.stdout}{run.stderr}"
        return run

    def register(self, city: City) -> None:
        self.national("add-issuer", "--code", city.code, "--name-en", city.spec.name_en,
                      "--name-zh", city.spec.name_zh,
                      "--trust-list", f"{city.url}/v1/trust-list",
                      "--city-root-fingerprint", city.root_fingerprint,
                      "--status-url", f"{city.url}/v1/status-lists", "--api-url", city.url)

    def publish(self) -> None:
        """Sign the next federation list into the publication directory."""
        out = self.publication_dir / "v1" / "federation-list"
        out.parent.mkdir(parents=True, exist_ok=True)
        self.national("publish", "--out", str(out))

    def sync_cities(self) -> None:
        """Every city fetches and holds the published list (``cardsvc federation sync``)."""
        for city in self.cities.values():
            city.cli("federation", "sync")

    def publish_and_sync(self) -> None:
        self.publish()
        self.sync_cities()

    def verifier(self, cache: Path, *args: str,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli("verifier", "--cache", str(cache), *args,
                       env=env if env is not None else clean_env())

    def sync_verifier(self, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        """``verifier sync --root <national fingerprint> --server <publication>``."""
        return self.verifier(cache, "sync", "--root", self.fingerprint,
                             "--server", self.publication_url, *extra)

    def start_publication(self) -> None:
        self.publication_dir.mkdir(parents=True, exist_ok=True)
        log = (self.base_dir / "publication.log").open("ab")
        self.publication = subprocess.Popen(
            [str(PYTHON), "-m", "http.server", str(self.publication_port), "--bind",
             "127.0.0.1", "--directory", str(self.publication_dir)],
            env=clean_env(), stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        wait_until_serving(self.publication_url + "/", self.publication)

    def stop_publication(self) -> None:
        if self.publication is not None:
            stop_process(self.publication)
            self.publication = None


@contextmanager
def two_cities(base_dir: Path, specs: tuple[CitySpec, ...] = CITIES,
               passphrase: str = "city key passphrase") -> Iterator[Country]:
    """The national tool and every city in ``specs`` (default Yiwu and Hangzhou), each
    registered, the list published and held by every city; stopped and dropped after."""
    country = Country(base_dir, base_dir / "national", base_dir / "publication", free_port())
    with ExitStack() as cleanup:
        init = country.national("init")
        country.fingerprint = _printed(init.stdout, "national root fingerprint")
        country.start_publication()
        cleanup.callback(country.stop_publication)
        for spec in specs:
            database = unique_name(spec.code.lower().replace("-", "_"))
            pg_create(database)
            cleanup.callback(pg_drop, database)
            port = free_port()
            env = clean_env(
                CARDSVC_KEY_PASSPHRASE=passphrase, CARDSVC_ISSUER=spec.code,
                CARDSVC_KID_PREFIX=spec.kid_prefix, CARDSVC_DATABASE_URL=pg_url(database),
                CARDSVC_PUBLIC_URL=f"http://127.0.0.1:{port}",
                CARDSVC_FEDERATION_ROOT=country.fingerprint,
                CARDSVC_FEDERATION_URL=country.list_url)
            city = City(spec, base_dir / spec.code, database, env, port)
            city.init()
            city.start()
            cleanup.callback(city.stop)
            country.cities[spec.code] = city
        for city in country.cities.values():
            country.register(city)
        country.publish_and_sync()
        yield country
