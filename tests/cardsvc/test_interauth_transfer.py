"""Moving a person between cities (P10): prepare, create under the same code, commit
(old cards end ``transferred``, the person ``moved``), abort, idempotent retries after a
lost answer on either step, both audit chains."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from cardsvc_kit import device_key, portrait_bytes
from city_pair_kit import CityPair, CityTemplate, audit_of, city_pair
from PIL import Image

from cardsvc.federation.transfer import moved_person
from cardsvc.services.errors import Invalid
from cardsvc.services.portraits import normalize_portrait
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


# --- a bundle is checked as an enrolment here, whoever signed it --------------------------

def _good_person() -> dict[str, Any]:
    portrait = normalize_portrait(portrait_bytes("PNG"), max_bytes=2_000_000)
    return {
        "foreigner_code": "933566198503020011", "surname": "OKAFOR", "given_names": "Chinedu",
        "nationality": "NGA", "birth_date": "1985-03-02", "sex": "M",
        "portrait_digest": portrait.digest,
        "portrait": {"jpeg": base64.b64encode(portrait.jpeg).decode(), "width": 1, "height": 1},
        "passports": [
            {"number": "MV1234567", "country": "NGA", "expires": "2031-01-01", "current": True,
             "surname": "OKAFOR", "given_names": "Chinedu"},
            {"number": "A0000001", "country": "NGA", "expires": "2019-01-01", "current": False,
             "surname": "OKAFOR", "given_names": "Chinedu"}]}


def _jpeg(size: tuple[int, int]) -> str:
    out = io.BytesIO()
    Image.new("RGB", size, (120, 90, 60)).save(out, "JPEG")
    return base64.b64encode(out.getvalue()).decode()


def _with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    person = _good_person()
    change(person)
    return person


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(person: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = person
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[last] = value
    return change


def _other_portrait(person: dict[str, Any]) -> None:  # another photo's digest kept
    person["portrait"]["jpeg"] = _jpeg((480, 640))


HOSTILE_PEOPLE = [
    ("surname with a bidi override", _set("surname", "\u202eROFAKO")),
    ("surname with an escape sequence", _set("surname", "OKAFOR\x1b[2J")),
    ("surname of 5,000 characters", _set("surname", "A" * 5000)),
    ("surname not a string", _set("surname", {"$ne": ""})),
    ("empty surname", _set("surname", "")),
    ("unknown nationality", _set("nationality", "XXX")),
    ("birth date in the future", _set("birth_date", "2999-01-01")),
    ("birth date not a date", _set("birth_date", "yesterday")),
    ("sex outside M F X", _set("sex", "Q")),
    ("another foreigner code's shape", _set("foreigner_code", "12345")),
    ("passport number as a path", _set("passports.0.number", "../../etc")),
    ("passport country unknown", _set("passports.0.country", "ZZZ")),
    ("passport current not a boolean", _set("passports.0.current", "yes")),
    ("two current passports", _set("passports.1.current", True)),
    ("no current passport", _set("passports.0.current", False)),
    ("no passport", _set("passports", [])),
    ("ten thousand passports", _set("passports", [_good_person()["passports"][1]] * 10_000)),
    ("passport name with a zero-width joiner", _set("passports.1.surname", "OKA\u200dFOR")),
    ("portrait digest of another photo", _other_portrait),
    ("portrait not base64", _set("portrait.jpeg", "not base64!")),
    ("portrait a PNG", _set("portrait.jpeg", base64.b64encode(portrait_bytes("PNG")).decode())),
    ("portrait random bytes", _set("portrait.jpeg", base64.b64encode(b"\xff\xd8" + b"x" * 500)
                                   .decode())),
    ("portrait larger than a normalized one", _set("portrait.jpeg", _jpeg((1200, 1600)))),
    ("portrait without a digest", _set("portrait_digest", None)),
]


@pytest.mark.parametrize("person", [p for _, p in HOSTILE_PEOPLE],
                         ids=[name for name, _ in HOSTILE_PEOPLE])
def test_a_bundle_person_this_city_would_refuse_is_refused(person: Any) -> None:
    with pytest.raises(Invalid) as refused:
        moved_person(_with(person), today=date(2027, 1, 15))
    assert refused.value.code == "TRANSFER_BUNDLE_INVALID"


def test_a_sound_bundle_person_is_kept_as_sent() -> None:
    person = _good_person()
    person["given_names"] = "Chinedu 2"  # enrolled before names refused digits: still moves
    moved = moved_person(person, today=date(2027, 1, 15))
    assert (moved.details.surname, moved.details.given_names, len(moved.passports)) == (
        "OKAFOR", "Chinedu 2", 2)
    assert moved.portrait is not None and moved.portrait.digest == person["portrait_digest"]
    assert moved.portrait.jpeg == base64.b64decode(person["portrait"]["jpeg"])


@pytest.mark.parametrize("name", ["surname with a bidi override",
                                  "portrait digest of another photo", "no current passport"])
def test_attack_a_trusted_city_sends_a_person_this_city_would_refuse(
        cities: CityPair, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The old city's signature verifies (a bug there, or a thief of its interchange key):
    the move is refused and nothing of the person is written here."""
    import cardsvc.federation.transfer as transfer

    change = dict(HOSTILE_PEOPLE)[name]
    honest = transfer._bundle_payload

    def hostile(*args: Any, **kwargs: Any) -> dict[str, Any]:
        payload = honest(*args, **kwargs)
        portrait = normalize_portrait(portrait_bytes("PNG"), max_bytes=2_000_000)
        payload["person"] |= {"portrait_digest": portrait.digest, "portrait": {
            "jpeg": base64.b64encode(portrait.jpeg).decode(), "width": 1, "height": 1}}
        change(payload["person"])
        return payload

    monkeypatch.setattr(transfer, "_bundle_payload", hostile)
    person, _ = _yiwu_card_holder(cities)
    code = person["foreigner_code"]
    refused = _transfer(cities, code, expect=422, transfer_id="move-hostile")
    assert refused["code"] == "TRANSFER_BUNDLE_INVALID"
    assert cities.hz.client.get(f"/v1/persons/{code}",
                                headers=cities.hz.admin).status_code == 404
    assert audit_of(cities.hz, "interauth.transfer.prepared") == []


