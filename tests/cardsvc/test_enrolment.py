"""Enrolment with identity resolution, passport changes, lookups and portraits."""

from __future__ import annotations

from typing import Any

import pytest
from cardsvc_kit import Authority, b64, portrait_bytes
from sqlalchemy import update

from cardsvc.models import CodeSequence
from cardsvc.services.audit import verify_chain
from schemas import b64url_encode
from schemas.credential import portrait_digest


def _person(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "surname": "AL-HASHIMI", "given_names": "Mohammed Ibrahim", "nationality": "SAU",
        "birth_date": "1979-06-30", "sex": "M",
        "passport": {"number": "K1234567", "country": "SAU", "expires": "2029-05-01"},
    }
    body.update(overrides)
    return body


def test_enrolment_assigns_a_code_with_the_section_3_layout(authority: Authority) -> None:
    person = authority.enrol(**_person())
    code = person["foreigner_code"]
    assert code.startswith("933" + "682" + "19790630")  # 9, Zhejiang, Saudi Arabia, birth
    assert code[14:17] == "001"
    assert person["existing"] is False
    assert person["passports"][0] == person["passports"][0] | {
        "number": "K1234567", "country": "SAU", "current": True}
    second = authority.enrol(**_person(surname="OTHER", given_names="Person",
                                       passport={"number": "K7654321", "country": "SAU",
                                                 "expires": "2029-05-01"}))
    assert second["foreigner_code"][14:17] == "002"


def test_the_999th_code_of_a_prefix_is_the_last_and_a_refusal_changes_nothing(
    authority: Authority,
) -> None:
    """One statement takes the next sequence number: at 999 it takes none."""
    first = authority.enrol(**_person())
    prefix = first["foreigner_code"][:14]
    with authority.database.sessions() as session, session.begin():
        session.execute(update(CodeSequence).where(CodeSequence.prefix == prefix)
                        .values(last_value=998))
    last = authority.enrol(**_person(surname="LAST", passport={
        "number": "K0000999", "country": "SAU", "expires": "2029-05-01"}))
    assert last["foreigner_code"][14:17] == "999"
    before = authority.database.transact(verify_chain).entries
    refused = authority.client.post("/v1/persons", headers=authority.admin, json=_person(
        surname="ONE MORE", confirm_new=True,
        passport={"number": "K0001000", "country": "SAU", "expires": "2029-05-01"}))
    assert refused.status_code == 409 and refused.json()["code"] == "FOREIGNER_CODE_EXHAUSTED"
    assert authority.database.transact(verify_chain).entries == before
    with authority.database.sessions() as session:
        assert session.get(CodeSequence, prefix).last_value == 999  # type: ignore[union-attr]
    assert authority.client.get("/v1/persons", headers=authority.admin, params={
        "passport": "K0001000", "country": "SAU"}).status_code == 404


def test_exact_passport_match_returns_the_existing_code(authority: Authority) -> None:
    first = authority.enrol(**_person())
    again = authority.enrol(expect=200, **_person(given_names="Mohammed", confirm_new=True))
    assert again["foreigner_code"] == first["foreigner_code"]
    assert again["existing"] is True
    assert again["mismatches"] == ["name"]


def test_likely_duplicate_comes_back_as_409_with_candidates(authority: Authority) -> None:
    first = authority.enrol(**_person(confirm_new=False))
    body = _person(surname="Al Hashimi", given_names="Muhammad Ibrahim", confirm_new=False,
                   passport={"number": "N9876543", "country": "SAU", "expires": "2034-01-01"})
    answer = authority.client.post("/v1/persons", json=body, headers=authority.admin)
    assert answer.status_code == 409
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == "POSSIBLE_DUPLICATE"
    assert [c["foreigner_code"] for c in problem["candidates"]] == [first["foreigner_code"]]
    assert problem["candidates"][0]["passports"][0]["number"] == "K1234567"

    linked = authority.enrol(expect=200, **body | {"link_to": first["foreigner_code"]})
    assert linked["foreigner_code"] == first["foreigner_code"] and linked["linked"] is True
    current = [p["number"] for p in linked["passports"] if p["current"]]
    assert current == ["N9876543"]


def test_confirm_new_creates_a_second_person(authority: Authority) -> None:
    first = authority.enrol(**_person())
    other = authority.enrol(**_person(given_names="Muhammad Ibrahim", confirm_new=True,
                                      passport={"number": "X5555555", "country": "SAU",
                                                "expires": "2030-01-01"}))
    assert other["foreigner_code"] != first["foreigner_code"]
    assert other["foreigner_code"][:17].startswith(first["foreigner_code"][:14])


def test_other_nationality_or_birth_date_is_not_a_candidate(authority: Authority) -> None:
    authority.enrol(**_person(confirm_new=False))
    for change in ({"nationality": "EGY"}, {"birth_date": "1979-06-29"}):
        body = _person(confirm_new=False, **change,
                       passport={"number": "Z" + change.popitem()[1][-3:] + "4444",
                                 "country": "SAU", "expires": "2030-01-01"})
        answer = authority.client.post("/v1/persons", json=body, headers=authority.admin)
        assert answer.status_code == 201, answer.text


