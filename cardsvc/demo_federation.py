"""``python -m cardsvc.demo_federation``: two cities, one national root (``make run-federation``).

Sets up, in ``--data-dir`` (default ``.data-federation``):

- ``national/``: the national root (``cardsvc national``'s registry; its passphrase from
  ``FMC_NATIONAL_PASSPHRASE``, else a random one written to ``national-passphrase``,
  development only);
- ``CN-YW/`` and ``CN-HZ/``: Yiwu (kids ``k1``...) and Hangzhou (kids ``h1``...), each its
  own SQLite database and keys, registered nationally (their blocks of foreigner-code
  sequence numbers: Yiwu 1-100, Hangzhou 101-200), holding the published list, seeded
  with demo people, officers and a shop (``cardsvc.demo.seed``);
- ``publication/v1/federation-list``: the signed national list, served over HTTP.

Then it serves Yiwu on ``--port``, Hangzhou on ``--port + 1`` (each ``cardsvc serve`` in
its own process, refreshing the national list every 30 s) and the national publication
on ``--port + 2``; prints the URLs, the national fingerprint, the tokens and codes, and
the next steps. Ctrl-C stops all three. A second run keeps the data and publishes the
next list version.

Example::

    python -m cardsvc.demo_federation --data-dir .data-federation --port 8100
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cardsvc.db import Database
from cardsvc.demo import Foreigner, Seeded, seed
from cardsvc.federation.state import accept_federation_list
from cardsvc.national.registry import (
    NationalError,
    add_issuer,
    init_registry,
    load_registry,
    publish,
    update_issuer,
)
from cardsvc.roles import Role
from cardsvc.services.bootstrap import initialise, open_keyring
from cardsvc.services.trust import signed_trust_list
from cardsvc.settings import Settings, get_settings

__all__ = ["CITIES", "DemoCity", "main"]

_REFRESH_SECONDS = 30


@dataclass(frozen=True)
class DemoCity:
    code: str
    name_en: str
    name_zh: str
    kid_prefix: str
    foreigners: tuple[Foreigner, ...]


_ALL = ("healthcare", "education", "social_insurance", "public_transport",
        "government_services", "payment")
CITIES = (
    DemoCity("CN-YW", "Yiwu", "义乌", "k", (
        Foreigner("OKONKWO", "Chiamaka Adaeze", "NGA", date(1988, 11, 23), "F", "A07654321",
                  _ALL, (176, 120, 90)),
        Foreigner("IVANOVA", "Olga Sergeyevna", "RUS", date(1992, 2, 14), "F", "753318204",
                  ("healthcare", "public_transport", "payment"), (225, 190, 170)),
    )),
    DemoCity("CN-HZ", "Hangzhou", "杭州", "h", (
        Foreigner("MENSAH", "Akosua", "GHA", date(1990, 7, 21), "F", "G1234567",
                  ("healthcare", "public_transport", "payment"), (150, 105, 75)),
        Foreigner("SANTOS", "Maria Fernanda", "BRA", date(1990, 12, 5), "F", "FX662013",
                  ("healthcare", "education", "payment"), (210, 170, 140)),
    )),
)


def _national_passphrase(data_dir: Path) -> bytes:
    given = os.environ.get("FMC_NATIONAL_PASSPHRASE")
    if given:
        return given.encode()
    stored = data_dir / "national-passphrase"
    if not stored.exists():
        stored.write_text(secrets.token_urlsafe(24))
        stored.chmod(0o600)
    return stored.read_text().strip().encode()


def _settings(data_dir: Path, city: DemoCity, *, host: str, port: int, root: str,
              list_url: str) -> Settings:
    city_dir = data_dir / city.code
    return get_settings(data_dir=city_dir, issuer=city.code, kid_prefix=city.kid_prefix,
                        database_url=f"sqlite:///{(city_dir / 'cardsvc.db').resolve()}",
                        public_url=f"http://{host}:{port}", federation_root=root,
                        federation_url=list_url,
                        federation_refresh_seconds=_REFRESH_SECONDS)


def _environment(settings: Settings) -> dict[str, str]:
    """What ``cardsvc serve`` of this city reads: this environment without any project
    setting, plus the city's own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CARDSVC_", "FMC_", "VERIFIER_"))}
    env.update({
        "CARDSVC_DATA_DIR": str(settings.data_dir.resolve()),
        "CARDSVC_DATABASE_URL": settings.database_url_or_default(),
        "CARDSVC_ISSUER": settings.issuer, "CARDSVC_KID_PREFIX": settings.kid_prefix,
        "CARDSVC_PUBLIC_URL": settings.public_url,
        "CARDSVC_FEDERATION_ROOT": settings.federation_root or "",
        "CARDSVC_FEDERATION_URL": settings.federation_url or "",
        "CARDSVC_FEDERATION_REFRESH_SECONDS": str(settings.federation_refresh_seconds),
        "CARDSVC_LOG_FORMAT": "text",  # a person reads the demo's terminal
    })
    if settings.key_passphrase is not None:
        env["CARDSVC_KEY_PASSPHRASE"] = settings.key_passphrase.get_secret_value()
    return env


