"""Every route checks the role: 401 without or with a bad token, 403 with the wrong role."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cardsvc_kit import Authority
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from cardsvc.api import create_app
from cardsvc.models import AuditEntry, Officer

CODE = "933566198503020011"
CARD = "3300000000000000"
# (method, path, roles allowed)
ROUTES = [
    ("POST", "/v1/persons", {"registrar"}),
    ("GET", f"/v1/persons/{CODE}", {"registrar", "supervisor"}),
    ("GET", "/v1/persons?passport=A1234567&country=NGA", {"registrar", "supervisor"}),
    ("POST", f"/v1/persons/{CODE}/passports", {"registrar"}),
    ("PUT", f"/v1/persons/{CODE}/portrait", {"registrar"}),
    ("GET", "/v1/portraits/AAAAAAAAAAAAAAAAAAAAAA",
     {"terminal", "verifier", "registrar", "supervisor"}),
    ("POST", "/v1/cards", {"registrar"}),
    ("GET", f"/v1/cards/{CARD}", {"registrar", "supervisor"}),
    ("POST", f"/v1/cards/{CARD}/provisioning-codes", {"registrar"}),
    ("POST", f"/v1/cards/{CARD}/revoke", {"supervisor"}),
    ("POST", f"/v1/cards/{CARD}/suspend", {"supervisor"}),
    ("POST", f"/v1/cards/{CARD}/reinstate", {"supervisor"}),
    ("GET", "/v1/audit", {"auditor"}),
    ("POST", "/v1/officers", {"supervisor"}),
    ("GET", "/v1/officers", {"supervisor"}),
    ("POST", "/v1/keys/rotate", {"supervisor"}),
    ("POST", "/v1/officers/999/deactivate", {"supervisor"}),
]
ROLES = ("registrar", "supervisor", "auditor", "cashier", "terminal", "verifier")


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_roles(authority: Authority, method: str, path: str, allowed: set[str]) -> None:
    for headers, expected in (({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                              ({"Authorization": "Basic abc"}, 401)):
        answer = authority.client.request(method, path, headers=headers)
        assert answer.status_code == expected, (headers, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "UNAUTHENTICATED"
        assert answer.headers["www-authenticate"] == "Bearer"
    for role in ROLES:
        answer = authority.client.request(method, path, headers=authority.as_role(role))
        if role in allowed:
            assert answer.status_code not in (401, 403), (role, answer.text)
        else:
            assert answer.status_code == 403, (role, answer.text)
            assert answer.json()["code"] == "FORBIDDEN"


def test_public_routes_need_no_token(authority: Authority) -> None:
    for path in ("/v1/trust-list", "/v1/status-lists", "/v1/status-lists/1", "/v1/keys",
                 "/v1/health", "/v1/countries"):
        assert authority.client.get(path).status_code == 200, path


def test_tokens_are_shown_once_and_stored_as_hashes(authority: Authority) -> None:
    created = authority.client.post("/v1/officers", headers=authority.admin,
                                    json={"name": "Wang Li", "roles": ["registrar"]})
    assert created.status_code == 201
    token = created.json()["token"]
    listing = authority.client.get("/v1/officers", headers=authority.admin).text
    assert token not in listing
    with authority.database.sessions() as session:
        stored = session.scalars(select(Officer.token_hash)).all()
    assert token not in stored and all(len(h) == 64 for h in stored)
    assert authority.client.get("/v1/cards/3300000000000000", headers={
        "Authorization": f"Bearer {token}"}).status_code == 404


def test_unknown_role_is_refused(authority: Authority) -> None:
    answer = authority.client.post("/v1/officers", headers=authority.admin,
                                   json={"name": "x", "roles": ["king"]})
    assert answer.status_code == 422 and answer.json()["code"] == "VALIDATION_FAILED"


def test_oversized_bodies_are_refused_before_reading(authority: Authority) -> None:
    settings = authority.settings.model_copy(update={"request_max_bytes": 10_000})
    client = TestClient(create_app(settings, database=authority.database, clock=authority.clock))
    big = b'{"x": "' + b"a" * 20_000 + b'"}'
    declared = client.post("/v1/persons", content=big, headers=authority.admin)
    assert declared.status_code == 413 and declared.json()["code"] == "REQUEST_TOO_LARGE"

    def chunks() -> Iterator[bytes]:
        yield big[:8000]
        yield big[8000:]

    streamed = client.post("/v1/persons", content=chunks(), headers=authority.admin)
    assert streamed.status_code == 413 and streamed.json()["code"] == "REQUEST_TOO_LARGE"


def test_unknown_routes_and_methods_are_problems(authority: Authority) -> None:
    for method, path, status in (("GET", "/v1/nothing", 404), ("DELETE", "/v1/cards", 405)):
        answer = authority.client.request(method, path, headers=authority.admin)
        assert answer.status_code == status
        assert answer.headers["content-type"] == "application/problem+json"


# POST /v1/persons and /v1/cards check the token in their own transaction (P11); a
# malformed body must still not be judged for a caller without a good token.
@pytest.mark.parametrize("path", ["/v1/persons", "/v1/cards"])
def test_a_bad_token_is_refused_before_a_malformed_body(authority: Authority,
                                                        path: str) -> None:
    malformed = {"surname": 7, "foreigner_code": None}
    for headers, status, code in (
            ({"Authorization": "Bearer wrong"}, 401, "UNAUTHENTICATED"),
            (authority.as_role("auditor"), 403, "FORBIDDEN"),
            (authority.admin, 422, "VALIDATION_FAILED")):
        answer = authority.client.post(path, headers=headers, json=malformed)
        assert (answer.status_code, answer.json()["code"]) == (status, code), headers
        assert "errors" not in answer.json() or status == 422


def test_a_deactivated_officer_is_refused_by_enrolment_and_issue(authority: Authority) -> None:
    person = authority.enrol()
    headers = authority.as_role("registrar")
    officers = authority.client.get("/v1/officers", headers=authority.admin).json()
    officer_id = next(o["id"] for o in officers if o["roles"] == ["registrar"])
    answer = authority.client.post(f"/v1/officers/{officer_id}/deactivate",
                                   headers=authority.admin)
    assert answer.status_code == 200, answer.text
    before = _audit_entries(authority)
    enrol = authority.client.post("/v1/persons", headers=headers, json={
        "surname": "LATE", "given_names": "Officer", "nationality": "NGA",
        "birth_date": "1980-01-01", "sex": "F", "confirm_new": True,
        "passport": {"number": "L1234567", "country": "NGA", "expires": "2031-01-01"}})
    issue = authority.client.post("/v1/cards", headers=headers, json={
        "foreigner_code": person["foreigner_code"], "valid_until": "2030-12-31",
        "entitlements": ["healthcare"]})
    assert [enrol.status_code, issue.status_code] == [401, 401]
    assert _audit_entries(authority) == before


def _audit_entries(authority: Authority) -> int:
    with authority.database.sessions() as session:
        return len(session.scalars(select(AuditEntry.seq)).all())


def test_a_charge_with_a_bad_token_and_a_malformed_body_is_refused_401(
        authority: Authority) -> None:
    for headers, status in (({"Authorization": "Bearer wrong"}, 401),
                            (authority.as_role("auditor"), 403)):
        answer = authority.client.post("/v1/payments", headers=headers, json={"x": 1})
        assert answer.status_code == status


def test_a_malformed_body_while_the_database_is_down_is_503_not_500(
        authority: Authority, monkeypatch: pytest.MonkeyPatch) -> None:
    """The token check before the 422 runs in the validation error's handler: a database
    error there is answered as everywhere else (503), never a 500."""

    def down(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionError("the primary is gone"))

    monkeypatch.setattr(authority.database, "transact", down)
    for path in ("/v1/persons", "/v1/payments"):
        answer = authority.client.post(path, headers={"Authorization": "Bearer wrong"},
                                       json={"x": 1})
        assert (answer.status_code, answer.json()["code"]) == (503, "DATABASE_UNAVAILABLE")
