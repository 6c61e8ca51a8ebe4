"""The federation story with real processes (P10, docs/FEDERATION.md).

The national tool, its publication (a static file server) and two city authorities,
Yiwu (CN-YW, kids ``k``) and Hangzhou (CN-HZ, kids ``h``), each ``cardsvc serve`` on its
own PostgreSQL database, registered nationally from their served trust lists and holding
the published list (``tests/kit/federation.py``). Then, over real HTTP:

- a Hangzhou card is accepted by a Yiwu counter (``verifier sync --root <national
  fingerprint>`` from Yiwu's own ``/v1/federation-list``, then ``verifier check``
  offline), with the issuing city shown;
- both cities enrol people of one nationality and birth date: the codes differ, each
  sequence lies in its own city's block;
- a Yiwu registrar finds a Hangzhou person (lookup between authorities);
- a person moves from Yiwu to Hangzhou and keeps the code; the Yiwu card ends
  ``transferred``;
- a Yiwu terminal charges a Hangzhou card and gets Hangzhou's receipt;
- Yiwu is down: the counter syncs the federation list from the mirror (the national
  publication) and Hangzhou's lists from Hangzhou;
- a Yiwu counter pinned to the national root syncs every city's sealed portrait bundle
  (``verifier sync-portraits``: per city, from its api_url, checked with its keys) and
  opens the portrait of a Hangzhou code and of a Yiwu code offline;
- the national tool cuts Hangzhou off (suspended, then a compromised key): after the next
  sync the Yiwu counter refuses Hangzhou cards with ISSUER_SUSPENDED / KEY_COMPROMISED,
  and Yiwu cards are still accepted.

Each test makes its own people and cards, so the tests do not depend on one another's
order; the cut-off test restores the country (reinstates Hangzhou) when done.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kit.federation import City, Country, two_cities
from kit.processes import clean_env, run_cli
from PIL import Image

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PIN = "482913"


@pytest.fixture(scope="module")
def country(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Country]:
    with two_cities(tmp_path_factory.mktemp("federation")) as country:
        yield country


@dataclass
class Phone:
    """wallet-sim holding one card; one pay code per second at most."""

    wallet: Path
    last_shown: float = 0.0

    def show(self, purpose: str) -> str:
        time.sleep(max(0.0, self.last_shown + 1.05 - time.monotonic()))
        shown = run_cli("wallet-sim", "--wallet", str(self.wallet), "show", "--purpose",
                        purpose, "--text", env=clean_env(FMC_WALLET_PIN=PIN))
        self.last_shown = time.monotonic()
        assert shown.returncode == 0, shown.stderr
        return shown.stdout.strip()


@dataclass(frozen=True)
class Enrolled:
    city: City
    foreigner_code: str
    card_number: str
    phone: Phone


def enrol(city: City, tmp_path: Path, *, surname: str, given_names: str, passport: str,
          nationality: str = "GHA", birth_date: str = "1990-07-21",
          entitlements: tuple[str, ...] = ("healthcare", "payment"),
          portrait: bytes | None = None) -> Enrolled:
    """A registrar of ``city`` enrols a person and issues a card; a phone redeems it."""
    person = city.post("/v1/persons", {
        "surname": surname, "given_names": given_names, "nationality": nationality,
        "birth_date": birth_date, "sex": "F", "confirm_new": True,
        "passport": {"number": passport, "country": nationality, "expires": "2033-06-30"},
        **({} if portrait is None else {"portrait": base64.b64encode(portrait).decode()})})
    issued = city.post("/v1/cards", {"foreigner_code": person["foreigner_code"],
                                     "entitlements": list(entitlements),
                                     "valid_until": "2030-12-31"})
    wallet = tmp_path / f"{city.code}-{passport}.wallet"
    provisioned = run_cli("wallet-sim", "--wallet", str(wallet), "provision", "--server",
                          city.url, "--code", issued["provisioning_code"],
                          env=clean_env(FMC_WALLET_PIN=PIN))
    assert provisioned.returncode == 0, provisioned.stderr
    return Enrolled(city, person["foreigner_code"], issued["card_number"], Phone(wallet))


def enrol_existing(city: City, tmp_path: Path, foreigner_code: str) -> Enrolled:
    """A card for a person ``city`` already holds (moved in); a phone redeems it."""
    issued = city.post("/v1/cards", {"foreigner_code": foreigner_code,
                                     "entitlements": ["healthcare", "payment"],
                                     "valid_until": "2030-12-31"})
    wallet = tmp_path / f"{city.code}-{foreigner_code}.wallet"
    provisioned = run_cli("wallet-sim", "--wallet", str(wallet), "provision", "--server",
                          city.url, "--code", issued["provisioning_code"],
                          env=clean_env(FMC_WALLET_PIN=PIN))
    assert provisioned.returncode == 0, provisioned.stderr
    return Enrolled(city, foreigner_code, issued["card_number"], Phone(wallet))


@dataclass(frozen=True)
class Counter:
    """A counter's verifier in Yiwu: syncs from Yiwu's authority (which serves the national
    list it holds), the national publication as a mirror; checks offline."""

    country: Country
    cache: Path

    def sync(self) -> dict[str, Any]:
        synced = self.country.verifier(
            self.cache, "sync", "--root", self.country.fingerprint,
            "--server", self.country.city("CN-YW").url,
            "--mirror", self.country.publication_url, "--json")
        assert synced.returncode == 0, synced.stdout + synced.stderr
        return dict(json.loads(synced.stdout))

    def check(self, text: str, service: str = "hospital") -> tuple[int, dict[str, Any]]:
        run = self.country.verifier(self.cache, "check", "--as", service, "--text", text,
                                    "--json")
        assert run.returncode in (0, 1), run.stdout + run.stderr
        return run.returncode, dict(json.loads(run.stdout))


def _result(answer: dict[str, Any]) -> str:
    return str(answer.get("code") or answer.get("result"))


HANGZHOU = {"code": "CN-HZ", "name_en": "Hangzhou", "name_zh": "杭州"}
YIWU = {"code": "CN-YW", "name_en": "Yiwu", "name_zh": "义乌"}


def test_a_hangzhou_card_is_accepted_at_a_yiwu_counter(country: Country,
                                                       tmp_path: Path) -> None:
    hangzhou = enrol(country.city("CN-HZ"), tmp_path, surname="MENSAH",
                     given_names="AKOSUA", passport="G1234567")
    yiwu = enrol(country.city("CN-YW"), tmp_path, surname="OWUSU", given_names="KOFI",
                 passport="G7654321")
    counter = Counter(country, tmp_path / "yiwu-counter")
    synced = counter.sync()
    assert synced["kind"] == "national"
    assert {code: city["outcome"] for code, city in synced["cities"].items()} == {
        "CN-YW": "updated", "CN-HZ": "updated"}
    status, answer = counter.check(hangzhou.phone.show("svc"))
    assert (status, answer["issuer"]) == (0, HANGZHOU), answer
    status, answer = counter.check(yiwu.phone.show("svc"))
    assert (status, answer["issuer"]) == (0, YIWU), answer
    # Chinese at the counter: the city's Chinese name.
    human = country.verifier(counter.cache, "check", "--as", "hospital", "--lang", "zh",
                             "--text", hangzhou.phone.show("svc"))
    assert human.returncode == 0 and "杭州" in human.stdout, human.stdout


def test_a_hangzhou_revocation_reaches_the_yiwu_counter(country: Country,
                                                        tmp_path: Path) -> None:
    hangzhou = country.city("CN-HZ")
    person = enrol(hangzhou, tmp_path, surname="ASANTE", given_names="ABENA",
                   passport="G5550001")
    counter = Counter(country, tmp_path / "yiwu-counter")
    counter.sync()
    assert counter.check(person.phone.show("svc"))[0] == 0
    hangzhou.post(f"/v1/cards/{person.card_number}/revoke", {"reason": "reported stolen"},
                  expect=200)
    counter.sync()  # Hangzhou's status list, fetched from Hangzhou, checked with h-keys
    status, answer = counter.check(person.phone.show("svc"))
    assert (status, _result(answer)) == (1, "REVOKED"), answer


def _sequence(foreigner_code: str) -> int:
    return int(foreigner_code[-4:-1])  # 9 + province 2 + nationality 3 + date 8 + seq 3 + check


def test_foreigner_codes_do_not_collide_between_cities(country: Country,
                                                        tmp_path: Path) -> None:
    # One nationality and birth date in both cities: the same prefix, so only the
    # sequence blocks granted nationally (Yiwu 1-100, Hangzhou 101-200) keep them apart.
    codes: dict[str, list[str]] = {"CN-YW": [], "CN-HZ": []}
    for index in range(3):
        for code, city in country.cities.items():
            person = city.post("/v1/persons", {
                "surname": f"DIALLO{code[-2:]}{'ABC'[index]}", "given_names": "AMINATA",
                "nationality": "SEN", "birth_date": "1985-01-01", "sex": "F",
                "confirm_new": True,
                "passport": {"number": f"S{code[-2:]}{index:06d}", "country": "SEN",
                             "expires": "2033-06-30"}})
            codes[code].append(person["foreigner_code"])
    every = codes["CN-YW"] + codes["CN-HZ"]
    assert len(set(every)) == len(every), codes
    assert len({code[:-4] for code in every}) == 1  # one prefix: the blocks decide
    assert all(1 <= _sequence(code) <= 100 for code in codes["CN-YW"]), codes
    assert all(101 <= _sequence(code) <= 200 for code in codes["CN-HZ"]), codes


def test_a_yiwu_registrar_finds_a_hangzhou_person(country: Country) -> None:
    hangzhou, yiwu = country.city("CN-HZ"), country.city("CN-YW")
    known = hangzhou.post("/v1/persons", {
        "surname": "KOWALSKA", "given_names": "ANNA MARIA", "nationality": "POL",
        "birth_date": "1987-05-09", "sex": "F", "confirm_new": True,
        "passport": {"number": "EP4412098", "country": "POL", "expires": "2033-06-30"}})
    registrar = yiwu.officer("registrar")

    def found(query: dict[str, Any]) -> list[dict[str, Any]]:
        answer = yiwu.post("/v1/persons/national-lookup", query, expect=200, token=registrar)
        by_city = {city["city"]: city for city in answer["cities"]}
        assert set(by_city) == {"CN-HZ"}, answer  # every other active city, not itself
        return list(by_city["CN-HZ"]["matches"])

    by_passport = found({"passport": {"number": "EP4412098", "country": "POL"}})
    assert [(m["foreigner_code"], m["holding_city"]) for m in by_passport] == [
        (known["foreigner_code"], "CN-HZ")]
    # Another transliteration of the name, same birth date and nationality: fuzzy.
    by_name = found({"person": {"surname": "KOVALSKA", "given_names": "ANNA MARIA",
                                "birth_date": "1987-05-09", "nationality": "POL"}})
    assert known["foreigner_code"] in [m["foreigner_code"] for m in by_name], by_name
    assert found({"passport": {"number": "EP0000000", "country": "POL"}}) == []


def test_a_person_moves_from_yiwu_to_hangzhou_keeping_the_code(country: Country,
                                                                tmp_path: Path) -> None:
    hangzhou, yiwu = country.city("CN-HZ"), country.city("CN-YW")
    mover = enrol(yiwu, tmp_path, surname="NOWAK", given_names="PIOTR", passport="EP7700112",
                  nationality="POL", birth_date="1979-03-30")
    counter = Counter(country, tmp_path / "yiwu-counter")
    counter.sync()
    assert counter.check(mover.phone.show("svc"))[0] == 0

    moved = hangzhou.post("/v1/persons/transfers", {
        "from_city": "CN-YW", "foreigner_code": mover.foreigner_code}, expect=200,
        token=hangzhou.officer("registrar"))
    assert moved["foreigner_code"] == mover.foreigner_code, moved
    old_card = yiwu.get(f"/v1/cards/{mover.card_number}")
    assert (old_card["state"], old_card["state_reason"]) == ("revoked", "transferred")
    # Hangzhou issues under the same code; the Yiwu counter takes the new card, not the old.
    again = enrol_existing(hangzhou, tmp_path, mover.foreigner_code)
    assert again.foreigner_code == mover.foreigner_code
    counter.sync()
    status, answer = counter.check(mover.phone.show("svc"))
    assert (status, _result(answer)) == (1, "REVOKED"), answer
    status, answer = counter.check(again.phone.show("svc"))
    assert (status, answer["issuer"]) == (0, HANGZHOU), answer
    assert answer["holder"]["foreigner_code"] == mover.foreigner_code
    for city in (yiwu, hangzhou):
        assert "audit chain OK" in city.cli("audit", "verify").stdout


def test_a_yiwu_terminal_charges_a_hangzhou_card(country: Country, tmp_path: Path) -> None:
    hangzhou, yiwu = country.city("CN-HZ"), country.city("CN-YW")
    payer = enrol(hangzhou, tmp_path, surname="ADEYEMI", given_names="TUNDE",
                  passport="NG5566778", nationality="NGA", birth_date="1991-10-02")
    hangzhou.post(f"/v1/accounts/{payer.card_number}/topups",
                  {"amount_fen": 10_000, "idempotency_key": "hz-desk-0001"})
    shop = yiwu.post("/v1/merchants", {"name": "Yiwu Futian Market Stall 7"})
    till = yiwu.post(f"/v1/merchants/{shop['merchant_id']}/terminals",
                     {"name": "till 1", "offline_floor_fen": 2_000})
    cache = tmp_path / "yiwu-till"
    env = clean_env(FMC_TERMINAL_TOKEN=till["token"])
    assert country.sync_verifier(cache).returncode == 0
    setup = country.verifier(cache, "terminal", "setup", "--server", yiwu.url, env=env)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    charged = country.verifier(cache, "terminal", "charge", "--text", payer.phone.show("pay"),
                               "--amount", "1250", "--json", env=env)
    assert charged.returncode == 0, charged.stdout + charged.stderr
    answer = json.loads(charged.stdout)
    # Hangzhou holds the account and signs the receipt; the Yiwu till checks it offline.
    # A one-use pay code (P13.3): the till is told no balance.
    assert (answer["mode"], answer["receipt"], answer.get("balance_fen")) == (
        "online", "RECEIPT_OK", None), answer
    assert hangzhou.get(f"/v1/accounts/{payer.card_number}")["balance_fen"] == 8_750


def _portrait(colour: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (60, 80), colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_a_national_counter_opens_portraits_of_every_city_offline(
        country: Country, tmp_path: Path) -> None:
    hangzhou = enrol(country.city("CN-HZ"), tmp_path, surname="OSEI", given_names="EFUA",
                     passport="G3141592", portrait=_portrait((200, 150, 120)))
    yiwu = enrol(country.city("CN-YW"), tmp_path, surname="APPIAH", given_names="KWAME",
                 passport="G2718281", portrait=_portrait((90, 140, 210)))
    counter = Counter(country, tmp_path / "yiwu-counter")
    counter.sync()
    synced = country.verifier(counter.cache, "sync-portraits", "--json")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    cities = json.loads(synced.stdout)["cities"]
    assert {code: city["outcome"] for code, city in cities.items()} == {
        "CN-HZ": "updated", "CN-YW": "updated"}, cities
    assert (counter.cache / "portrait-bundle" / "cities" / "CN-HZ" / "bundle.sqlite").exists()
    for person, issuer in ((hangzhou, HANGZHOU), (yiwu, YIWU)):
        status, answer = counter.check(person.phone.show("svc"))
        assert (status, answer["issuer"], answer["portrait"]) == (0, issuer, "offline"), answer
    again = json.loads(country.verifier(counter.cache, "sync-portraits", "--json").stdout)
    assert {city["outcome"] for city in again["cities"].values()} == {"unchanged"}, again


def test_the_cities_hold_the_published_list(country: Country) -> None:
    for city in country.cities.values():
        shown = city.cli("federation", "show").stdout
        assert "(this authority)" in shown and "CN-YW" in shown and "CN-HZ" in shown, shown
        served = city.request("GET", "/v1/federation-list")
        assert served.status_code == 200
        published = (country.publication_dir / "v1" / "federation-list").read_text().strip()
        assert served.text.strip() == published


def test_yiwu_down_the_counter_syncs_from_the_mirror(country: Country,
                                                      tmp_path: Path) -> None:
    """The counter's server (Yiwu) is down: the federation list comes from the mirror (the
    national publication), Hangzhou's lists from Hangzhou; Yiwu's held lists are kept."""
    hangzhou, yiwu = country.city("CN-HZ"), country.city("CN-YW")
    person = enrol(hangzhou, tmp_path, surname="TANAKA", given_names="YUKI",
                   passport="TR1234987", nationality="JPN", birth_date="1993-04-04")
    counter = Counter(country, tmp_path / "yiwu-counter")
    counter.sync()
    yiwu.stop()
    try:
        synced = counter.sync()
        assert str(synced["federation_source"]).startswith(country.publication_url), synced
        assert synced["cities"]["CN-HZ"]["outcome"] in ("updated", "unchanged"), synced
        assert synced["cities"]["CN-YW"]["outcome"] not in ("updated", "unchanged"), synced
        status, answer = counter.check(person.phone.show("svc"))
        assert (status, answer["issuer"]) == (0, HANGZHOU), answer
    finally:
        yiwu.start()


def test_a_city_cut_off_nationally_is_refused_at_the_next_sync(country: Country,
                                                               tmp_path: Path) -> None:
    hangzhou, yiwu = country.city("CN-HZ"), country.city("CN-YW")
    from_hangzhou = enrol(hangzhou, tmp_path, surname="BOATENG", given_names="AMA",
                          passport="G9990001")
    from_yiwu = enrol(yiwu, tmp_path, surname="ADJEI", given_names="YAW",
                      passport="G9990002")
    counter = Counter(country, tmp_path / "yiwu-counter")
    counter.sync()
    assert counter.check(from_hangzhou.phone.show("svc"))[0] == 0

    country.national("suspend-issuer", "--code", "CN-HZ")
    country.publish_and_sync()
    synced = counter.sync()
    assert synced["cities"]["CN-HZ"]["state"] == "suspended", synced
    status, answer = counter.check(from_hangzhou.phone.show("svc"))
    assert (status, _result(answer)) == (1, "ISSUER_SUSPENDED"), answer
    assert counter.check(from_yiwu.phone.show("svc"))[0] == 0  # only Hangzhou is cut off

    # Reinstated: accepted again. Then Hangzhou's active key leaks: the city marks it
    # compromised, the national tool carries it over, and its cards are refused.
    country.national("reinstate-issuer", "--code", "CN-HZ")
    country.publish_and_sync()
    counter.sync()
    assert counter.check(from_hangzhou.phone.show("svc"))[0] == 0
    keys = hangzhou.get("/v1/keys")
    active = next(key["kid"] for key in keys["keys"] if key["state"] == "active")
    assert active.startswith("h")
    hangzhou.cli("keys", "compromise", active)
    compromised = country.national("update-issuer", "--code", "CN-HZ")
    assert f"{active} compromised" in compromised.stdout, compromised.stdout
    country.publish_and_sync()
    counter.sync()
    status, answer = counter.check(from_hangzhou.phone.show("svc"))
    assert (status, _result(answer)) == (1, "KEY_COMPROMISED"), answer
    assert counter.check(from_yiwu.phone.show("svc"))[0] == 0

