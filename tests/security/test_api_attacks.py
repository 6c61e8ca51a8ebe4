"""One test per attack on the authority's HTTP API, on SQLite and on PostgreSQL.

Each test names its attack; docs/SECURITY.md lists them with the answer each gets. A
refused request must answer problem+json with a stable ``code``, never a 500, and leave
every table as it was.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cardsvc_kit import (
    Authority,
    Template,
    authority_from,
    b64,
    device_key,
    portrait_bytes,
    provision_request,
)
from fastapi.routing import APIRoute
from kit.names import in_letters
from sqlalchemy import inspect, select, text

from cardsvc.models import Base, Card, Officer, Person
from cardsvc.payments.ledger import check_ledger
from cardsvc.payments.models import Merchant, Payment, Refund, Terminal
from cardsvc.services._validate import clean_name
from cardsvc.services.audit import Actor, verify_chain
from cardsvc.services.errors import Invalid
from cardsvc.services.officers import deactivate_officer
from keys import Ed25519Signer, sign_presentation

ROLES = ("registrar", "supervisor", "auditor", "cashier", "terminal", "verifier")
PROBLEM = "application/problem+json"
_serial = itertools.count(1)


# --- the world every attack runs against ------------------------------------------------------

@dataclass
class World:
    """An authority with a person, a provisioned card with money on it, two merchants with a
    terminal each, a payment, and one officer per role."""

    authority: Authority
    person_code: str
    portrait_digest: str
    spare_person_code: str
    card_number: str
    suspended_card_number: str
    device: Ed25519Signer
    bundle: dict[str, Any]
    merchant_id: int
    terminal_token: str
    other_terminal_token: str
    payment_id: str
    _proof_offsets: Iterator[int] = field(default_factory=itertools.count)

    @property
    def client(self) -> Any:
        return self.authority.client

    @property
    def admin(self) -> dict[str, str]:
        return self.authority.admin

    def role(self, role: str) -> dict[str, str]:
        return self.authority.as_role(role)

    def terminal(self, *, other: bool = False) -> dict[str, str]:
        token = self.other_terminal_token if other else self.terminal_token
        return {"Authorization": f"Bearer {token}"}

    def pay_code(self) -> str:
        """A fresh pay code of the world's card (a new proof time on every call)."""
        proof_time = self.authority.clock.epoch - next(self._proof_offsets) % 50
        return sign_presentation(self.bundle["credentials"]["pay"], self.device,
                                 proof_time=proof_time, purpose="pay")

    def fingerprint(self) -> dict[str, str]:
        """A digest of every row of every table: equal before and after means no change.

        Leaves out the one intended effect of a refusal: a pay code refused online is
        remembered so it never settles offline (docs/PAYMENTS.md, step 5b)."""
        digests = {}
        with self.authority.database.sessions() as session:
            for table in Base.metadata.sorted_tables:
                if table.name == "pay_codes_seen_online":
                    continue
                rows = sorted(repr(tuple(row)) for row in session.execute(select(table)))
                digests[table.name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        return digests

    def row_counts(self) -> dict[str, int]:
        names = [table.name for table in Base.metadata.sorted_tables]
        query = " UNION ALL ".join(f"SELECT '{n}', COUNT(*) FROM {n}" for n in names)
        with self.authority.database.sessions() as session:
            return {str(name): int(count) for name, count in session.execute(text(query))}


def _enrol_body(**overrides: Any) -> dict[str, Any]:
    n = next(_serial)
    body: dict[str, Any] = {
        "surname": f"ATTACKED{in_letters(n)}", "given_names": "Test", "nationality": "NGA",
        "birth_date": "1980-01-0" + str(1 + n % 9), "sex": "F", "confirm_new": True,
        "passport": {"number": f"AT{secrets.token_hex(5).upper()}", "country": "NGA",
                     "expires": "2033-01-01"},
    }
    body.update(overrides)
    return body


def _ok(answer: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return dict(answer.json())


def _build_world(authority: Authority) -> World:
    client, admin = authority.client, authority.admin
    for role in ROLES:
        authority.as_role(role)
    person = _ok(client.post("/v1/persons", headers=admin, json=_enrol_body(
        portrait=b64(portrait_bytes()))), 201)
    spare = _ok(client.post("/v1/persons", headers=admin, json=_enrol_body()), 201)
    issued = _ok(client.post("/v1/cards", headers=admin, json={
        "foreigner_code": person["foreigner_code"], "entitlements": ["healthcare", "payment"],
        "valid_until": "2030-12-31"}), 201)
    device = device_key(77)
    bundle = _ok(client.post("/v1/provision",
                             json=provision_request(issued["provisioning_code"], device)))
    other = authority.enrol()
    suspended = authority.issue(other["foreigner_code"])["card_number"]
    authority.revoke(suspended, "suspend")
    merchant = _ok(client.post("/v1/merchants", headers=admin, json={"name": "Bead Shop"}), 201)
    terminal = _ok(client.post(f"/v1/merchants/{merchant['merchant_id']}/terminals",
                               headers=admin, json={"name": "till 1"}), 201)
    rival = _ok(client.post("/v1/merchants", headers=admin, json={"name": "Rival Shop"}), 201)
    rival_terminal = _ok(client.post(f"/v1/merchants/{rival['merchant_id']}/terminals",
                                     headers=admin, json={"name": "till 9"}), 201)
    _ok(client.post(f"/v1/accounts/{issued['card_number']}/topups",
                    headers=authority.as_role("cashier"),
                    json={"amount_fen": 1_000_000, "idempotency_key": "world-topup"}), 201)
    world = World(authority, person["foreigner_code"], person["portrait_digest"],
                  spare["foreigner_code"], issued["card_number"], suspended, device, bundle,
                  merchant["merchant_id"], terminal["token"], rival_terminal["token"], "")
    paid = _ok(client.post("/v1/payments", headers=world.terminal(), json={
        "pay_code": world.pay_code(), "amount_fen": 50_000, "idempotency_key": "world-pay"}), 201)
    world.payment_id = paid["payment_id"]
    return world


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp(f"api-attacks-{request.param}")
    template = Template.create(request.param, base)
    try:
        with authority_from(template, base) as authority:
            yield _build_world(authority)
    finally:
        template.drop()


def _assert_problem(answer: httpx.Response, status: int | None = None) -> str:
    assert answer.status_code < 500, answer.text
    if status is not None:
        assert answer.status_code == status, answer.text
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"] == PROBLEM, answer.headers
    body = answer.json()
    assert isinstance(body.get("code"), str) and body["code"], body
    assert "Traceback" not in answer.text
    return str(body["code"])


# --- officer routes: who may call what -------------------------------------------------------

Request = tuple[str, str, dict[str, Any] | None]  # method, path, JSON body


@dataclass(frozen=True)
class OfficerRoute:
    method: str
    template: str  # the route's path as FastAPI declares it
    allowed: frozenset[str]
    request: Callable[[World], Request]  # a request that would change state if let through


def _route(method: str, template: str, allowed: set[str],
           request: Callable[[World], Request]) -> OfficerRoute:
    return OfficerRoute(method, template, frozenset(allowed), request)


OFFICER_ROUTES = [
    _route("POST", "/v1/persons", {"registrar"},
           lambda w: ("POST", "/v1/persons", _enrol_body())),
    # P10: asking other cities and moving a person here are the registrar's alone.
    _route("POST", "/v1/persons/national-lookup", {"registrar"},
           lambda w: ("POST", "/v1/persons/national-lookup",
                      {"passport": {"number": "A1234567", "country": "NGA"}})),
    _route("GET", "/v1/persons/national-lookup", {"registrar"},
           lambda w: ("GET", "/v1/persons/national-lookup?passport=A1234567&country=NGA",
                      None)),
    _route("POST", "/v1/persons/transfers", {"registrar"},
           lambda w: ("POST", "/v1/persons/transfers",
                      {"from_city": "CN-HZ", "foreigner_code": w.person_code})),
    _route("DELETE", "/v1/persons/transfers/{transfer_id}", {"registrar"},
           lambda w: ("DELETE", "/v1/persons/transfers/move-0001", None)),
    _route("GET", "/v1/persons", {"registrar", "supervisor"},
           lambda w: ("GET", "/v1/persons?passport=A1234567&country=NGA", None)),
    _route("GET", "/v1/persons/{foreigner_code}", {"registrar", "supervisor"},
           lambda w: ("GET", f"/v1/persons/{w.person_code}", None)),
    _route("POST", "/v1/persons/{foreigner_code}/passports", {"registrar"},
           lambda w: ("POST", f"/v1/persons/{w.person_code}/passports",
                      {"number": "NEWPASS01", "country": "NGA", "expires": "2034-01-01",
                       "surname": "RENAMED"})),
    _route("PUT", "/v1/persons/{foreigner_code}/portrait", {"registrar"},
           lambda w: ("PUT", f"/v1/persons/{w.person_code}/portrait",
                      {"portrait": b64(portrait_bytes(size=(40, 50)))})),
    _route("GET", "/v1/portraits/{digest}", {"terminal", "verifier", "registrar", "supervisor"},
           lambda w: ("GET", f"/v1/portraits/{w.portrait_digest}", None)),
    _route("POST", "/v1/cards", {"registrar"},
           lambda w: ("POST", "/v1/cards", {"foreigner_code": w.spare_person_code,
                                            "entitlements": ["payment"],
                                            "valid_until": "2030-01-01"})),
    _route("GET", "/v1/cards/{card_number}", {"registrar", "supervisor"},
           lambda w: ("GET", f"/v1/cards/{w.card_number}", None)),
    _route("POST", "/v1/cards/{card_number}/provisioning-codes", {"registrar"},
           lambda w: ("POST", f"/v1/cards/{w.card_number}/provisioning-codes", None)),
    _route("POST", "/v1/cards/{card_number}/revoke", {"supervisor"},
           lambda w: ("POST", f"/v1/cards/{w.card_number}/revoke", {"reason": "attack"})),
    _route("POST", "/v1/cards/{card_number}/suspend", {"supervisor"},
           lambda w: ("POST", f"/v1/cards/{w.card_number}/suspend", {"reason": "attack"})),
    _route("POST", "/v1/cards/{card_number}/reinstate", {"supervisor"},
           lambda w: ("POST", f"/v1/cards/{w.suspended_card_number}/reinstate",
                      {"reason": "attack"})),
    _route("GET", "/v1/audit", {"auditor"}, lambda w: ("GET", "/v1/audit", None)),
    _route("POST", "/v1/officers", {"supervisor"},
           lambda w: ("POST", "/v1/officers", {"name": "Escalated", "roles": list(ROLES)})),
    _route("GET", "/v1/officers", {"supervisor"}, lambda w: ("GET", "/v1/officers", None)),
    _route("POST", "/v1/keys/rotate", {"supervisor"},
           lambda w: ("POST", "/v1/keys/rotate", None)),
    _route("POST", "/v1/merchants", {"supervisor"},
           lambda w: ("POST", "/v1/merchants", {"name": "Fake Shop"})),
    _route("GET", "/v1/merchants/{merchant_id}", {"cashier", "auditor", "supervisor"},
           lambda w: ("GET", f"/v1/merchants/{w.merchant_id}", None)),
    _route("POST", "/v1/merchants/{merchant_id}/terminals", {"supervisor"},
           lambda w: ("POST", f"/v1/merchants/{w.merchant_id}/terminals",
                      {"name": "rogue till"})),
    _route("GET", "/v1/terminal", {"terminal"}, lambda w: ("GET", "/v1/terminal", None)),
    _route("POST", "/v1/accounts/{card_number}/topups", {"cashier"},
           lambda w: ("POST", f"/v1/accounts/{w.card_number}/topups",
                      {"amount_fen": 99_999, "idempotency_key": secrets.token_hex(8)})),
    _route("GET", "/v1/accounts/{card_number}", {"cashier", "auditor", "supervisor"},
           lambda w: ("GET", f"/v1/accounts/{w.card_number}", None)),
    _route("POST", "/v1/payments", {"terminal"},
           lambda w: ("POST", "/v1/payments", {"pay_code": w.pay_code(), "amount_fen": 100,
                                               "idempotency_key": secrets.token_hex(8)})),
    _route("POST", "/v1/payments/offline-batch", {"terminal"},
           lambda w: ("POST", "/v1/payments/offline-batch", {"items": [{
               "pay_code": w.pay_code(), "amount_fen": 100,
               "idempotency_key": secrets.token_hex(8),
               "accepted_at": w.authority.clock().isoformat()}]})),
    _route("GET", "/v1/payments/{payment_id}", {"terminal", "cashier", "auditor", "supervisor"},
           lambda w: ("GET", f"/v1/payments/{w.payment_id}", None)),
    _route("POST", "/v1/payments/{payment_id}/refund", {"cashier", "terminal"},
           lambda w: ("POST", f"/v1/payments/{w.payment_id}/refund",
                      {"amount_fen": 100, "idempotency_key": secrets.token_hex(8),
                       "reason": "attack"})),
    _route("GET", "/v1/merchants/{merchant_id}/settlement",
           {"terminal", "cashier", "auditor", "supervisor"},
           lambda w: ("GET", f"/v1/merchants/{w.merchant_id}/settlement?date=2027-01-15",
                      None)),
    _route("GET", "/v1/payments/interchange-report", {"auditor", "supervisor"},
           lambda w: ("GET", "/v1/payments/interchange-report?day=2027-01-15&with=CN-HZ",
                      None)),
    _route("GET", "/v1/payments/interchange-reconcile", {"auditor", "supervisor"},
           lambda w: ("GET", "/v1/payments/interchange-reconcile?day=2027-01-15&with=CN-HZ",
                      None)),
    _route("POST", "/v1/officers/{officer_id}/deactivate", {"supervisor"},
           lambda w: ("POST", "/v1/officers/1/deactivate", None)),
]
_ROUTE_IDS = [f"{r.method} {r.template}" for r in OFFICER_ROUTES]


def _declared_roles(dependant: Any) -> set[str] | None:
    """The roles the route's ``roles(...)`` dependency admits (None: no officer check)."""
    found: set[str] | None = None
    for dependency in dependant.dependencies:
        call = dependency.call
        # roles(...) checks the token itself; roles_in_transaction(...) leaves the same
        # check to the route's transaction (POST /v1/payments)
        if getattr(call, "__name__", "") in ("officer_with_role", "officer_to_check") \
                and call.__closure__:
            cells = dict(zip(call.__code__.co_freevars,
                             (cell.cell_contents for cell in call.__closure__), strict=True))
            found = (found or set()) | set(cells["allowed"])
        inner = _declared_roles(dependency)
        if inner is not None:
            found = (found or set()) | inner
    return found


def test_attack_table_covers_every_officer_route(world: World) -> None:
    """A new officer route without a row here fails this test (and so gets attacked)."""
    declared = {}
    for route in world.client.app.routes:
        if isinstance(route, APIRoute) and route.path.startswith("/v1/"):
            allowed = _declared_roles(route.dependant)
            if allowed is not None:
                for method in route.methods:
                    declared[f"{method} {route.path}"] = frozenset(allowed)
    table = {f"{r.method} {r.template}": r.allowed for r in OFFICER_ROUTES}
    assert table == declared


def _send(world: World, request: Request, headers: dict[str, str]) -> httpx.Response:
    method, path, body = request
    response: httpx.Response = world.client.request(method, path, headers=headers, json=body)
    return response


@pytest.mark.parametrize("route", OFFICER_ROUTES, ids=_ROUTE_IDS)
def test_attack_officer_token_of_the_wrong_role(world: World, route: OfficerRoute) -> None:
    before = world.fingerprint()
    for role in sorted(set(ROLES) - route.allowed):
        headers = world.terminal() if role == "terminal" else world.role(role)
        answer = _send(world, route.request(world), headers)
        assert _assert_problem(answer, 403) == "FORBIDDEN", role
        assert answer.json()["required_roles"] == sorted(route.allowed)
    assert world.fingerprint() == before


def _bad_credentials(world: World) -> list[tuple[str, dict[str, str]]]:
    fired = world.authority.client.post("/v1/officers", headers=world.admin, json={
        "name": "Dismissed", "roles": list(ROLES)})
    fired_token = _ok(fired, 201)["token"]
    world.authority.database.transact(lambda session: deactivate_officer(
        session, officer_id=fired.json()["id"], actor=Actor.cli(), now=world.authority.clock()))
    admin_token = world.authority.admin_token
    return [
        ("no Authorization header", {}),
        ("unknown token", {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}),
        ("empty bearer", {"Authorization": "Bearer "}),
        ("another scheme", {"Authorization": f"Basic {admin_token}"}),
        ("token without scheme", {"Authorization": admin_token}),
        ("oversize token", {"Authorization": "Bearer " + "A" * 10_000}),
        ("stored hash instead of the token", {
            "Authorization": f"Bearer {hashlib.sha256(admin_token.encode()).hexdigest()}"}),
        ("token with a suffix", {"Authorization": f"Bearer {admin_token}x"}),
        ("token of a deactivated officer", {"Authorization": f"Bearer {fired_token}"}),
        ("SQL in the token", {"Authorization": "Bearer ' OR '1'='1"}),
    ]


def test_attack_no_token_or_a_bad_token(world: World) -> None:
    credentials = _bad_credentials(world)
    before = world.fingerprint()
    for route in OFFICER_ROUTES:
        for name, headers in credentials:
            answer = _send(world, route.request(world), headers)
            assert _assert_problem(answer, 401) == "UNAUTHENTICATED", (route.template, name)
            assert answer.headers["www-authenticate"] == "Bearer"
    assert world.fingerprint() == before


def test_attack_terminal_reaches_into_another_merchant(world: World) -> None:
    """A terminal reads or refunds only its own merchant's payments and settlement."""
    rival = world.terminal(other=True)
    before = world.fingerprint()
    refund = world.client.post(f"/v1/payments/{world.payment_id}/refund", headers=rival, json={
        "amount_fen": 100, "idempotency_key": "steal-1", "reason": "mine now"})
    assert _assert_problem(refund, 404) == "PAYMENT_NOT_FOUND"
    read = world.client.get(f"/v1/payments/{world.payment_id}", headers=rival)
    assert _assert_problem(read, 404) == "PAYMENT_NOT_FOUND"
    report = world.client.get(f"/v1/merchants/{world.merchant_id}/settlement",
                              params={"date": "2027-01-15"}, headers=rival)
    assert _assert_problem(report, 403) == "FORBIDDEN"
    assert world.fingerprint() == before


# --- injection in every text field -----------------------------------------------------------

INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE persons; --",
    "Robert'); DROP TABLE cards;--",
    "1; SELECT pg_sleep(5); --",
    "' UNION SELECT token_hash, roles FROM officers --",
    '" OR ""="',
    "%' OR 1=1 --",
    "../../../../etc/passwd",
    "..\\..\\..\\windows\\win.ini",
    "%2e%2e%2f%2e%2e%2fkeys%2froot.pem",
    "<script>alert(1)</script>",
    "{{7*7}} ${7*7}",
    "NUL\x00byte",
    "A" * 5000,
]
_INJECTION_IDS = ["or-true", "drop", "bobby", "sleep", "union", "dq-or", "like", "path",
                  "winpath", "encoded-path", "script", "template", "nul", "oversize"]


@dataclass(frozen=True)
class Site:
    """A place where text from the outside reaches the authority."""

    name: str
    request: Callable[[World, str], Request]
    stored: Callable[[World, httpx.Response, str], None] | None = None  # checks a 2xx
    # Which values a text field keeps: every printable one that fits; a name, only what
    # a passport prints (letters, spaces, a few joiners), the rest refused.
    keeps: Callable[[str], bool] = lambda value: value.isprintable() and len(value) <= 500


def _is_a_name(value: str) -> bool:
    try:
        clean_name(value, field="surname")
    except Invalid:
        return False
    return True


def _person_stored(column: str) -> Callable[[World, httpx.Response, str], None]:
    def check(world: World, answer: httpx.Response, value: str) -> None:
        code = answer.json()["foreigner_code"]
        shown = _ok(world.client.get(f"/v1/persons/{code}", headers=world.admin))
        assert shown[column] == value
        with world.authority.database.sessions() as session:
            person = session.scalar(select(Person).where(Person.foreigner_code == code))
            assert person is not None and getattr(person, column) == value
    return check


def _card_reason_stored(world: World, answer: httpx.Response, value: str) -> None:
    with world.authority.database.sessions() as session:
        card = session.scalar(select(Card).where(Card.card_number == answer.json()["card_number"]))
        assert card is not None and card.state_reason == value


def _officer_stored(world: World, answer: httpx.Response, value: str) -> None:
    with world.authority.database.sessions() as session:
        assert session.get_one(Officer, answer.json()["id"]).name == value


def _merchant_stored(world: World, answer: httpx.Response, value: str) -> None:
    with world.authority.database.sessions() as session:
        assert session.get_one(Merchant, answer.json()["merchant_id"]).name == value


def _terminal_stored(world: World, answer: httpx.Response, value: str) -> None:
    with world.authority.database.sessions() as session:
        assert session.get_one(Terminal, answer.json()["terminal_id"]).name == value


def _refund_stored(world: World, answer: httpx.Response, value: str) -> None:
    with world.authority.database.sessions() as session:
        assert session.get_one(Refund, answer.json()["refund_id"]).reason == value


def _toggle_card(world: World) -> str:
    """The suspended card, for a reason to land on (suspend and reinstate alternate)."""
    return world.suspended_card_number


def _state_change(world: World, value: str) -> Request:
    number = _toggle_card(world)
    with world.authority.database.sessions() as session:
        state = session.scalar(select(Card.state).where(Card.card_number == number))
    action = "reinstate" if state == "suspended" else "suspend"
    return "POST", f"/v1/cards/{number}/{action}", {"reason": value}


def _path(value: str) -> str:
    return quote(value, safe="")


SITES = [
    Site("enrol surname", lambda w, v: ("POST", "/v1/persons", _enrol_body(surname=v)),
         _person_stored("surname"), _is_a_name),
    Site("enrol given names", lambda w, v: ("POST", "/v1/persons", _enrol_body(given_names=v)),
         _person_stored("given_names"), _is_a_name),
    Site("enrol nationality", lambda w, v: ("POST", "/v1/persons", _enrol_body(nationality=v))),
    Site("enrol passport number", lambda w, v: ("POST", "/v1/persons", _enrol_body(
        passport={"number": v, "country": "NGA", "expires": "2033-01-01"}))),
    Site("enrol passport country", lambda w, v: ("POST", "/v1/persons", _enrol_body(
        passport={"number": "ZZ998877", "country": v, "expires": "2033-01-01"}))),
    Site("enrol link_to", lambda w, v: ("POST", "/v1/persons", _enrol_body(link_to=v))),
    Site("enrol portrait", lambda w, v: ("POST", "/v1/persons", _enrol_body(portrait=v))),
    Site("passport number", lambda w, v: ("POST", f"/v1/persons/{w.person_code}/passports",
                                          {"number": v, "country": "NGA",
                                           "expires": "2034-01-01"})),
    Site("passport surname", lambda w, v: ("POST", f"/v1/persons/{w.spare_person_code}/passports",
                                           {"number": f"SN{secrets.token_hex(4).upper()}",
                                            "country": "NGA", "expires": "2034-01-01",
                                            "surname": v}),
         _person_stored("surname"), _is_a_name),
    Site("card foreigner code", lambda w, v: ("POST", "/v1/cards", {
        "foreigner_code": v, "entitlements": ["payment"], "valid_until": "2030-01-01"})),
    Site("card entitlement", lambda w, v: ("POST", "/v1/cards", {
        "foreigner_code": w.spare_person_code, "entitlements": [v],
        "valid_until": "2030-01-01"})),
    Site("card state reason", _state_change, _card_reason_stored),
    Site("officer name", lambda w, v: ("POST", "/v1/officers", {"name": v, "roles": ["auditor"]}),
         _officer_stored),
    Site("officer role", lambda w, v: ("POST", "/v1/officers", {"name": "X", "roles": [v]})),
    Site("merchant name", lambda w, v: ("POST", "/v1/merchants", {"name": v}),
         _merchant_stored),
    Site("terminal name", lambda w, v: ("POST", f"/v1/merchants/{w.merchant_id}/terminals",
                                        {"name": v}), _terminal_stored),
    Site("top-up idempotency key", lambda w, v: ("POST", f"/v1/accounts/{w.card_number}/topups",
                                                 {"amount_fen": 1, "idempotency_key": v})),
    Site("payment pay code", lambda w, v: ("POST", "/v1/payments", {
        "pay_code": v, "amount_fen": 1, "idempotency_key": secrets.token_hex(6)})),
    Site("payment pay code after FMC1:", lambda w, v: ("POST", "/v1/payments", {
        "pay_code": "FMC1:" + v, "amount_fen": 1, "idempotency_key": secrets.token_hex(6)})),
    Site("payment idempotency key", lambda w, v: ("POST", "/v1/payments", {
        "pay_code": w.pay_code(), "amount_fen": 1, "idempotency_key": v})),
    Site("refund reason", lambda w, v: ("POST", f"/v1/payments/{w.payment_id}/refund", {
        "amount_fen": 1, "idempotency_key": secrets.token_hex(6), "reason": v}),
         _refund_stored),
    Site("provisioning code", lambda w, v: ("POST", "/v1/provision", {
        "provisioning_code": v, "device_key": "A" * 43, "proof": "A" * 86})),
    Site("provisioning device key", lambda w, v: ("POST", "/v1/provision", {
        "provisioning_code": "ABCD-EFGH-JKMN-PQRS", "device_key": v, "proof": "A" * 86})),
    Site("refresh card number", lambda w, v: ("POST", "/v1/wallet/refresh", {
        "card_number": v, "device_key": "A" * 43, "time": 1_800_000_000, "proof": "A" * 86})),
    Site("path foreigner code", lambda w, v: ("GET", f"/v1/persons/{_path(v)}", None)),
    Site("path card number", lambda w, v: ("GET", f"/v1/cards/{_path(v)}", None)),
    Site("path card number (revoke)", lambda w, v: ("POST", f"/v1/cards/{_path(v)}/revoke",
                                                    {"reason": "x"})),
    Site("path account", lambda w, v: ("GET", f"/v1/accounts/{_path(v)}", None)),
    Site("path payment id", lambda w, v: ("GET", f"/v1/payments/{_path(v)}", None)),
    Site("path merchant id", lambda w, v: ("GET", f"/v1/merchants/{_path(v)}", None)),
    Site("path status list id", lambda w, v: ("GET", f"/v1/status-lists/{_path(v)}", None)),
    Site("path portrait digest", lambda w, v: ("GET", f"/v1/portraits/{_path(v)}", None)),
    Site("path console asset", lambda w, v: ("GET", f"/console/static/{_path(v)}", None)),
    Site("query passport", lambda w, v: ("GET", f"/v1/persons?passport={_path(v)}&country=NGA",
                                         None)),
    Site("query country", lambda w, v: ("GET", f"/v1/persons?passport=A1234567&country={_path(v)}",
                                        None)),
    Site("query audit subject", lambda w, v: ("GET", f"/v1/audit?subject={_path(v)}", None)),
    Site("query settlement date", lambda w, v: (
        "GET", f"/v1/merchants/{w.merchant_id}/settlement?date={_path(v)}", None)),
]


@pytest.mark.parametrize("site", SITES, ids=[s.name for s in SITES])
def test_attack_sql_and_path_injection_in_every_text_field(world: World, site: Site) -> None:
    """Never a 500; a refusal changes no table; valid text is stored exactly as sent."""
    stored = 0
    for value in INJECTIONS:
        counts = world.row_counts()
        method, path, body = site.request(world, value)
        try:
            answer = world.client.request(method, path, json=body, headers=world.admin)
        except httpx.InvalidURL:
            continue  # the client cannot even send it
        assert answer.status_code < 500, (site.name, value, answer.text)
        if answer.status_code >= 400 and not path.startswith("/v1/"):
            # The console answers with its HTML error page.
            assert answer.status_code == 404 and "Traceback" not in answer.text
            assert world.row_counts() == counts, (site.name, value)
        elif answer.status_code >= 400:
            _assert_problem(answer)
            assert world.row_counts() == counts, (site.name, value)
        elif site.stored is not None:
            site.stored(world, answer, value)
            stored += 1
        if path.startswith("/v1/audit") and answer.status_code == 200:
            assert answer.json()["entries"] == [], value  # an equality match, not SQL
    if site.stored is not None:  # text fields: what the field keeps is kept, as sent
        assert stored == sum(map(site.keeps, INJECTIONS)) > 0, site.name
    _assert_schema_intact(world)


def _assert_schema_intact(world: World) -> None:
    engine = world.authority.database.engine
    present = set(inspect(engine).get_table_names())
    assert {table.name for table in Base.metadata.sorted_tables} <= present
    assert world.authority.database.transact(verify_chain, readonly=True).ok


def test_attack_injected_names_travel_verbatim_into_the_signed_credential(world: World) -> None:
    """A name that could be SQL or a path, made only of what passports print, is just a
    name: enrolled, signed and verified as written (the rest is refused, above)."""
    client, admin = world.client, world.admin
    surname, given = "O'Connor' OR 'x'-'x", "../../etc/passwd"
    person = _ok(client.post("/v1/persons", headers=admin,
                             json=_enrol_body(surname=surname, given_names=given)), 201)
    issued = _ok(client.post("/v1/cards", headers=admin, json={
        "foreigner_code": person["foreigner_code"], "entitlements": ["healthcare"],
        "valid_until": "2030-01-01"}), 201)
    phone = device_key(91)
    bundle = _ok(client.post("/v1/provision",
                             json=provision_request(issued["provisioning_code"], phone)))
    assert (bundle["holder"]["surname"], bundle["holder"]["given_names"]) == (surname, given)
    assert world.authority.check(bundle, phone, "id", "counter") == "OK"
    _assert_schema_intact(world)


# --- provisioning codes and pay codes ---------------------------------------------------------

def _fresh_code(world: World) -> str:
    person = world.authority.enrol()
    return str(world.authority.issue(person["foreigner_code"])["provisioning_code"])


def test_attack_provisioning_code_used_twice(world: World) -> None:
    code = _fresh_code(world)
    first_phone, thief = device_key(101), device_key(102)
    bundle = _ok(world.client.post("/v1/provision", json=provision_request(code, first_phone)))
    before = world.fingerprint()
    for phone in (thief, first_phone):  # another phone, and the same phone again
        again = world.client.post("/v1/provision", json=provision_request(code, phone))
        assert _assert_problem(again, 409) == "PROVISIONING_CODE_USED"
    assert world.fingerprint() == before
    with world.authority.database.sessions() as session:
        card = session.scalar(select(Card).where(Card.card_number == bundle["card_number"]))
        assert card is not None and card.device_key == first_phone.public_key
    assert world.authority.check(bundle, first_phone, "svc", "hospital") == "OK"


def _all_at_once(count: int, work: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    barrier = threading.Barrier(count)
    answers: list[httpx.Response | None] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        answers[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


def test_attack_two_concurrent_redemptions_of_one_code(world: World) -> None:
    code = _fresh_code(world)
    phones = [device_key(120 + i) for i in range(6)]
    answers = _all_at_once(len(phones), lambda i: world.client.post(
        "/v1/provision", json=provision_request(code, phones[i])))
    won = [i for i, answer in enumerate(answers) if answer.status_code == 200]
    assert len(won) == 1, [a.status_code for a in answers]
    assert {_assert_problem(a, 409) for a in answers if a.status_code != 200} == {
        "PROVISIONING_CODE_USED"}
    bundle = answers[won[0]].json()
    with world.authority.database.sessions() as session:
        card = session.scalar(select(Card).where(Card.card_number == bundle["card_number"]))
        assert card is not None and card.device_key == phones[won[0]].public_key
    assert world.authority.check(bundle, phones[won[0]], "svc", "hospital") == "OK"


def _balance(world: World) -> int:
    account = _ok(world.client.get(f"/v1/accounts/{world.card_number}",
                                   headers=world.role("auditor")))
    return int(account["balance_fen"])


def test_attack_pay_code_charged_twice(world: World) -> None:
    code = world.pay_code()
    start = _balance(world)
    first = world.client.post("/v1/payments", headers=world.terminal(), json={
        "pay_code": code, "amount_fen": 700, "idempotency_key": "twice-1"})
    assert first.status_code == 201, first.text
    before = world.fingerprint()
    for headers, key in ((world.terminal(), "twice-2"),           # same shop, new key
                         (world.terminal(other=True), "twice-1")):  # another shop
        again = world.client.post("/v1/payments", headers=headers, json={
            "pay_code": code, "amount_fen": 700, "idempotency_key": key})
        assert _assert_problem(again, 409) == "PAY_CODE_USED"
    assert world.fingerprint() == before
    assert _balance(world) == start - 700
    with world.authority.database.sessions() as session:
        assert session.get(Payment, first.json()["payment_id"]) is not None


def test_attack_pay_code_charged_twice_concurrently(world: World) -> None:
    code = world.pay_code()
    start = _balance(world)
    tokens = [world.terminal(), world.terminal(other=True)] * 3
    answers = _all_at_once(len(tokens), lambda i: world.client.post(
        "/v1/payments", headers=tokens[i], json={
            "pay_code": code, "amount_fen": 300, "idempotency_key": f"race-{i}"}))
    assert sorted(a.status_code for a in answers) == [201] + [409] * (len(tokens) - 1)
    assert {_assert_problem(a) for a in answers if a.status_code != 201} == {"PAY_CODE_USED"}
    assert _balance(world) == start - 300
    assert world.authority.database.transact(check_ledger, readonly=True).ok


def test_attack_payment_retried_with_the_same_idempotency_key(world: World) -> None:
    """A retry is answered from the record and moves no money; another amount is refused."""
    code = world.pay_code()
    start = _balance(world)
    body = {"pay_code": code, "amount_fen": 400, "idempotency_key": "retry-1"}
    first = world.client.post("/v1/payments", headers=world.terminal(), json=body)
    assert first.status_code == 201, first.text
    retry = world.client.post("/v1/payments", headers=world.terminal(), json=body)
    assert retry.status_code == 201 and retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    changed = world.client.post("/v1/payments", headers=world.terminal(),
                                json={**body, "amount_fen": 40_000})
    assert _assert_problem(changed, 409) == "IDEMPOTENCY_KEY_REUSED"
    assert _balance(world) == start - 400


@pytest.mark.parametrize("amount", [0, -500, 2**63, 1.5, "100", None, True])
def test_attack_money_from_nothing_with_odd_amounts(world: World, amount: object) -> None:
    """Negative, zero, float, string and huge amounts on top-ups, charges and refunds."""
    before = world.fingerprint()
    requests = [
        (f"/v1/accounts/{world.card_number}/topups", world.role("cashier"), {}),
        ("/v1/payments", world.terminal(), {"pay_code": world.pay_code()}),
        (f"/v1/payments/{world.payment_id}/refund", world.terminal(), {}),
    ]
    for path, headers, extra in requests:
        answer = world.client.post(path, headers=headers, json={
            "amount_fen": amount, "idempotency_key": secrets.token_hex(6), **extra})
        assert _assert_problem(answer, 422) == "VALIDATION_FAILED", path
    assert world.fingerprint() == before


def test_attack_refund_more_than_was_paid(world: World) -> None:
    before = world.fingerprint()
    answer = world.client.post(f"/v1/payments/{world.payment_id}/refund",
                               headers=world.role("cashier"), json={
                                   "amount_fen": 10_000_000, "idempotency_key": "too-much"})
    assert _assert_problem(answer, 409) == "REFUND_EXCEEDS_PAYMENT"
    assert world.fingerprint() == before


# --- bodies: size, shape and content type -----------------------------------------------------

def test_attack_oversize_body(world: World) -> None:
    cap = world.authority.settings.request_max_bytes
    before = world.row_counts()
    headers = {**world.admin, "content-type": "application/json"}
    declared = world.client.post("/v1/persons", headers=headers, content=b" " * (cap + 1))
    assert _assert_problem(declared, 413) == "REQUEST_TOO_LARGE"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap counts what arrives
        for _ in range(cap // 65_536 + 2):
            yield b" " * 65_536

    streamed = world.client.post("/v1/persons", headers=headers, content=chunks())
    assert _assert_problem(streamed, 413) == "REQUEST_TOO_LARGE"
    lying = world.client.post("/v1/persons", headers={**headers, "content-length": "-1"},
                              content=b"")
    assert _assert_problem(lying, 400) == "BAD_REQUEST"
    long_name = world.client.post("/v1/persons", headers=world.admin,
                                  json=_enrol_body(surname="N" * 129))
    assert _assert_problem(long_name, 422) == "VALIDATION_FAILED"
    big_batch = world.client.post("/v1/payments/offline-batch", headers=world.terminal(), json={
        "items": [{"pay_code": "FMC1:1", "amount_fen": 1, "idempotency_key": f"b{i}",
                   "accepted_at": "2027-01-15T08:00:00Z"} for i in range(201)]})
    assert _assert_problem(big_batch, 422) == "VALIDATION_FAILED"
    assert world.row_counts() == before


@pytest.mark.parametrize(("name", "raw"), [
    ("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000),
    ("integer of 5,000 digits", b'{"surname": 1' + b"0" * 5000 + b"}"),
    ("float overflow", b'{"surname": 1e400}'),
    ("invalid UTF-8", b'{"surname": "\xff\xfe"}'),
    ("lone surrogate", b'{"surname": "\\ud800"}'),
    ("empty body", b""),
    ("JSON null", b"null"),
    ("truncated", b'{"surname": "A'),
])
def test_attack_malformed_json_body(world: World, name: str, raw: bytes) -> None:
    before = world.row_counts()
    answer = world.client.post("/v1/persons", content=raw, headers={
        **world.admin, "content-type": "application/json"})
    assert _assert_problem(answer) in {"BAD_REQUEST", "VALIDATION_FAILED"}, name
    assert world.row_counts() == before


@pytest.mark.parametrize("content_type", [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "application/octet-stream",
])
def test_attack_wrong_content_type(world: World, content_type: str) -> None:
    """A JSON body sent under another media type (e.g. a cross-site form post) is refused."""
    before = world.row_counts()
    for path, body, headers in (
        ("/v1/persons", _enrol_body(), world.admin),
        (f"/v1/cards/{world.card_number}/suspend", {"reason": "csrf"}, world.role("supervisor")),
        ("/v1/payments", {"pay_code": world.pay_code(), "amount_fen": 1,
                          "idempotency_key": secrets.token_hex(6)}, world.terminal()),
    ):
        answer = world.client.post(path, content=json.dumps(body).encode(), headers={
            **headers, "content-type": content_type})
        code = _assert_problem(answer)
        assert code in {"VALIDATION_FAILED", "UNSUPPORTED_MEDIA_TYPE"}, (path, code)
    assert world.row_counts() == before
