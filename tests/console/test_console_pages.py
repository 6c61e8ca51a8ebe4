"""The console over HTTP (in-process, fixed clock): sign-in, roles, CSRF, forms, flows."""

from __future__ import annotations

import re
from typing import Any

import pytest
from console_kit import (
    CARD_RE,
    Authority,
    code_of,
    csrf_of,
    enrol,
    enrol_fields,
    error_code,
    field_errors,
    issue,
    issued_card,
    portrait,
)
from fastapi.testclient import TestClient

from cardsvc.api import create_app
from cardsvc.console._auth import PRE_COOKIE, SESSION_COOKIE, SESSION_SECONDS

# --- sign-in and sessions -----------------------------------------------------------------

def test_anonymous_visitor_is_sent_to_sign_in(authority: Authority) -> None:
    answer = authority.client().get("/persons/new")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?next=%2Fpersons%2Fnew"


def test_sign_in_sets_a_strict_httponly_cookie_without_the_token(authority: Authority) -> None:
    client = authority.client()
    page = client.get("/sign-in")
    token = authority.tokens["registrar"]
    answer = client.post("/sign-in", data={"csrf": csrf_of(page.text), "token": token,
                                           "next": "/persons/new"})
    assert answer.status_code == 303 and answer.headers["location"] == "/persons/new"
    cookie = next(value for value in answer.headers.get_list("set-cookie")
                  if value.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain http in tests; https sets it
    assert token not in cookie
    assert client.get("/persons/new").status_code == 200


def test_cookies_are_secure_over_https(authority: Authority) -> None:
    client = TestClient(authority.app, base_url="https://testserver", follow_redirects=False)
    page = client.get("/sign-in")
    assert "Secure" in page.headers["set-cookie"]
    answer = client.post("/sign-in", data={"csrf": csrf_of(page.text),
                                           "token": authority.tokens["auditor"]})
    session = next(value for value in answer.headers.get_list("set-cookie")
                   if value.startswith(SESSION_COOKIE + "="))
    assert "Secure" in session and "HttpOnly" in session


@pytest.mark.parametrize(("token_role", "status", "code"), [
    ("", 422, "REQUIRED"),
    ("not-a-token", 401, "UNAUTHENTICATED"),
    ("cashier", 403, "NO_CONSOLE_ROLE"),
])
def test_sign_in_refusals_show_next_to_the_field(
    authority: Authority, token_role: str, status: int, code: str
) -> None:
    client = authority.client()
    page = client.get("/sign-in")
    token = authority.tokens.get(token_role, token_role)
    answer = client.post("/sign-in", data={"csrf": csrf_of(page.text), "token": token})
    assert answer.status_code == status
    assert field_errors(answer.text) == {"token": code}
    assert SESSION_COOKIE not in client.cookies


def test_unsafe_next_paths_go_home(authority: Authority) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        client = authority.client()
        page = client.get("/sign-in")
        answer = client.post("/sign-in", data={"csrf": csrf_of(page.text), "next": target,
                                               "token": authority.tokens["registrar"]})
        assert answer.headers["location"] == "/"


def test_sign_out_ends_the_session_even_for_a_copied_cookie(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    copied = client.cookies[SESSION_COOKIE]
    page = client.get("/")
    answer = client.post("/sign-out", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?notice=signed_out"
    thief = authority.client()
    thief.cookies.set(SESSION_COOKIE, copied)
    assert thief.get("/").status_code == 303


def test_sign_out_holds_in_every_process_and_after_a_restart(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    copied = client.cookies[SESSION_COOKIE]
    # Another process over the same database and data dir (a second uvicorn worker, or
    # this one after a restart) has never seen this sign-out in memory.
    other_process = create_app(authority.settings, database=authority.database,
                               clock=authority.clock)
    elsewhere = TestClient(other_process, follow_redirects=False)
    elsewhere.cookies.set(SESSION_COOKIE, copied)
    assert elsewhere.get("/").status_code == 200
    client.post("/sign-out", data={"csrf": csrf_of(client.get("/").text)})
    assert elsewhere.get("/").status_code == 303
    restarted = TestClient(create_app(authority.settings, database=authority.database,
                                      clock=authority.clock), follow_redirects=False)
    restarted.cookies.set(SESSION_COOKIE, copied)
    assert restarted.get("/").status_code == 303


def test_sign_out_records_are_purged_once_their_session_would_have_expired(
    authority: Authority,
) -> None:
    from sqlalchemy import func, select

    from cardsvc.models import ConsoleSignOut

    def count() -> int:
        return authority.database.transact(
            lambda session: session.scalar(select(func.count()).select_from(ConsoleSignOut)),
            readonly=True)

    first = authority.signed_in("registrar")
    first.post("/sign-out", data={"csrf": csrf_of(first.get("/").text)})
    assert count() == 1
    authority.clock.advance(SESSION_SECONDS + 1)
    second = authority.signed_in("registrar")
    second.post("/sign-out", data={"csrf": csrf_of(second.get("/").text)})
    assert count() == 1  # the first record went when the second was written


def test_session_expires_after_a_shift(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    assert client.get("/").status_code == 200
    authority.clock.advance(8 * 3600 + 1)
    assert client.get("/").headers["location"].startswith("/sign-in")


def test_tampered_session_cookie_is_ignored(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    value = client.cookies[SESSION_COOKIE]
    _officer_id, rest = value.split(".", 1)
    client.cookies.set(SESSION_COOKIE, "1." + rest)  # claim to be the admin
    assert client.get("/").status_code == 303


# --- roles --------------------------------------------------------------------------------

ROLE_CASES = [
    # (role, method, path, expected status)
    ("registrar", "GET", "/cards/3312345678901234/revoke", 403),
    ("registrar", "POST", "/cards/3312345678901234/revoke", 403),
    ("registrar", "GET", "/audit", 403),
    ("auditor", "GET", "/persons/new", 403),
    ("auditor", "POST", "/persons/new", 403),
    ("auditor", "GET", "/persons/933818198503020017", 403),
    ("auditor", "GET", "/persons/933818198503020017/portrait", 403),
    ("supervisor", "POST", "/persons/933818198503020017/portrait", 403),
    ("supervisor", "GET", "/persons/new", 403),
    ("supervisor", "GET", "/persons/933818198503020017/cards/new", 403),
    ("supervisor", "GET", "/audit", 403),
    ("registrar", "GET", "/keys", 403),
    ("registrar", "POST", "/keys/rotate", 403),
    ("auditor", "GET", "/officers", 403),
    ("registrar", "POST", "/officers", 403),
    ("cashier", "GET", "/audit", 303),  # cannot even sign in: sent to the sign-in page
]


@pytest.mark.parametrize(("role", "method", "path", "status"), ROLE_CASES)
def test_routes_check_the_role(
    authority: Authority, role: str, method: str, path: str, status: int
) -> None:
    client = authority.client() if role == "cashier" else authority.signed_in(role)
    data = {"csrf": csrf_of(client.get("/", follow_redirects=True).text), "reason": "x",
            "confirmed": "1"}
    answer = client.request(method, path, data=data if method == "POST" else None)
    assert answer.status_code == status
    if status == 403:
        assert error_code(answer.text) == "FORBIDDEN"


def test_registrar_gets_a_403_page_for_revoke_and_no_revoke_button(
    authority: Authority,
) -> None:
    client = authority.signed_in("registrar")
    code = code_of(enrol(client))
    number, _ = issued_card(client, code)
    card_page = client.get(f"/cards/{number}").text
    assert 'data-testid="action-revoke"' not in card_page
    before = authority.audit_head()
    answer = client.post(f"/cards/{number}/revoke",
                         data={"csrf": csrf_of(card_page), "reason": "lost", "confirmed": "1"})
    assert answer.status_code == 403 and error_code(answer.text) == "FORBIDDEN"
    assert "supervisor" in answer.text
    assert authority.audit_head() == before
    assert 'data-state="active"' in client.get(f"/cards/{number}").text


def test_auditor_gets_a_403_page_for_enrol_in_their_language(authority: Authority) -> None:
    client = authority.signed_in("auditor", **{"accept-language": "zh-CN,zh;q=0.9,en;q=0.5"})
    answer = client.get("/persons/new")
    assert answer.status_code == 403 and error_code(answer.text) == "FORBIDDEN"
    assert "无权操作" in answer.text and "登记员" in answer.text
    assert '<html lang="zh-CN">' in answer.text


def test_navigation_shows_only_what_the_role_may_do(authority: Authority) -> None:
    expected = {
        "registrar": {"search", "enrol"},
        "supervisor": {"search", "officers", "keys"},
        "auditor": {"audit"},
        "registrar+supervisor": {"search", "enrol", "officers", "keys"},
    }
    for role, links in expected.items():
        client = authority.signed_in(role)
        home = client.get("/", follow_redirects=True).text
        assert set(re.findall(r'data-nav="(\w+)"', home)) == links, role


def test_auditor_lands_on_the_audit_log(authority: Authority) -> None:
    client = authority.signed_in("auditor")
    assert client.get("/").headers["location"] == "/audit"


# --- CSRF ---------------------------------------------------------------------------------

@pytest.mark.parametrize("csrf", ["", "forged", "other-session"])
def test_post_without_the_session_csrf_token_is_refused_and_saves_nothing(
    authority: Authority, csrf: str
) -> None:
    client = authority.signed_in("registrar")
    if csrf == "other-session":
        csrf = csrf_of(authority.signed_in("registrar").get("/persons/new").text)
    before = authority.audit_head()
    answer = client.post("/persons/new", data={"csrf": csrf, **enrol_fields()},
                         files={"portrait": ("p.jpg", portrait(), "image/jpeg")})
    assert answer.status_code == 403 and error_code(answer.text) == "CSRF_FAILED"
    assert authority.audit_head() == before


def test_sign_in_form_needs_its_own_token(authority: Authority) -> None:
    client = authority.client()
    client.get("/sign-in")
    answer = client.post("/sign-in", data={"csrf": "nope", "token": authority.tokens["auditor"]})
    assert answer.status_code == 403 and error_code(answer.text) == "CSRF_FAILED"
    stranger = authority.client()
    page = stranger.get("/sign-in")  # a token minted for another browser's cookie
    client.cookies.set(PRE_COOKIE, "x" * 24)
    answer = client.post("/sign-in", data={"csrf": csrf_of(page.text),
                                           "token": authority.tokens["auditor"]})
    assert answer.status_code == 403


def test_sign_out_needs_csrf(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    assert client.post("/sign-out", data={"csrf": "x"}).status_code == 403
    assert client.get("/").status_code == 200


# --- enrolment ----------------------------------------------------------------------------

def test_enrol_form_reports_every_field_problem_at_once_and_saves_nothing(
    authority: Authority,
) -> None:
    client = authority.signed_in("registrar")
    before = authority.audit_head()
    page = client.get("/persons/new")
    answer = client.post("/persons/new", data={
        "csrf": csrf_of(page.text), "surname": "", "nationality": "XXX",
        "birth_date": "2030-01-01", "sex": "Q", "passport_number": "A!", "passport_country": "",
        "passport_expires": "2020-01-01"}, files={"portrait": ("a.gif", b"GIF89a", "image/gif")})
    assert answer.status_code == 422
    assert field_errors(answer.text) == {
        "surname": "REQUIRED", "nationality": "UNKNOWN_COUNTRY",
        "birth_date": "INVALID_BIRTH_DATE", "sex": "INVALID_SEX",
        "passport_number": "INVALID_PASSPORT_NUMBER", "passport_country": "REQUIRED",
        "passport_expires": "PASSPORT_EXPIRED", "portrait": "PORTRAIT_FORMAT",
    }
    assert 'aria-invalid="true"' in answer.text
    assert authority.audit_head() == before


@pytest.mark.parametrize(("field", "value", "code"), [
    ("birth_date", "02/03/1985", "INVALID_DATE"),
    ("passport_expires", "2031-02-30", "INVALID_DATE"),
    ("surname", "A" * 129, "INVALID_SURNAME"),
    ("given_names", "Bad\u0000Name", "INVALID_GIVEN_NAMES"),
    ("surname", "OKONKWO<<CHIAMAKA", "INVALID_SURNAME"),  # copied from the MRZ
    ("given_names", "Lan 2", "INVALID_GIVEN_NAMES"),
])
def test_enrol_field_checks(authority: Authority, field: str, value: str, code: str) -> None:
    client = authority.signed_in("registrar")
    answer = enrol(client, expect=422, **{field: value})
    assert field_errors(answer.text) == {field: code}


def test_portrait_is_kept_when_another_field_is_wrong(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    answer = enrol(client, expect=422, birth_date="")
    kept = re.search(r'name="portrait_b64" value="([^"]+)"', answer.text)
    assert kept is not None
    fields = {**enrol_fields(), "csrf": csrf_of(answer.text), "portrait_b64": kept.group(1)}
    fixed = client.post("/persons/new", data=fields)
    assert fixed.status_code == 303 and "notice=enrolled" in fixed.headers["location"]
    assert client.get(fixed.headers["location"]).text.count('data-testid="portrait"') == 1


def test_portrait_is_required_and_checked(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    page = client.get("/persons/new")
    answer = client.post("/persons/new", data={"csrf": csrf_of(page.text), **enrol_fields()})
    assert field_errors(answer.text) == {"portrait": "PORTRAIT_REQUIRED"}
    assert field_errors(enrol(client, photo=b"\xff\xd8 not a jpeg", expect=422).text) == {
        "portrait": "PORTRAIT_FORMAT"}


def test_enrol_then_the_same_passport_again_finds_that_person(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    first = code_of(enrol(client))
    again = enrol(client, surname="MOHAMED", birth_date="1985-03-03")
    assert code_of(again) == first
    assert "notice=existing" in again.headers["location"]
    person = client.get(again.headers["location"]).text
    assert 'data-testid="mismatches"' in person


def test_duplicate_page_shows_candidates_side_by_side_and_links(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    first = code_of(enrol(client))
    answer = enrol(client, expect=409, surname="MUHAMMAD", passport_number="B7654321")
    assert re.findall(r'data-testid="candidate" data-code="(\w+)"', answer.text) == [first]
    assert f"/persons/{first}/portrait" in answer.text
    assert "data:image/jpeg;base64," in answer.text  # the new portrait, beside the old
    assert "A1234567" in answer.text and "B7654321" in answer.text
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', answer.text))
    linked = client.post("/persons/new", data={**hidden, "link_to": first})
    assert linked.status_code == 303
    assert linked.headers["location"] == f"/persons/{first}?notice=linked"
    person = client.get(linked.headers["location"]).text
    rows = re.findall(r'<td class="mono">(\w+)</td>', person)
    assert rows == ["B7654321", "A1234567"]  # current first, the old one kept


def test_duplicate_page_confirm_new_makes_a_second_person(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    first = code_of(enrol(client))
    answer = enrol(client, expect=409, surname="MUHAMMAD", passport_number="B7654321")
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', answer.text))
    created = client.post("/persons/new", data={**hidden, "confirm_new": "1"})
    assert created.status_code == 303 and "notice=enrolled" in created.headers["location"]
    assert code_of(created) != first


def test_link_to_a_person_of_another_birth_date_is_refused_with_the_form_kept(
    authority: Authority,
) -> None:
    client = authority.signed_in("registrar")
    first = code_of(enrol(client))
    answer = enrol(client, expect=409, surname="MUHAMMAD", passport_number="B7654321")
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', answer.text))
    hidden["birth_date"] = "1985-03-04"
    before = authority.audit_head()
    refused = client.post("/persons/new", data={**hidden, "link_to": first})
    assert refused.status_code == 422
    assert 'data-code="LINK_MISMATCH"' in refused.text
    assert 'value="MUHAMMAD"' in refused.text and 'name="portrait_b64"' in refused.text
    assert authority.audit_head() == before


def test_registrar_replaces_the_portrait(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    code = code_of(enrol(client))
    page = client.get(f"/persons/{code}")
    old = re.search(r'portrait\?v=([\w-]+)', page.text)
    assert old is not None
    empty = client.post(f"/persons/{code}/portrait", data={"csrf": csrf_of(page.text)})
    assert empty.status_code == 422 and field_errors(empty.text) == {
        "portrait": "PORTRAIT_REQUIRED"}
    bad = client.post(f"/persons/{code}/portrait", data={"csrf": csrf_of(page.text)},
                      files={"portrait": ("x.png", b"not an image", "image/png")})
    assert field_errors(bad.text) == {"portrait": "PORTRAIT_FORMAT"}
    done = client.post(f"/persons/{code}/portrait", data={"csrf": csrf_of(page.text)},
                       files={"portrait": ("p.png", portrait((10, 150, 10), fmt="PNG"),
                                           "image/png")})
    assert done.headers["location"] == f"/persons/{code}?notice=portrait_set"
    new = re.search(r'portrait\?v=([\w-]+)', client.get(f"/persons/{code}").text)
    assert new is not None and new.group(1) != old.group(1)
    jpeg = client.get(f"/persons/{code}/portrait")
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"


# --- search -------------------------------------------------------------------------------

def test_search_by_code_any_passport_and_name_variant(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    code = code_of(enrol(client))
    other = code_of(enrol(client, surname="OKAFOR", given_names="Chinedu", nationality="NGA",
                          passport_country="NGA", passport_number="N0000001"))
    page = client.get(f"/persons/{code}/passports/new")
    client.post(f"/persons/{code}/passports/new", data={
        "csrf": csrf_of(page.text), "number": "C5550001", "country": "EGY",
        "expires": "2035-01-01", "surname": "MOHAMMED", "given_names": "Ahmed Ali",
        "nationality": "EGY"})
    supervisor = authority.signed_in("supervisor")
    for query, expected in [(code, [code]), ("a1234567", [code]), ("C5550001", [code]),
                            ("muhamad ahmed", [code]), ("Okafor", [other]),
                            ("nobody", []), ("", [other, code])]:
        html = supervisor.get("/", params={"q": query}).text
        assert re.findall(r'href="/persons/(\w+)" class="mono"', html) == expected, query


def test_search_results_are_paginated(authority: Authority) -> None:
    authority.seed_persons(23)
    client = authority.signed_in("registrar")
    first = client.get("/", params={"q": ""}).text
    assert len(re.findall(r'data-testid="result-link"', first)) == 20
    assert "/?q=&amp;page=2" in first
    second = client.get("/", params={"q": "", "page": "2"}).text
    assert len(re.findall(r'data-testid="result-link"', second)) == 3
    assert 'data-testid="next-page"' not in second


# --- passports ----------------------------------------------------------------------------

def test_passport_change_keeps_the_code_and_reissues_codes_on_name_change(
    authority: Authority,
) -> None:
    client = authority.signed_in("registrar")
    code = code_of(enrol(client))
    number, _ = issued_card(client, code)
    page = client.get(f"/persons/{code}/passports/new")
    assert 'value="MOHAMMED"' in page.text
    answer = client.post(f"/persons/{code}/passports/new", data={
        "csrf": csrf_of(page.text), "number": "D1112223", "country": "EGY",
        "expires": "2036-01-01", "surname": "MOHAMMED EL-SAYED", "given_names": "Ahmed Ali",
        "nationality": "EGY"})
    assert answer.status_code == 200
    assert re.findall(r'data-card="(\d+)"', answer.text) == [number]
    assert CARD_RE.search(answer.text) is not None
    person = client.get(f"/persons/{code}").text
    assert "MOHAMMED EL-SAYED" in person and "D1112223" in person and "A1234567" in person


def test_passport_form_errors_and_a_passport_of_someone_else(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    code = code_of(enrol(client))
    enrol(client, surname="OKAFOR", nationality="NGA", passport_country="NGA",
          passport_number="N0000001")
    page = client.get(f"/persons/{code}/passports/new")
    base = {"csrf": csrf_of(page.text), "surname": "MOHAMMED", "given_names": "Ahmed Ali",
            "nationality": "EGY", "country": "EGY", "expires": "2036-01-01"}
    empty = client.post(f"/persons/{code}/passports/new", data={**base, "number": "",
                                                                 "expires": "bad"})
    assert field_errors(empty.text) == {"number": "REQUIRED", "expires": "INVALID_DATE"}
    taken = client.post(f"/persons/{code}/passports/new",
                        data={**base, "number": "N0000001", "country": "NGA"})
    assert taken.status_code == 409
    assert field_errors(taken.text) == {"number": "PASSPORT_ALREADY_ENROLLED"}


# --- cards --------------------------------------------------------------------------------

def test_issue_shows_the_code_as_text_and_as_a_qr_that_decodes_to_it(
    authority: Authority,
) -> None:
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    from cardsvc.console._qr import qr_matrix

    client = authority.signed_in("registrar")
    code = code_of(enrol(client))
    html = issue(client, code).text
    found = CARD_RE.search(html)
    assert found is not None
    text = found.group(1)
    assert re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){3}", text)
    assert "<svg" in html and f"--code {text}" in html and "--server http://testserver" in html
    assert "no-store" in client.post(f"/persons/{code}/cards/new").headers["cache-control"]
    matrix = qr_matrix(text)
    scale = 8
    image = Image.new("L", (len(matrix) * scale,) * 2, 255)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                image.paste(0, (x * scale, y * scale, (x + 1) * scale, (y + 1) * scale))
    assert [result.text for result in zxingcpp.read_barcodes(image)] == [text]


@pytest.mark.parametrize(("fields", "problems"), [
    ({"entitlements": []}, {"entitlements": "NO_ENTITLEMENT"}),
    ({"entitlements": ["healthcare", "flying"]}, {"entitlements": "UNKNOWN_ENTITLEMENT"}),
    ({"valid_until": "2026-01-01"}, {"valid_until": "INVALID_VALIDITY"}),
    ({"valid_until": "2040-01-01"}, {"valid_until": "INVALID_VALIDITY"}),
    ({"valid_until": ""}, {"valid_until": "REQUIRED"}),
    ({"offline_limit": "-5"}, {"offline_limit": "INVALID_AMOUNT"}),
    ({"offline_limit": "1.234"}, {"offline_limit": "INVALID_AMOUNT"}),
    ({"offline_limit": "200000"}, {"offline_limit": "INVALID_OFFLINE_LIMIT"}),
])
def test_issue_form_checks(authority: Authority, fields: dict[str, Any],
                           problems: dict[str, str]) -> None:
    client = authority.signed_in("registrar")
    code = code_of(enrol(client))
    before = authority.audit_head()
    answer = issue(client, code, expect=422, **fields)
    assert field_errors(answer.text) == problems
    assert authority.audit_head() == before


def test_second_card_needs_replace(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    code = code_of(enrol(client))
    old, _ = issued_card(client, code)
    refused = issue(client, code, expect=409)
    assert field_errors(refused.text) == {"replace_active": "ACTIVE_CARD_EXISTS"}
    replaced = issue(client, code, replace_active="1")
    assert CARD_RE.search(replaced.text) is not None
    assert 'data-state="revoked"' in client.get(f"/cards/{old}").text


def test_new_provisioning_code_for_a_new_phone(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    number, first = issued_card(client, code_of(enrol(client)))
    page = client.get(f"/cards/{number}")
    answer = client.post(f"/cards/{number}/provisioning-code", data={"csrf": csrf_of(page.text)})
    found = CARD_RE.search(answer.text)
    assert answer.status_code == 200 and found is not None and found.group(1) != first


def _change(client: TestClient, number: str, action: str, reason: str,
            confirmed: bool) -> Any:
    page = client.get(f"/cards/{number}/{action}")
    assert page.status_code == 200, page.text
    data = {"csrf": csrf_of(page.text), "reason": reason}
    if confirmed:
        data["confirmed"] = "1"
    return client.post(f"/cards/{number}/{action}", data=data)


def test_suspend_reinstate_revoke_need_a_reason_and_a_confirmation(
    authority: Authority,
) -> None:
    registrar = authority.signed_in("registrar")
    number, _ = issued_card(registrar, code_of(enrol(registrar)))
    supervisor = authority.signed_in("supervisor")
    assert field_errors(_change(supervisor, number, "suspend", "  ", False).text) == {
        "reason": "REQUIRED"}
    before = authority.audit_head()
    review = _change(supervisor, number, "suspend", "passport seized", False)
    assert review.status_code == 200 and 'data-testid="confirm"' in review.text
    assert 'data-testid="confirm-reason">passport seized<' in review.text
    assert authority.audit_head() == before  # nothing happens before the confirmation
    for action, state in [("suspend", "suspended"), ("reinstate", "active"),
                          ("revoke", "revoked")]:
        done = _change(supervisor, number, action, f"reason to {action}", True)
        assert done.status_code == 303, done.text
        card = supervisor.get(done.headers["location"]).text
        assert f'data-testid="card" data-state="{state}"' in card
        assert f"reason to {action}" in card
    assert supervisor.get(f"/cards/{number}/reinstate").status_code == 409
    assert 'data-notice="suspended"' not in supervisor.get(f"/cards/{number}?notice=suspended").text
    assert 'data-testid="action-' not in supervisor.get(f"/cards/{number}").text


def test_unknown_person_and_card_are_404_pages(authority: Authority) -> None:
    client = authority.signed_in("registrar+supervisor")
    for path, code in [("/persons/933818198503020017", "PERSON_NOT_FOUND"),
                       ("/persons/not-a-code", "PERSON_NOT_FOUND"),
                       ("/cards/3300000000000000", "CARD_NOT_FOUND"),
                       ("/cards/3300000000000000/explode", "NOT_FOUND"),
                       ("/console/static/nope.css", "NOT_FOUND")]:
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert error_code(answer.text) == code, path


# --- audit --------------------------------------------------------------------------------

def test_audit_page_shows_entries_and_a_green_chain(authority: Authority) -> None:
    registrar = authority.signed_in("registrar")
    number, _ = issued_card(registrar, code_of(enrol(registrar)))
    auditor = authority.signed_in("auditor")
    page = auditor.get("/audit").text
    assert 'data-testid="chain" data-ok="true"' in page
    actions = re.findall(r'data-action="([\w.]+)"', page)
    assert actions[:2] == ["card.issued", "person.enrolled"]  # newest first
    filtered = auditor.get("/audit", params={"subject": number}).text
    assert re.findall(r'data-subject="(\w+)"', filtered) == [number]


def test_audit_page_turns_red_when_an_entry_was_altered(authority: Authority) -> None:
    from sqlalchemy import update

    from cardsvc.models import AuditEntry

    registrar = authority.signed_in("registrar")
    code_of(enrol(registrar))
    authority.database.transact(lambda session: session.execute(
        update(AuditEntry).where(AuditEntry.seq == 2).values(details='{"edited":true}')))
    page = authority.signed_in("auditor").get("/audit").text
    assert 'data-testid="chain" data-ok="false"' in page


def test_audit_pages(authority: Authority) -> None:
    authority.seed_persons(50)
    auditor = authority.signed_in("auditor")
    first = re.findall(r"<td>(\d+)</td>", auditor.get("/audit").text)
    second = re.findall(r"<td>(\d+)</td>", auditor.get("/audit?page=2").text)
    seqs = [int(seq) for seq in first + second]
    assert seqs == sorted(seqs, reverse=True) and len(first) == 50
    assert seqs[-1] == 1 and len(seqs) == authority.audit_head()


# --- supervisors: keys and officers ------------------------------------------------------

def _key_states(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-kid="(\w+)" data-key-state="(\w+)"', html))


def test_supervisor_rotates_keys_after_a_confirmation(authority: Authority) -> None:
    supervisor = authority.signed_in("supervisor")
    page = supervisor.get("/keys")
    assert _key_states(page.text) == {"k1": "active", "k2": "next"}
    review = supervisor.post("/keys/rotate", data={"csrf": csrf_of(page.text)})
    assert review.status_code == 200 and 'data-testid="confirm"' in review.text
    assert _key_states(supervisor.get("/keys").text) == {"k1": "active", "k2": "next"}
    done = supervisor.post("/keys/rotate", data={"csrf": csrf_of(page.text), "confirmed": "1"})
    assert done.headers["location"] == "/keys?notice=rotated"
    assert _key_states(supervisor.get("/keys").text) == {
        "k1": "retired", "k2": "active", "k3": "next"}
    audit = authority.signed_in("auditor").get("/audit").text
    assert re.findall(r'data-action="([\w.]+)"', audit)[0] == "keys.rotated"


def test_supervisor_adds_an_officer_whose_token_works_until_deactivated(
    authority: Authority,
) -> None:
    supervisor = authority.signed_in("supervisor")
    page = supervisor.get("/officers")
    refused = supervisor.post("/officers", data={"csrf": csrf_of(page.text), "name": " "})
    assert field_errors(refused.text) == {"name": "REQUIRED", "roles": "NO_ROLE"}
    created = supervisor.post("/officers", data={"csrf": csrf_of(page.text),
                                                 "name": "Chen Jing", "roles": ["registrar"]})
    found = re.search(r'data-testid="new-token">([^<]+)<', created.text)
    assert created.status_code == 200 and found is not None
    assert "no-store" in created.headers["cache-control"]
    newcomer = authority.client()
    from console_kit import sign_in

    sign_in(newcomer, found.group(1))
    assert newcomer.get("/persons/new").status_code == 200
    officer_id = re.findall(r'data-officer="(\d+)"', created.text)[-1]
    path = f"/officers/{officer_id}/deactivate"
    review = supervisor.post(path, data={"csrf": csrf_of(page.text)})
    assert 'data-testid="confirm"' in review.text
    assert newcomer.get("/persons/new").status_code == 200
    done = supervisor.post(path, data={"csrf": csrf_of(page.text), "confirmed": "1"})
    assert done.headers["location"] == "/officers?notice=deactivated"
    assert newcomer.get("/persons/new").status_code == 303  # the session ended with it


def test_supervisor_cannot_deactivate_themselves(authority: Authority) -> None:
    supervisor = authority.signed_in("supervisor")
    page = supervisor.get("/officers")
    me = re.search(r'data-testid="officer">Officer Supervisor', page.text)
    assert me is not None
    own_id = next(officer_id for officer_id, name in re.findall(
        r'data-officer="(\d+)"[^>]*>\s*<td>\d+</td><td>([^<]+)</td>', page.text)
        if name == "Officer Supervisor")
    answer = supervisor.post(f"/officers/{own_id}/deactivate",
                             data={"csrf": csrf_of(page.text), "confirmed": "1"})
    assert answer.status_code == 409 and error_code(answer.text) == "OFFICER_IS_YOU"


# --- language and assets ------------------------------------------------------------------

def test_language_switch_by_link_is_remembered(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    assert "Find a person" in client.get("/").text
    chinese = client.get("/?lang=zh")
    assert "查找人员" in chinese.text and "fmc_lang=zh" in chinese.headers["set-cookie"]
    assert "查找人员" in client.get("/").text
    assert "Find a person" in client.get("/?lang=en").text


def test_pages_carry_security_headers_and_only_own_assets(authority: Authority) -> None:
    client = authority.signed_in("registrar")
    answer = client.get("/persons/new")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert re.findall(r'(?:href|src)="(https?:)?//', answer.text) == []
    css = client.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "http" not in css.text and "@import" not in css.text
