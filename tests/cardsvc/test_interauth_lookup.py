"""Looking a person up in other cities (P10): by passport or fuzzy name, the minimal
answer, "not checked" when a city is down, the enrolment's "known in CN-YW", rate
limits, both audit chains without a passport number in clear."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cardsvc_kit import Authority
from city_pair_kit import CityPair, CityTemplate, audit_of, city_pair
from console_kit import csrf_of, portrait

from cardsvc.federation.lookup import LookupMatch
from schemas.federation import IssuerState

PASSPORT = {"number": "YW1234567", "country": "NGA", "expires": "2031-01-01"}


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CityTemplate]:
    base = tmp_path_factory.mktemp("cities")
    return {code: CityTemplate.create(code, base) for code in ("CN-YW", "CN-HZ")}


@pytest.fixture
def cities(templates: dict[str, CityTemplate], tmp_path: Path) -> Iterator[CityPair]:
    with city_pair(templates, tmp_path, interauth_lookups_per_minute=5) as pair:
        pair.publish()
        yield pair


def _enrol_in_yiwu(pair: CityPair) -> dict[str, Any]:
    return pair.yw.enrol(surname="OKAFOR", given_names="Chinedu", nationality="NGA",
                         birth_date="1985-03-02", passport=PASSPORT)


def _lookup(city: Authority, body: dict[str, Any], expect: int = 200) -> dict[str, Any]:
    answer = city.client.post("/v1/persons/national-lookup", json=body,
                              headers=city.as_role("registrar"))
    assert answer.status_code == expect, answer.text
    return dict(answer.json())


def test_a_registrar_finds_a_person_known_in_another_city_by_passport(
        cities: CityPair) -> None:
    person = _enrol_in_yiwu(cities)
    found = _lookup(cities.hz, {"passport": {"number": "YW1234567", "country": "NGA"}})
    [yiwu] = found["cities"]
    assert (yiwu["city"], yiwu["status"]) == ("CN-YW", "answered")
    [match] = yiwu["matches"]
    assert match["foreigner_code"] == person["foreigner_code"]
    assert (match["holding_city"], match["state"], match["matched_by"]) == (
        "CN-YW", "active", "passport")
    assert set(match) == {"foreigner_code", "surname", "given_names", "birth_date",
                          "nationality", "portrait_digest", "holding_city", "state",
                          "matched_by", "score"}  # minimal: no passports, no cards
    by_get = cities.hz.client.get("/v1/persons/national-lookup?passport=YW1234567&country=NGA",
                                  headers=cities.hz.as_role("registrar"))
    assert by_get.json()["cities"][0]["matches"][0]["foreigner_code"] == \
        person["foreigner_code"]


def test_a_fuzzy_name_with_birth_date_and_nationality_finds_them(cities: CityPair) -> None:
    person = _enrol_in_yiwu(cities)
    found = _lookup(cities.hz, {"person": {"surname": "OKAFFOR", "given_names": "Chinedu",
                                           "birth_date": "1985-03-02", "nationality": "NGA"}})
    [match] = found["cities"][0]["matches"]
    assert match["foreigner_code"] == person["foreigner_code"]
    assert match["matched_by"] == "name"
    assert _lookup(cities.hz, {"person": {"surname": "OKAFOR", "given_names": "Chinedu",
                                          "birth_date": "1985-03-03", "nationality": "NGA"}}
                   )["cities"][0]["matches"] == []


def test_both_audit_chains_record_it_without_the_passport_number(cities: CityPair) -> None:
    _enrol_in_yiwu(cities)
    _lookup(cities.hz, {"passport": {"number": "YW1234567", "country": "NGA"}})
    [sent] = audit_of(cities.hz, "interauth.lookup.sent")
    [received] = audit_of(cities.yw, "interauth.lookup.received")
    assert sent["subject"] == "CN-YW" and received["subject"] == "CN-HZ"
    assert received["actor"] == "city:CN-HZ"
    for entry in (sent, received):
        assert "YW1234567" not in entry["details"]
    assert '"jti"' in received["details"] and '"query_hash"' in received["details"]
    # the same jti on both sides
    assert json.loads(sent["details"])["jti"] == json.loads(received["details"])["jti"]
    assert json.loads(sent["details"])["query_hash"] != ""


def test_a_city_that_does_not_answer_is_not_checked(cities: CityPair) -> None:
    cities.transport.down.add("yw.test")
    found = _lookup(cities.hz, {"passport": {"number": "YW1234567", "country": "NGA"}})
    assert found["cities"] == [{"city": "CN-YW", "status": "not_checked", "code": None,
                                "matches": []}]
    assert json_details(audit_of(cities.hz, "interauth.lookup.sent"))[0]["status"] == \
        "not_checked"


def json_details(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(entry["details"]) for entry in entries]


def test_a_suspended_city_is_not_asked_and_cannot_ask(cities: CityPair) -> None:
    _enrol_in_yiwu(cities)
    cities.publish(CN_HZ=IssuerState.SUSPENDED)
    found = _lookup(cities.hz, {"passport": {"number": "YW1234567", "country": "NGA"}})
    assert found["cities"][0]["status"] == "refused"
    assert found["cities"][0]["code"] == "INTERAUTH_CALLER_SUSPENDED"
    cities.publish(CN_YW=IssuerState.SUSPENDED)
    assert _lookup(cities.hz, {"passport": {"number": "YW1234567", "country": "NGA"}}
                   )["cities"] == []


def test_each_caller_city_is_rate_limited(cities: CityPair) -> None:
    body = {"passport": {"number": "YW1234567", "country": "NGA"}}
    statuses = [_lookup(cities.hz, body)["cities"][0] for _ in range(6)]
    assert [s["status"] for s in statuses] == ["answered"] * 5 + ["refused"]
    assert statuses[-1]["code"] == "INTERAUTH_RATE_LIMITED"


def test_enrolment_shows_known_in_another_city(cities: CityPair) -> None:
    person = _enrol_in_yiwu(cities)
    body = {"surname": "OKAFOR", "given_names": "Chinedu", "nationality": "NGA",
            "birth_date": "1985-03-02", "sex": "M", "passport": PASSPORT}
    answer = cities.hz.client.post("/v1/persons", json=body, headers=cities.hz.admin)
    assert answer.status_code == 409
    assert answer.json()["code"] == "KNOWN_IN_OTHER_CITY"
    [known] = answer.json()["known_elsewhere"]
    assert (known["city"], known["foreigner_code"]) == ("CN-YW", person["foreigner_code"])
    # the same passport is the same person: confirm_new does not make a second code
    again = cities.hz.client.post("/v1/persons", json={**body, "confirm_new": True},
                                  headers=cities.hz.admin)
    assert again.json()["code"] == "KNOWN_IN_OTHER_CITY"
    # a similar name only: the officer may confirm a new person
    other = {**body, "surname": "OKAFFOR",
             "passport": {**PASSPORT, "number": "HZ7654321"}}
    refused = cities.hz.client.post("/v1/persons", json=other, headers=cities.hz.admin)
    assert refused.json()["code"] == "KNOWN_IN_OTHER_CITY"
    created = cities.hz.client.post("/v1/persons", json={**other, "confirm_new": True},
                                    headers=cities.hz.admin)
    assert created.status_code == 201, created.text
    assert int(created.json()["foreigner_code"][14:17]) in range(101, 201)  # Hangzhou's block


def test_lookups_need_a_registrar_and_a_federation(
        cities: CityPair, authority: Authority) -> None:
    body = {"passport": {"number": "YW1234567", "country": "NGA"}}
    answer = cities.hz.client.post("/v1/persons/national-lookup", json=body,
                                   headers=cities.hz.as_role("auditor"))
    assert answer.status_code == 403
    single = authority.client.post("/v1/persons/national-lookup", json=body,
                                   headers=authority.as_role("registrar"))
    assert (single.status_code, single.json()["code"]) == (404, "FEDERATION_NOT_CONFIGURED")


def test_a_bad_lookup_is_refused_with_a_code(cities: CityPair) -> None:
    from cardsvc.federation.interauth import sign_interauth_request
    from cardsvc.services.interchange import interchange_signer

    hz = cities.hz
    signer = hz.database.transact(lambda session: interchange_signer(
        session, keyring=hz.client.app.state.context.keyring,  # type: ignore[attr-defined]
        issuer="CN-HZ", now=hz.clock()), readonly=True)
    for body in (b'{"passport":{"number":"X"}}', b"[]", b"not json", b'{"other":1}'):
        url = "http://yw.test/v1/interauth/person-lookups"
        token = sign_interauth_request(signer=signer, caller="CN-HZ", callee="CN-YW",
                                       method="POST", url=url, body=body, officer_id=None,
                                       reason="test", now=hz.clock.epoch)
        answer = cities.yw.client.post("/v1/interauth/person-lookups", content=body,
                                       headers={"Authorization": f"FMC-Interauth {token}"})
        assert (answer.status_code, answer.json()["code"]) == (422, "LOOKUP_INVALID")


def test_the_console_enrolment_shows_known_in_another_city(cities: CityPair) -> None:
    person = _enrol_in_yiwu(cities)
    client = cities.hz.client
    client.get("/sign-out")
    page = client.get("/sign-in")
    signed = client.post("/sign-in", data={"csrf": csrf_of(page.text),
                                           "token": cities.hz.admin_token, "next": "/"},
                         follow_redirects=False)
    assert signed.status_code == 303, signed.text
    form = client.get("/persons/new")
    answer = client.post("/persons/new", data={
        "csrf": csrf_of(form.text), "surname": "OKAFOR", "given_names": "Chinedu",
        "nationality": "NGA", "birth_date": "1985-03-02", "sex": "M",
        "passport_number": "YW1234567", "passport_country": "NGA",
        "passport_expires": "2031-01-01"},
        files={"portrait": ("photo.jpg", portrait(), "image/jpeg")}, follow_redirects=False)
    assert answer.status_code == 409, answer.text[:500]
    assert 'data-testid="known-elsewhere"' in answer.text
    assert person["foreigner_code"] in answer.text and "CN-YW" in answer.text


# --- another city's answer is data this city checks -------------------------------------

CITIES = frozenset({"CN-YW", "CN-HZ"})
GOOD_MATCH = {"foreigner_code": "933566198503020011", "surname": "OKAFOR",
              "given_names": "Chinedu", "birth_date": "1985-03-02", "nationality": "NGA",
              "portrait_digest": "A" * 22, "holding_city": "CN-YW", "state": "active",
              "matched_by": "passport", "score": 100.0}

HOSTILE_MATCHES = [
    ("not an object", ["a"]),
    ("foreigner code of another shape", {"foreigner_code": "1; DROP TABLE persons"}),
    ("surname with a bidi override", {"surname": "\u202eROFAKO"}),
    ("given names with an escape sequence", {"given_names": "Chi\x1b[2Jnedu"}),
    ("surname of 150 characters", {"surname": "A" * 150}),
    ("surname not a string", {"surname": ["OKAFOR"]}),
    ("birth date not a date", {"birth_date": "1985-13-45"}),
    ("unknown nationality", {"nationality": "XXX"}),
    ("holding city outside the federation", {"holding_city": "EVIL-CITY"}),
    ("unknown state", {"state": "<b>wanted</b>"}),
    ("unknown match kind", {"matched_by": "guess"}),
    ("portrait digest of another shape", {"portrait_digest": "../../etc/passwd"}),
    ("score above 100", {"score": 1e9}),
    ("score not a number", {"score": float("nan")}),
    ("score a boolean", {"score": True}),
]


@pytest.mark.parametrize("change", [c for _, c in HOSTILE_MATCHES],
                         ids=[name for name, _ in HOSTILE_MATCHES])
def test_a_match_this_city_would_not_hold_is_refused(change: Any) -> None:
    unverified = change if isinstance(change, list) else GOOD_MATCH | change
    with pytest.raises(ValueError):
        LookupMatch.from_payload(unverified, cities=CITIES)


def test_a_sound_match_is_kept_as_sent() -> None:
    match = LookupMatch.from_payload(GOOD_MATCH | {"portrait_digest": None}, cities=CITIES)
    assert match.to_payload() == GOOD_MATCH | {"portrait_digest": None}


def _answering_as(pair: CityPair, monkeypatch: pytest.MonkeyPatch, status: int,
                  body: Any) -> None:
    """Yiwu's answers to lookups replaced (a bug there, or a man in the middle)."""
    honest = pair.transport.handle_request

    def handle(request: httpx.Request) -> httpx.Response:
        answer = honest(request)
        if request.url.host == "yw.test" and request.url.path.endswith("/person-lookups"):
            return httpx.Response(status, json=body, request=request)
        return answer

    monkeypatch.setattr(pair.transport, "handle_request", handle)


