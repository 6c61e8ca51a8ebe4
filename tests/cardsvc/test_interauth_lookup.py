"""Looking a person up in other cities (P10): by passport or fuzzy name, the minimal
answer, "not checked" when a city is down, the enrolment's "known in CN-YW", rate
limits, both audit chains without a passport number in clear."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cardsvc_kit import Authority
from city_pair_kit import CityPair, CityTemplate, audit_of, city_pair

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
    assert (single.status_code, single.json()["code"]) == (503, "FEDERATION_NOT_CONFIGURED")


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
