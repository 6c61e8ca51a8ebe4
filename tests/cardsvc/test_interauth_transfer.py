"""Moving a person between cities (P10): prepare, create under the same code, commit
(old cards end ``transferred``, the person ``moved``), abort, idempotent retries after a
lost answer on either step, both audit chains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cardsvc_kit import device_key
from city_pair_kit import CityPair, CityTemplate, audit_of, city_pair

from schemas import b64url_encode
from schemas.provisioning import refresh_proof_message

PASSPORT = {"number": "MV1234567", "country": "NGA", "expires": "2031-01-01"}


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CityTemplate]:
    base = tmp_path_factory.mktemp("cities")
    return {code: CityTemplate.create(code, base) for code in ("CN-YW", "CN-HZ")}


@pytest.fixture
def cities(templates: dict[str, CityTemplate], tmp_path: Path) -> Iterator[CityPair]:
    with city_pair(templates, tmp_path) as pair:
        pair.publish()
        yield pair


def _yiwu_card_holder(pair: CityPair) -> tuple[dict[str, Any], dict[str, Any]]:
    person = pair.yw.enrol(surname="OKAFOR", given_names="Chinedu", nationality="NGA",
                           birth_date="1985-03-02", passport=PASSPORT)
    issued = pair.yw.issue(person["foreigner_code"])
    bundle = pair.yw.provision(issued["provisioning_code"], device_key(7))
    return person, bundle


def _transfer(pair: CityPair, code: str, expect: int = 200, **extra: Any) -> dict[str, Any]:
    answer = pair.hz.client.post("/v1/persons/transfers", headers=pair.hz.as_role("registrar"),
                                 json={"from_city": "CN-YW", "foreigner_code": code, **extra})
    assert answer.status_code == expect, answer.text
    return dict(answer.json())


def _person(city: Any, code: str) -> dict[str, Any]:
    answer = city.client.get(f"/v1/persons/{code}", headers=city.admin)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_move_keeps_the_code_and_history_and_ends_the_old_cards(cities: CityPair) -> None:
    person, bundle = _yiwu_card_holder(cities)
    code = person["foreigner_code"]
    assert cities.yw.check(bundle, device_key(7)) == "OK"
    moved = _transfer(cities, code, transfer_id="move-0001")
    assert moved == {"transfer_id": "move-0001", "state": "committed", "from_city": "CN-YW",
                     "foreigner_code": code}
    # Hangzhou: the same code, the passport history, and now it may issue a card
    here = _person(cities.hz, code)
    assert [p["number"] for p in here["passports"]] == ["MV1234567"]
    assert here["cards"] == []
    issued = cities.hz.issue(code)
    new_bundle = cities.hz.provision(issued["provisioning_code"], device_key(8))
    assert cities.hz.check(new_bundle, device_key(8)) == "OK"
    # Yiwu: every card revoked with reason transferred; its verifiers see REVOKED
    there = _person(cities.yw, code)
    assert [(c["state"], c["state_reason"]) for c in there["cards"]] == [
        ("revoked", "transferred")]
    assert cities.yw.check(bundle, device_key(7)) == "REVOKED"
    # the wallet's refresh hears why
    phone, when = device_key(7), cities.clock.epoch
    proof = phone.sign(refresh_proof_message(bundle["card_number"], phone.public_key, when))
    refresh = cities.yw.client.post("/v1/wallet/refresh", json={
        "card_number": bundle["card_number"], "device_key": b64url_encode(phone.public_key),
        "time": when, "proof": b64url_encode(proof)})
    assert refresh.status_code == 409
    assert (refresh.json()["code"], refresh.json()["reason"]) == ("CARD_REVOKED", "transferred")
    # Yiwu issues no new card for a person who moved; a lookup there says where they are
    refused = cities.yw.client.post("/v1/cards", headers=cities.yw.admin, json={
        "foreigner_code": code, "entitlements": ["payment"], "valid_until": "2030-12-31"})
    assert (refused.status_code, refused.json()["code"]) == (409, "PERSON_MOVED")
    found = cities.hz.client.post("/v1/persons/national-lookup",
                                  headers=cities.hz.as_role("registrar"),
                                  json={"passport": {"number": "MV1234567", "country": "NGA"}})
    [match] = found.json()["cities"][0]["matches"]
    assert (match["state"], match["holding_city"]) == ("moved", "CN-HZ")


def test_both_audit_chains_record_the_move(cities: CityPair) -> None:
    person, _ = _yiwu_card_holder(cities)
    _transfer(cities, person["foreigner_code"], transfer_id="move-0002")
    assert [e["action"] for e in audit_of(cities.yw, "interauth.transfer")] == [
        "interauth.transfer.prepared", "interauth.transfer.committed"]
    assert [e["action"] for e in audit_of(cities.hz, "interauth.transfer")] == [
        "interauth.transfer.started", "interauth.transfer.prepared",
        "interauth.transfer.committed"]
    revoked = [e for e in audit_of(cities.yw, "card.revoked")]
    assert json.loads(revoked[-1]["details"])["reason"] == "transferred"
    assert revoked[-1]["actor"] == "city:CN-HZ"


def test_a_pending_transfer_blocks_new_cards_at_the_old_city_and_abort_clears_it(
        cities: CityPair) -> None:
    person = cities.yw.enrol(surname="ADEYEMI", given_names="Tunde", nationality="NGA",
                             birth_date="1990-01-01")
    code = person["foreigner_code"]
    cities.transport.down.add("yw.test")  # prepare gets lost ...
    lost = _transfer(cities, code, expect=503, transfer_id="move-0003")
    assert lost["code"] == "TRANSFER_PEER_UNREACHABLE" and lost["state"] == "preparing"
    cities.transport.down.clear()
    # ... prepared at Yiwu by hand (as if the answer was lost after Yiwu acted)
    from cardsvc.federation.interauth import InterauthClient
    client = InterauthClient(httpx.Client(transport=cities.transport),
                             signer=_hz_signer(cities),
                             federation=_held(cities), caller="CN-HZ",
                             clock=lambda: cities.clock.epoch)
    first = client.post("CN-YW", "/v1/interauth/transfers",
                        {"transfer_id": "move-0003", "foreigner_code": code}, reason="t")
    assert first.status_code == 200
    blocked = cities.yw.client.post("/v1/cards", headers=cities.yw.admin, json={
        "foreigner_code": code, "entitlements": ["payment"], "valid_until": "2030-12-31"})
    assert blocked.json()["code"] == "PERSON_TRANSFER_PENDING"
    # the retry with the same id gets the same bundle and finishes
    again = client.post("CN-YW", "/v1/interauth/transfers",
                        {"transfer_id": "move-0003", "foreigner_code": code}, reason="t")
    assert again.json()["bundle"] == first.json()["bundle"]
    # abort instead: both sides are back as before
    aborted = cities.hz.client.delete("/v1/persons/transfers/move-0003",
                                      headers=cities.hz.as_role("registrar"))
    assert aborted.status_code == 200, aborted.text
    assert cities.yw.issue(code)["card_number"]
    assert cities.hz.client.get(f"/v1/persons/{code}", headers=cities.hz.admin
                                ).status_code == 404


def test_a_lost_commit_answer_is_retried_with_the_same_id(cities: CityPair) -> None:
    person, bundle = _yiwu_card_holder(cities)
    code = person["foreigner_code"]
    original = cities.transport.handle_request
    calls: list[str] = []

    def lose_commit_answer(request: httpx.Request) -> httpx.Response:
        response = original(request)
        calls.append(request.url.path)
        if request.url.path.endswith("/commit") and calls.count(request.url.path) == 1:
            raise httpx.ReadTimeout("answer lost", request=request)  # Yiwu did commit
        return response

    cities.transport.handle_request = lose_commit_answer  # type: ignore[method-assign]
    lost = _transfer(cities, code, expect=503, transfer_id="move-0004")
    assert (lost["code"], lost["state"]) == ("TRANSFER_PEER_UNREACHABLE", "prepared")
    blocked = cities.hz.client.post("/v1/cards", headers=cities.hz.admin, json={
        "foreigner_code": code, "entitlements": ["payment"], "valid_until": "2030-12-31"})
    assert blocked.json()["code"] == "PERSON_TRANSFER_PENDING"  # no card at either city
    done = _transfer(cities, code, transfer_id="move-0004")
    assert done["state"] == "committed"
    assert [e["action"] for e in audit_of(cities.yw, "interauth.transfer")] == [
        "interauth.transfer.prepared", "interauth.transfer.committed"]  # once each
    assert cities.yw.check(bundle, device_key(7)) == "REVOKED"


def test_refusals(cities: CityPair) -> None:
    unknown = _transfer(cities, "915660198503020999", expect=409, transfer_id="move-0005")
    assert (unknown["code"], unknown["peer_code"]) == ("TRANSFER_REFUSED", "PERSON_NOT_FOUND")
    person, _ = _yiwu_card_holder(cities)
    _transfer(cities, person["foreigner_code"], transfer_id="move-0006")
    other_id = _transfer(cities, person["foreigner_code"], expect=409,
                         transfer_id="move-0007")
    assert other_id["code"] == "PERSON_EXISTS"
    same_id_other_person = _transfer(cities, "915660198503020998", expect=409,
                                     transfer_id="move-0006")
    assert same_id_other_person["code"] == "TRANSFER_ID_CONFLICT"
    committed = cities.hz.client.delete("/v1/persons/transfers/move-0006",
                                        headers=cities.hz.as_role("registrar"))
    assert committed.json()["code"] == "TRANSFER_COMMITTED"


def _held(pair: CityPair) -> Any:
    from cardsvc.federation.state import held_federation
    return pair.hz.database.transact(held_federation, readonly=True)


def _hz_signer(pair: CityPair) -> Any:
    from cardsvc.services.interchange import interchange_signer
    return pair.hz.database.transact(lambda session: interchange_signer(
        session, keyring=pair.hz.client.app.state.context.keyring,  # type: ignore[attr-defined]
        issuer="CN-HZ", now=pair.clock()), readonly=True)