@pytest.mark.parametrize(("status", "body", "code"), [
    (200, {"matches": [GOOD_MATCH | {"surname": "\u202eROFAKO"}]}, "BAD_ANSWER"),
    (200, {"matches": [GOOD_MATCH | {"holding_city": "EVIL-CITY"}]}, "BAD_ANSWER"),
    (409, {"code": "\x1b[31mACCEPTED\x1b[0m"}, "409"),
    (409, {"code": "X" * 5000}, "409"),
    (409, {"code": {"nested": 1}}, "409"),
    (403, {"code": "INTERAUTH_CALLER_SUSPENDED"}, "INTERAUTH_CALLER_SUSPENDED"),
], ids=["hidden characters in a name", "a city outside the federation", "escape codes as the"
        " refusal's code", "a 5,000-character code", "a code that is not text", "a sound code"])
def test_attack_another_city_answers_a_lookup_with_what_this_city_would_not_hold(
        cities: CityPair, monkeypatch: pytest.MonkeyPatch, status: int, body: Any,
        code: str) -> None:
    _answering_as(cities, monkeypatch, status, body)
    found = _lookup(cities.hz, {"passport": {"number": "YW1234567", "country": "NGA"}})
    assert found["cities"] == [{"city": "CN-YW", "status": "refused", "code": code,
                                "matches": []}]
    assert json_details(audit_of(cities.hz, "interauth.lookup.sent"))[0]["status"] == \
        "refused"
