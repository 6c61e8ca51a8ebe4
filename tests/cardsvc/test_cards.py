"""Issuing cards and changing their state; the status list follows in the same transaction."""

from __future__ import annotations

import re
import secrets

import pytest
from cardsvc_kit import Authority, device_key
from sqlalchemy import select

from cardsvc.models import Card, StatusEntry
from cardsvc.services._foreigner_code import check_character
from cardsvc.services.cards import luhn_check_digit
from schemas import StatusListClaims
from schemas._jose import parse_json_object, split_compact


def _decoded_list(authority: Authority, list_id: str = "1") -> StatusListClaims:
    jwt = authority.client.get(f"/v1/status-lists/{list_id}").text
    return StatusListClaims.from_payload(parse_json_object(split_compact(jwt)[2]))


def test_issue_gives_a_luhn_card_number_a_status_entry_and_a_one_time_code(
    authority: Authority,
) -> None:
    person = authority.enrol()
    issued = authority.issue(person["foreigner_code"], offline_limit_fen=5000)
    number = issued["card_number"]
    assert re.fullmatch(r"33[0-9]{14}", number) and luhn_check_digit(number[:-1]) == number[-1]
    assert re.fullmatch(r"([0-9A-HJKMNP-TV-Z]{4}-){3}[0-9A-HJKMNP-TV-Z]{4}",
                        issued["provisioning_code"])
    card = issued["card"]
    assert card["state"] == "active" and card["provisioned"] is False
    assert card["offline_limit_fen"] == 5000
    assert card["entitlements"] == ["healthcare", "education", "social_insurance", "payment"]
    with authority.database.sessions() as session:
        entry = session.get(StatusEntry, (card["status"]["list_id"], card["status"]["index"]))
        assert entry is not None and entry.status == 0
    stored = authority.client.get(f"/v1/cards/{number}", headers=authority.admin).json()
    assert stored == card


@pytest.mark.parametrize(("steps", "final", "bit"), [
    (["suspend"], "suspended", 2),
    (["suspend", "reinstate"], "active", 0),
    (["revoke"], "revoked", 1),
    (["suspend", "revoke"], "revoked", 1),
])
def test_state_changes_set_the_status_bit(
    authority: Authority, steps: list[str], final: str, bit: int
) -> None:
    person = authority.enrol()
    card = authority.issue(person["foreigner_code"])["card"]
    for step in steps:
        authority.revoke(card["card_number"], step)
    stored = authority.client.get(f"/v1/cards/{card['card_number']}",
                                  headers=authority.admin).json()
    assert stored["state"] == final
    assert _decoded_list(authority).statuses.get(card["status"]["index"]) == bit


@pytest.mark.parametrize(("steps", "refused", "code"), [
    ([], "reinstate", "CARD_ACTIVE"),
    (["suspend"], "suspend", "CARD_SUSPENDED"),
    (["revoke"], "reinstate", "CARD_REVOKED"),
    (["revoke"], "revoke", "CARD_REVOKED"),
])
def test_impossible_transitions_are_409(
    authority: Authority, steps: list[str], refused: str, code: str
) -> None:
    card = authority.issue(authority.enrol()["foreigner_code"])["card"]
    for step in steps:
        authority.revoke(card["card_number"], step)
    answer = authority.client.post(f"/v1/cards/{card['card_number']}/{refused}",
                                   headers=authority.admin, json={"reason": "x"})
    assert answer.status_code == 409 and answer.json()["code"] == code


def test_one_usable_card_per_person_unless_replaced(authority: Authority) -> None:
    code = authority.enrol()["foreigner_code"]
    first = authority.issue(code)
    refused = authority.client.post("/v1/cards", headers=authority.admin, json={
        "foreigner_code": code, "entitlements": [], "valid_until": "2029-01-01"})
    assert refused.status_code == 409 and refused.json()["code"] == "ACTIVE_CARD_EXISTS"
    second = authority.issue(code, replace_active=True, entitlements=["healthcare"])
    old = authority.client.get(f"/v1/cards/{first['card_number']}", headers=authority.admin)
    assert old.json()["state"] == "revoked"
    assert second["card"]["state"] == "active"
    # The old card's provisioning code died with it.
    authority.provision(first["provisioning_code"], device_key(1), expect=410)