@dataclass
class _Prepared:
    settings: Settings
    city: DemoCity
    root_fingerprint: str
    admin_token: str | None
    seeded: Seeded | None = None


def _prepare_city(settings: Settings, city: DemoCity, now: datetime) -> _Prepared:
    from cardsvc.cli import prepare_to_serve

    result = initialise(settings, now=now)
    fingerprint = prepare_to_serve(settings)
    return _Prepared(settings, city, fingerprint, result.admin_token)


def _trust_list(settings: Settings, now: datetime) -> str:
    database = Database.from_settings(settings)
    try:
        return database.transact(lambda session: signed_trust_list(
            session, keyring=open_keyring(settings), issuer=settings.issuer, now=now,
            lifetime_seconds=settings.trust_list_lifetime_days * 86_400)).jwt
    finally:
        database.dispose()


def _register(national: Path, prepared: _Prepared, now: datetime) -> None:
    settings, city = prepared.settings, prepared.city
    jwt = _trust_list(settings, now)
    epoch = int(now.timestamp())
    source = f"{settings.public_base}/v1/trust-list"
    if any(r.entry.code == city.code for r in load_registry(national).issuers):
        update_issuer(national, code=city.code, trust_list_jwt=jwt, now=epoch)
        return
    add_issuer(national, code=city.code, name_en=city.name_en, name_zh=city.name_zh,
               trust_list_jwt=jwt, trust_list_source=source,
               city_root_fingerprint=prepared.root_fingerprint,
               status_url=f"{settings.public_base}/v1/status-lists",
               api_url=settings.public_base, now=epoch)


def _hold_and_seed(prepared: _Prepared, jwt: str, root: str, now: datetime) -> None:
    settings = prepared.settings
    database = Database.from_settings(settings)
    try:
        database.transact(lambda session: accept_federation_list(
            session, unverified_jwt=jwt, pinned_root=root, now=int(now.timestamp())))
        prepared.seeded = database.transact(lambda session: seed(
            session, settings=settings, now=now, foreigners=prepared.city.foreigners))
    finally:
        database.dispose()


