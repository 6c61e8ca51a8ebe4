"""Fuzzing the authority's HTTP API bodies with hypothesis: bounded in CI, longer with
`make fuzz` (FMC_FUZZ_EXAMPLES).

Bodies are valid-shaped (every field right), one field off (dropped, garbage, an extra
member), every field garbage, any JSON value at all, or raw bytes. Whatever arrives, the
answer is never a 500; a 4xx is problem+json with a ``code`` and leaves every table as it
was. The number of inputs tried per route is printed at the end of the run.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

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
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from cardsvc.models import Base
from keys import Ed25519Signer, sign_presentation
from schemas import b64url_encode
from support import count_fuzz_input

pytestmark = pytest.mark.fuzz

INJECTIONS = ["' OR '1'='1", "'; DROP TABLE persons; --", "../../etc/passwd", "%00", "\x00",
              "<script>", "{{7*7}}", "A" * 300, "", " ", "\u202e", "😀", "\ud7ff"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
TEXT = st.text(max_size=60) | st.sampled_from(INJECTIONS)
GARBAGE = JSON_VALUES | TEXT
# Valid-shaped values (the service still judges them: unknown countries, future birth
# dates, names of odd scripts); garbage comes from spoiling a body (``bodies``).
PRINTABLE = st.characters(exclude_categories=("Cs", "Cc"))
NAMES = st.text(PRINTABLE, min_size=1, max_size=40) | st.sampled_from(
    [i for i in INJECTIONS if i.strip() and i.isprintable() and len(i) < 128])
COUNTRIES = st.sampled_from(["NGA", "GHA", "SEN", "CHN", "USA", "nga", "XXX", "ZZZ"])
DAYS = st.dates(date(1900, 1, 1), date(2200, 12, 31)).map(date.isoformat)
PASSPORT_NUMBERS = st.from_regex(r"[A-Z0-9][A-Z0-9 -]{3,22}[A-Z0-9]", fullmatch=True)
ENTITLEMENTS = st.lists(st.sampled_from(["healthcare", "education", "social_insurance",
                                         "public_transport", "government_services",
                                         "payment"]), max_size=7)
AMOUNTS = (st.integers(1, 20_000) | st.integers(1, 500)
           | st.sampled_from([0, -1, 10_000_000, 10_000_001, 2**63]))
KEYS = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
FOREIGNER_CODES = st.from_regex(r"9[0-9]{16}[0-9X]", fullmatch=True)
_PNG = b64(portrait_bytes(size=(24, 32)))


@st.composite
def bodies(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> Any:
    """A body shaped like ``fields`` (valid values drawn from each strategy), then spoilt."""
    body: dict[str, Any] = {name: draw(strategy) for name, strategy in fields.items()}
    mode = draw(st.sampled_from(["as drawn"] * 5 + ["drop one", "one garbage", "one garbage",
                                                     "extra member", "all garbage",
                                                     "any JSON"]))
    if mode == "any JSON":
        return draw(JSON_VALUES)
    if mode == "all garbage":
        return {name: draw(GARBAGE) for name in body}
    if body and mode in ("drop one", "one garbage"):
        name = draw(st.sampled_from(sorted(body)))
        if mode == "drop one":
            del body[name]
        else:
            body[name] = draw(GARBAGE)
    if mode == "extra member":
        body[draw(st.text(max_size=12))] = draw(GARBAGE)
    return body


@dataclass
class Target:
    authority: Authority
    person_code: str
    card_number: str
    state_card_numbers: list[str]  # revoked, suspended and reinstated by the fuzzer
    terminal: dict[str, str]
    pay_credential: str
    payment_id: str
    device: Ed25519Signer
    codes: Iterator[str]  # unused provisioning codes

    def row_counts(self) -> dict[str, int]:
        # A pay code refused online is remembered (never settles offline): intended.
        names = [table.name for table in Base.metadata.sorted_tables
                 if table.name != "pay_codes_seen_online"]
        query = " UNION ALL ".join(f"SELECT '{n}', COUNT(*) FROM {n}" for n in names)
        with self.authority.database.sessions() as session:
            return {str(name): int(count) for name, count in session.execute(text(query))}


def _target(authority: Authority) -> Target:
    client, admin = authority.client, authority.admin
    person = authority.enrol()
    device = device_key(200)
    bundle = authority.card_with_phone(device)
    merchant = client.post("/v1/merchants", headers=admin, json={"name": "Fuzz Mart"}).json()
    terminal = client.post(f"/v1/merchants/{merchant['merchant_id']}/terminals", headers=admin,
                           json={"name": "till"}).json()
    headers = {"Authorization": f"Bearer {terminal['token']}"}
    client.post(f"/v1/accounts/{bundle['card_number']}/topups", headers=admin,
                json={"amount_fen": 10_000_000, "idempotency_key": "fuzz-topup"})
    paid = client.post("/v1/payments", headers=headers, json={
        "pay_code": sign_presentation(bundle["credentials"]["pay"], device,
                                      proof_time=authority.clock.epoch - 59, purpose="pay"),
        "amount_fen": 1_000_000, "idempotency_key": "fuzz-pay"})
    assert paid.status_code == 201, paid.text

    spare = authority.issue(authority.enrol()["foreigner_code"])["card_number"]

    def codes() -> Iterator[str]:  # each new code withdraws the one before
        while True:
            answer = client.post(f"/v1/cards/{spare}/provisioning-codes", headers=admin)
            yield answer.json()["provisioning_code"]

    state_cards = [authority.issue(authority.enrol()["foreigner_code"])["card_number"]
                   for _ in range(4)]
    return Target(authority, person["foreigner_code"], bundle["card_number"], state_cards, headers,
                  bundle["credentials"]["pay"], paid.json()["payment_id"], device, codes())


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    base = tmp_path_factory.mktemp("fuzz-api")
    template = Template.create("sqlite", base)
    try:
        with authority_from(template, base) as authority:
            yield _target(authority)
    finally:
        template.drop()


def _send(target: Target, route: str, path: str, body: Any, headers: dict[str, str] | None,
          *, raw: bytes | None = None) -> None:
    count_fuzz_input(f"api:{route}")
    before = target.row_counts()
    client = target.authority.client
    if raw is not None:
        answer = client.post(path, content=raw, headers={
            **(headers or {}), "content-type": "application/json"})
    else:
        answer = client.post(path, json=body, headers=headers)
    assert answer.status_code < 500, (route, body, answer.text)
    if answer.status_code >= 400:
        assert answer.headers["content-type"] == "application/problem+json", answer.text
        code = answer.json().get("code")
        assert isinstance(code, str) and code, answer.text
        assert target.row_counts() == before, (route, body, answer.text)
    else:
        assert isinstance(answer.json(), dict)


# --- the routes -------------------------------------------------------------------------------

PASSPORTS = st.fixed_dictionaries({"number": PASSPORT_NUMBERS, "country": COUNTRIES,
                                   "expires": DAYS})


@given(bodies({"surname": NAMES, "given_names": NAMES, "nationality": COUNTRIES,
               "birth_date": st.dates(date(1900, 1, 1), date(2030, 1, 1)).map(date.isoformat),
               "sex": st.sampled_from(["M", "F", "X"]), "passport": PASSPORTS,
               "confirm_new": st.booleans()}),
       st.sampled_from([None, "portrait", "link_to"]), st.data())
def test_fuzz_api_enrol(target: Target, body: Any, extra: str | None, data: st.DataObject) -> None:
    if isinstance(body, dict) and extra == "portrait":
        body["portrait"] = data.draw(st.just(_PNG) | st.binary(max_size=300).map(b64) | TEXT)
    elif isinstance(body, dict) and extra == "link_to":
        body["link_to"] = data.draw(st.just(target.person_code) | FOREIGNER_CODES | TEXT)
    _send(target, "POST /v1/persons", "/v1/persons", body, target.authority.admin)


@given(st.just(None) | TEXT.filter(lambda s: "/" not in s and "?" not in s and "#" not in s),
       bodies({"number": PASSPORT_NUMBERS, "country": COUNTRIES, "expires": DAYS}),
       st.sampled_from([None, "surname", "given_names", "nationality"]), st.data())
def test_fuzz_api_passport_change(target: Target, unverified_code: str | None, body: Any,
                                  extra: str | None, data: st.DataObject) -> None:
    code = target.person_code if unverified_code is None else unverified_code
    if isinstance(body, dict) and extra is not None:
        body[extra] = data.draw(COUNTRIES if extra == "nationality" else NAMES)
    _send(target, "POST /v1/persons/{code}/passports", f"/v1/persons/{_segment(code)}/passports",
          body, target.authority.admin)


@given(bodies({"foreigner_code": st.just("") | FOREIGNER_CODES, "entitlements": ENTITLEMENTS,
               "valid_until": st.dates(date(2027, 1, 10), date(2040, 1, 1)).map(date.isoformat)
               | DAYS}),
       st.sampled_from([None, "offline_limit_fen", "replace_active"]), st.data())
def test_fuzz_api_issue_card(target: Target, body: Any, extra: str | None,
                             data: st.DataObject) -> None:
    if isinstance(body, dict):
        if body.get("foreigner_code") == "":
            body["foreigner_code"] = target.person_code
        if extra is not None:
            body[extra] = data.draw(AMOUNTS if extra == "offline_limit_fen" else st.booleans())
    _send(target, "POST /v1/cards", "/v1/cards", body, target.authority.admin)


@given(st.sampled_from(["fresh code", "text"]), st.sampled_from(["device", "garbage"]),
       st.data())
def test_fuzz_api_provision(target: Target, code_kind: str, proof_kind: str,
                            data: st.DataObject) -> None:
    code = next(target.codes) if code_kind == "fresh code" else data.draw(
        st.from_regex(r"[A-Z0-9]{4}(-[A-Z0-9]{4}){3}", fullmatch=True) | TEXT)
    phone = device_key(data.draw(st.integers(0, 255)))
    valid = provision_request(code, phone)
    fields: dict[str, st.SearchStrategy[Any]] = {
        "provisioning_code": st.just(code),
        "device_key": st.just(valid["device_key"]) if proof_kind == "device" else
        st.binary(min_size=30, max_size=34).map(b64url_encode),
        "proof": st.just(valid["proof"]) if proof_kind == "device" else
        st.binary(min_size=62, max_size=66).map(b64url_encode),
    }
    _send(target, "POST /v1/provision", "/v1/provision", data.draw(bodies(fields)), None)


@given(st.sampled_from(["suspend", "reinstate"] * 4 + ["revoke"]), st.integers(0, 3),
       st.sampled_from([None, None, None, "text"]), st.data())
def test_fuzz_api_card_state(target: Target, action: str, card: int, path_kind: str | None,
                             data: st.DataObject) -> None:
    number = target.state_card_numbers[card]
    if path_kind is not None:
        number = data.draw(TEXT.filter(lambda s: not set(s) & set("/?#")))
    body = data.draw(st.just(None) | bodies({"reason": NAMES}))
    _send(target, "POST /v1/cards/{no}/revoke|suspend|reinstate",
          f"/v1/cards/{_segment(number)}/{action}", body, target.authority.admin)


_proof_times = itertools.count()


def _pay_code(target: Target, data: st.DataObject) -> str:
    """A real pay code (a new proof time each time), a digit of it changed, or garbage."""
    now = target.authority.clock.epoch
    code = sign_presentation(target.pay_credential, target.device,
                             proof_time=now - next(_proof_times) % 58, purpose="pay")
    kind = data.draw(st.sampled_from(["real", "mutated", "garbage"]))
    if kind == "mutated":
        position = data.draw(st.integers(5, len(code) - 1))
        return code[:position] + data.draw(st.sampled_from("0123456789")) + code[position + 1:]
    return code if kind == "real" else data.draw(TEXT)


@given(st.data())
def test_fuzz_api_payment(target: Target, data: st.DataObject) -> None:
    body = data.draw(bodies({"pay_code": st.just(_pay_code(target, data)),
                             "amount_fen": AMOUNTS, "idempotency_key": KEYS}))
    _send(target, "POST /v1/payments", "/v1/payments", body, target.terminal)


@given(st.data())
def test_fuzz_api_offline_batch(target: Target, data: st.DataObject) -> None:
    fields = {"pay_code": st.just(_pay_code(target, data)), "amount_fen": AMOUNTS,
              "idempotency_key": KEYS,
              "accepted_at": st.sampled_from(["2027-01-15T07:59:00Z", "2027-01-15T07:59:00",
                                              "2027-01-15T15:59:00+08:00",
                                              "2026-01-01T00:00:00Z"])}
    item = st.fixed_dictionaries(fields) | st.fixed_dictionaries(fields) | bodies(fields)
    body = data.draw(bodies({"items": st.lists(item, min_size=1, max_size=3)}))
    _send(target, "POST /v1/payments/offline-batch", "/v1/payments/offline-batch", body,
          target.terminal)


@given(bodies({"amount_fen": AMOUNTS, "idempotency_key": KEYS}), st.booleans())
def test_fuzz_api_topup(target: Target, body: Any, own_card: bool) -> None:
    number = target.card_number if own_card else "3300000000000000"
    _send(target, "POST /v1/accounts/{no}/topups", f"/v1/accounts/{number}/topups", body,
          target.authority.admin)


@given(bodies({"amount_fen": AMOUNTS, "idempotency_key": KEYS, "reason": NAMES}))
def test_fuzz_api_refund(target: Target, body: Any) -> None:
    _send(target, "POST /v1/payments/{id}/refund", f"/v1/payments/{target.payment_id}/refund",
          body, target.terminal)


RAW_ROUTES = ["/v1/persons", "/v1/cards", "/v1/provision", "/v1/payments",
              "/v1/payments/offline-batch", "/v1/officers", "/v1/merchants"]


@given(st.sampled_from(RAW_ROUTES), st.binary(max_size=1500) | st.text(max_size=500).map(
    lambda s: s.encode("utf-8", "surrogatepass")))
def test_fuzz_api_raw_bytes(target: Target, path: str, raw: bytes) -> None:
    headers = target.terminal if path.startswith("/v1/payments") else target.authority.admin
    _send(target, f"raw POST {path}", path, None, headers, raw=raw)


def _segment(unverified: str) -> str:
    return quote(unverified, safe="") or "%20"