@pytest.mark.parametrize(("change", "status", "code"), [
    ({"valid_until": "2027-01-15"}, 422, "INVALID_VALIDITY"),  # today
    ({"valid_until": "2040-01-01"}, 422, "INVALID_VALIDITY"),
    ({"entitlements": ["flying"]}, 422, "VALIDATION_FAILED"),
    ({"offline_limit_fen": -1}, 422, "VALIDATION_FAILED"),
    ({"foreigner_code": "93315619990101001" + check_character("93315619990101001")}, 404,
     "PERSON_NOT_FOUND"),
])
def test_bad_issue_requests(authority: Authority, change: dict[str, object], status: int,
                            code: str) -> None:
    body = {"foreigner_code": authority.enrol()["foreigner_code"],
            "entitlements": ["healthcare"], "valid_until": "2030-01-01"} | change
    answer = authority.client.post("/v1/cards", headers=authority.admin, json=body)
    assert answer.status_code == status and answer.json()["code"] == code


def test_unknown_card_is_404(authority: Authority) -> None:
    for path in ("/v1/cards/3300000000000000", "/v1/cards/3300000000000000/revoke"):
        answer = (authority.client.get(path, headers=authority.admin) if "revoke" not in path
                  else authority.client.post(path, headers=authority.admin, json={}))
        assert answer.status_code == 404 and answer.json()["code"] == "CARD_NOT_FOUND"


def test_every_card_has_exactly_its_status_entries(authority: Authority) -> None:
    for _ in range(3):
        authority.issue(authority.enrol()["foreigner_code"])
    with authority.database.sessions() as session:
        for card in session.scalars(select(Card)):
            entries = session.scalars(select(StatusEntry).where(StatusEntry.card_id == card.id))
            assert [(e.list_id, e.idx) for e in entries] == [
                (card.status_list_id, card.status_index)]


def test_a_new_card_whose_drawn_status_entry_is_taken_gets_another(
    authority: Authority, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The card is inserted carrying a drawn entry; if another card holds that entry, it
    gets a free one, and no two cards share an entry."""
    first = authority.issue(authority.enrol()["foreigner_code"])["card"]["status"]
    draws = iter([first["index"], first["index"], 7])
    real = secrets.randbelow  # the same module draws card number digits (n=10)
    monkeypatch.setattr(secrets, "randbelow", lambda n: next(draws) if n > 10 else real(n))
    second = authority.issue(authority.enrol()["foreigner_code"])["card"]
    assert (second["status"]["list_id"], second["status"]["index"]) == (first["list_id"], 7)
    with authority.database.sessions() as session:
        card = session.scalar(select(Card).where(Card.card_number == second["card_number"]))
        assert card is not None and (card.status_list_id, card.status_index) == (
            first["list_id"], 7)
        entry = session.get(StatusEntry, (first["list_id"], 7))
        assert entry is not None and entry.card_id == card.id


def test_a_drawn_card_number_already_taken_is_drawn_again(
    authority: Authority, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Card numbers are not looked up before the INSERT (P11): the unique key refuses a
    number that is taken, and the issue runs again with a new draw; nothing is left of the
    refused attempt."""
    first = authority.issue(authority.enrol()["foreigner_code"])["card_number"]
    digits = iter(first[2:-1])  # the first 13 draws of n=10 repeat the first card's number
    real = secrets.randbelow
    monkeypatch.setattr(secrets, "randbelow",
                        lambda n: int(next(digits, real(n))) if n == 10 else real(n))
    person = authority.enrol()["foreigner_code"]
    second = authority.issue(person)
    assert second["card_number"] not in (first, None)
    with authority.database.sessions() as session:
        numbers = list(session.scalars(select(Card.card_number).order_by(Card.id)))
    assert numbers == [first, second["card_number"]]