def _serve_publication(directory: Path, host: str, port: int) -> ThreadingHTTPServer:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), functools.partial(Quiet,
                                                                 directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _print(prepared: list[_Prepared], *, fingerprint: str, publication: str,
           data_dir: Path, national_passphrase_file: Path) -> None:
    line = "-" * 78
    yw, hz = prepared
    print(line)
    print(f"Two cities under one national root (demo, SQLite in {data_dir.resolve()})")
    print(f"  national publication  {publication}/v1/federation-list")
    print(f"  national root fingerprint (pin it in verifiers): {fingerprint}")
    for city in prepared:
        print(f"\n  {city.city.name_en} {city.city.name_zh} ({city.city.code})  "
              f"{city.settings.public_base}   console {city.settings.public_base}/")
        if city.admin_token:
            print(f"    admin token (every role; shown once): {city.admin_token}")
        if city.seeded is None:
            print("    demo data was seeded on an earlier run; its tokens were shown then.")
            continue
        for role in (Role.registrar, Role.supervisor, Role.cashier):
            print(f"    {role:<11} {city.seeded.tokens[role]}")
        print(f"    terminal    {city.seeded.terminal_token}  ({city.seeded.shop})")
        for card in city.seeded.cards:
            print(f"    {card.name:<28} {card.foreigner_code}  card {card.card_number}"
                  f"  code {card.provisioning_code}")
    hz_code = (hz.seeded.cards[0].provisioning_code if hz.seeded else "<HANGZHOU_CODE>")
    yw_till = yw.seeded.terminal_token if yw.seeded else "<YIWU_TERMINAL_TOKEN>"
    yw_url, hz_url = yw.settings.public_base, hz.settings.public_base
    national = data_dir / "national"
    counter, phone = "verifier --cache /tmp/fmc-yw", "wallet-sim --wallet /tmp/fmc-hz.wallet"
    till = f"FMC_TERMINAL_TOKEN={yw_till} {counter} terminal"
    check = f"{counter} check --as hospital --image /tmp/fmc-hz.png"
    out = data_dir / "publication" / "v1" / "federation-list"
    print(f"""
Next, in another terminal (.venv/bin on the PATH):
  # a Yiwu counter pins the national root (Yiwu serves the national list it holds too)
  {counter} sync --root {fingerprint} --server {publication} --mirror {yw_url}
  # a Hangzhou card in a phone, checked at the Yiwu counter: ACCEPTED, issued by Hangzhou
  export FMC_WALLET_PIN=482913   # the phone's PIN (any six digits)
  {phone} provision --server {hz_url} --code {hz_code}
  {phone} show --purpose svc --png /tmp/fmc-hz.png
  {check}
  # a Yiwu shop charges the Hangzhou card (Yiwu forwards it to Hangzhou)
  {till} setup --server {yw_url}
  {phone} show --purpose pay --png /tmp/fmc-pay.png
  {till} charge --image /tmp/fmc-pay.png --amount 1250
  # cut Hangzhou off nationally; the counter's next sync refuses its cards (ISSUER_SUSPENDED)
  export FMC_NATIONAL_PASSPHRASE=$(cat {national_passphrase_file})
  cardsvc national suspend-issuer --dir {national} --code CN-HZ
  cardsvc national publish --dir {national} --out {out}
  {counter} sync && {phone} show --purpose svc --png /tmp/fmc-hz.png && {check}
  cardsvc national reinstate-issuer --dir {national} --code CN-HZ   # and publish again
  # moving a person between cities: docs/FEDERATION.md, "Between authorities\".""")
    print(line, flush=True)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cardsvc.demo_federation",
                                     description="two cities and the national root (SQLite)")
    parser.add_argument("--data-dir", type=Path, default=Path(".data-federation"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100,
                        help="Yiwu; Hangzhou is one above, the publication two above")
    args = parser.parse_args(argv)
    data_dir: Path = args.data_dir
    host: str = args.host
    data_dir.mkdir(parents=True, exist_ok=True)
    national = data_dir / "national"
    passphrase = _national_passphrase(data_dir)
    try:
        fingerprint, _ = init_registry(national, passphrase=passphrase, name="CN")
    except NationalError as error:
        sys.exit(f"error: {error.code}: {error.detail}")
    publication = f"http://{host}:{args.port + 2}"
    list_file = data_dir / "publication" / "v1" / "federation-list"
    list_file.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    prepared = [
        _prepare_city(_settings(data_dir, city, host=host, port=args.port + index,
                                root=fingerprint, list_url=f"{publication}/v1/federation-list"),
                      city, now)
        for index, city in enumerate(CITIES)]
    try:
        for city in prepared:
            _register(national, city, now)
        _, jwt = publish(national, passphrase=passphrase, now=int(now.timestamp()))
    except NationalError as error:
        sys.exit(f"error: {error.code}: {error.detail}")
    list_file.write_text(jwt + "\n")
    for city in prepared:
        _hold_and_seed(city, jwt, fingerprint, now)

    # SIGTERM (a supervisor, a test, `kill`) ends the demo like Ctrl-C: the cities' servers
    # are stopped in `finally` (the default action would leave them running, orphaned).
    signal.signal(signal.SIGTERM, _interrupt)
    server = _serve_publication(data_dir / "publication", host, args.port + 2)
    processes = [subprocess.Popen(  # noqa: S603 (this interpreter, our own arguments)
        [sys.executable, "-m", "cardsvc", "serve", "--data-dir", str(city.settings.data_dir),
         "--host", host, "--port", str(args.port + index)], env=_environment(city.settings))
        for index, city in enumerate(prepared)]
    try:
        _print(prepared, fingerprint=fingerprint, publication=publication, data_dir=data_dir,
               national_passphrase_file=data_dir / "national-passphrase")
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        sys.exit("a city's cardsvc serve exited; stopping the demo")
    except KeyboardInterrupt:
        pass
    finally:
        _stop(processes)
        server.shutdown()


if __name__ == "__main__":
    main()