def _old_city_answering(pair: CityPair, monkeypatch: pytest.MonkeyPatch, path_end: str,
                        answer: Callable[[httpx.Request], httpx.Response]) -> None:
    """Yiwu's answers on one step replaced (a bug there, or whoever answers in its place)."""
    honest = pair.transport.handle_request

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "yw.test" and request.url.path.endswith(path_end):
            honest(request)  # Yiwu did the step; its answer is what the attacker chose
            return answer(request)
        return honest(request)

    monkeypatch.setattr(pair.transport, "handle_request", handle)


@pytest.mark.parametrize(("status", "body", "code", "peer_code"), [
    (200, ["bundle"], "TRANSFER_BUNDLE_INVALID", None),
    (200, {"bundle": {"$ne": ""}}, "TRANSFER_BUNDLE_INVALID", None),
    (200, "not an object", "TRANSFER_BUNDLE_INVALID", None),
    (409, {"code": "\x1b[32mCOMMITTED\x1b[0m"}, "TRANSFER_REFUSED", "409"),
    (409, {"code": "Y" * 5000}, "TRANSFER_REFUSED", "409"),
    (409, ["PERSON_NOT_FOUND"], "TRANSFER_REFUSED", "409"),
], ids=["a list", "a bundle that is not text", "a string", "escape codes as the code",
        "a 5,000-character code", "a code that is not in an object"])
def test_attack_the_old_city_answers_prepare_with_what_is_not_an_answer(
        cities: CityPair, monkeypatch: pytest.MonkeyPatch, status: int, body: Any,
        code: str, peer_code: str | None) -> None:
    person, _ = _yiwu_card_holder(cities)
    _old_city_answering(cities, monkeypatch, "/transfers",
                        lambda request: httpx.Response(status, json=body, request=request))
    refused = _transfer(cities, person["foreigner_code"], expect=422 if status == 200 else 409,
                        transfer_id="move-garbled")
    assert (refused["code"], refused.get("peer_code")) == (code, peer_code)
    assert cities.hz.client.get(f"/v1/persons/{person['foreigner_code']}",
                                headers=cities.hz.admin).status_code == 404


def test_attack_the_old_city_acknowledges_a_commit_with_garbage_for_the_audit(
        cities: CityPair, monkeypatch: pytest.MonkeyPatch) -> None:
    person, _ = _yiwu_card_holder(cities)
    hostile = ["<script>", "Z" * 5000, {"a": 1}, None] + [f"{n:016d}" for n in range(500)]
    _old_city_answering(cities, monkeypatch, "/commit", lambda request: httpx.Response(
        200, json={"revoked_cards": hostile}, request=request))
    assert _transfer(cities, person["foreigner_code"])["state"] == "committed"
    [committed] = audit_of(cities.hz, "interauth.transfer.committed")
    recorded = json.loads(committed["details"])["revoked_there"]
    assert recorded == [f"{n:016d}" for n in range(100)]