def test_passport_change_keeps_the_code_and_old_passport_still_finds_the_person(
    authority: Authority,
) -> None:
    person = authority.enrol(**_person())
    code = person["foreigner_code"]
    answer = authority.client.post(f"/v1/persons/{code}/passports", headers=authority.admin,
                                   json={"number": "M0000001", "country": "SAU",
                                         "expires": "2036-01-01"})
    assert answer.status_code == 200, answer.text
    changed = answer.json()
    assert changed["foreigner_code"] == code and changed["added"] is True
    assert [(p["number"], p["current"]) for p in changed["passports"]] == [
        ("K1234567", False), ("M0000001", True)]
    for number in ("K1234567", "M0000001", "k123 4567"):
        found = authority.client.get("/v1/persons", headers=authority.admin,
                                     params={"passport": number, "country": "sau"})
        assert found.status_code == 200, found.text
        assert found.json()["foreigner_code"] == code
    missing = authority.client.get("/v1/persons", headers=authority.admin,
                                   params={"passport": "K1234567", "country": "EGY"})
    assert missing.status_code == 404 and missing.json()["code"] == "PERSON_NOT_FOUND"


def test_a_passport_cannot_belong_to_two_people(authority: Authority) -> None:
    one = authority.enrol(**_person())
    two = authority.enrol(**_person(surname="SECOND", given_names="Person",
                                    passport={"number": "S2222222", "country": "SAU",
                                              "expires": "2030-01-01"}))
    answer = authority.client.post(f"/v1/persons/{two['foreigner_code']}/passports",
                                   headers=authority.admin,
                                   json={"number": "K1234567", "country": "SAU",
                                         "expires": "2030-01-01"})
    assert answer.status_code == 409
    assert answer.json()["code"] == "PASSPORT_ALREADY_ENROLLED"
    assert answer.json()["foreigner_code"] == one["foreigner_code"]


@pytest.mark.parametrize(("change", "code"), [
    ({"nationality": "XYZ"}, "UNKNOWN_COUNTRY"),
    ({"passport": {"number": "K1", "country": "SAU", "expires": "2030-01-01"}},
     "VALIDATION_FAILED"),
    ({"birth_date": "2099-01-01"}, "INVALID_BIRTH_DATE"),
    ({"passport": {"number": "K1234567", "country": "SAU", "expires": "2027-01-14"}},
     "PASSPORT_EXPIRED"),
    ({"sex": "Q"}, "VALIDATION_FAILED"),
    ({"surname": "A\u0000B"}, "VALIDATION_FAILED"),
    ({"surname": "A\u200eB"}, "INVALID_SURNAME"),
    ({"surname": "   "}, "VALIDATION_FAILED"),
    ({"surname": "OKONKWO<<CHIAMAKA"}, "INVALID_SURNAME"),  # the MRZ, not the printed name
    ({"surname": "<b>Lan</b>"}, "INVALID_SURNAME"),
    ({"given_names": "Holder 12"}, "INVALID_GIVEN_NAMES"),
    ({"link_to": "12345"}, "VALIDATION_FAILED"),
    ({"link_to": "933566198503020012"}, "PERSON_NOT_FOUND"),  # bad check character
    ({"link_to": "933566198503020011"}, "PERSON_NOT_FOUND"),
    ({"unexpected": 1}, "VALIDATION_FAILED"),
])
def test_bad_enrolments_are_refused_with_a_code(
    authority: Authority, change: dict[str, Any], code: str
) -> None:
    answer = authority.client.post("/v1/persons", json=_person(**change), headers=authority.admin)
    assert answer.status_code in (404, 422), answer.text
    assert answer.json()["code"] == code


def test_portrait_is_reencoded_and_its_digest_is_recorded(authority: Authority) -> None:
    person = authority.enrol(**_person(portrait=b64(portrait_bytes("PNG"))))
    digest = person["portrait_digest"]
    assert digest is not None
    image = authority.client.get(f"/v1/portraits/{digest}", headers=authority.as_role("terminal"))
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content[:3] == b"\xff\xd8\xff"
    assert b64url_encode(portrait_digest(image.content)) == digest


@pytest.mark.parametrize(("image", "code"), [
    pytest.param(portrait_bytes("GIF"), "PORTRAIT_FORMAT", id="gif"),
    pytest.param(portrait_bytes("BMP"), "PORTRAIT_FORMAT", id="bmp"),
    pytest.param(portrait_bytes("PNG")[:60], "PORTRAIT_INVALID", id="truncated-png"),
    pytest.param(b"not an image at all", "PORTRAIT_FORMAT", id="text"),
    pytest.param(portrait_bytes("PNG", size=(8, 8)), "PORTRAIT_INVALID", id="tiny"),
])
def test_bad_portraits_are_refused(authority: Authority, image: bytes, code: str) -> None:
    answer = authority.client.post("/v1/persons", headers=authority.admin,
                                   json=_person(portrait=b64(image)))
    assert answer.status_code == 422 and answer.json()["code"] == code


def test_portrait_size_cap(authority: Authority) -> None:
    authority.settings.portrait_max_bytes = 1000
    answer = authority.client.post("/v1/persons", headers=authority.admin,
                                   json=_person(portrait=b64(portrait_bytes("PNG", (400, 400)))))
    assert answer.status_code == 422 and answer.json()["code"] == "PORTRAIT_TOO_LARGE"
    assert authority.client.get("/v1/persons", headers=authority.admin, params={
        "passport": "K1234567", "country": "SAU"}).status_code == 404  # nothing was enrolled


def test_portrait_can_be_replaced(authority: Authority) -> None:
    person = authority.enrol(**_person())
    answer = authority.client.put(f"/v1/persons/{person['foreigner_code']}/portrait",
                                  headers=authority.admin,
                                  json={"portrait": b64(portrait_bytes("JPEG"))})
    assert answer.status_code == 200 and answer.json()["portrait_digest"] is not None
