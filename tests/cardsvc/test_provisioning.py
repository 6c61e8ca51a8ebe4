"""Provisioning and refresh: the bundle verifies offline; codes are single use; a second
phone revokes the first; passport changes re-issue; the proof is checked first."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from cardsvc_kit import Authority, device_key, provision_request
from fastapi.responses import JSONResponse

from cardsvc.api.schemas import BundleOut, CardIssuedOut, EnrolmentOut
from keys import Ed25519Signer
from schemas import Credential, b64url_encode
from schemas._jose import inflate_capped, parse_json_object, split_compact
from schemas.provisioning import refresh_proof_message


def _claims(jws: str) -> Credential:
    _, _, payload, _ = split_compact(jws)
    return Credential.from_payload(parse_json_object(inflate_capped(payload, 4096)))


def test_bundle_verifies_offline_for_every_purpose(authority: Authority) -> None:
    phone = device_key(1)
    bundle = authority.card_with_phone(phone)
    assert set(bundle["credentials"]) == {"pay", "id", "svc"}
    state = authority.state()
    for purpose, service in (("id", "counter"), ("svc", "hospital"), ("svc", "school"),
                             ("svc", "social"), ("pay", "payment")):
        assert authority.check(bundle, phone, purpose, service, state) == "OK"
    assert authority.check(bundle, phone, "svc", "transport", state) == "ENTITLEMENT_MISSING"
    claims = _claims(bundle["credentials"]["id"])
    assert claims.foreigner_code == bundle["foreigner_code"]
    assert claims.holder_key == phone.public_key
    assert claims.issued_at == authority.clock.epoch
    assert claims.expires_at == authority.clock.epoch + 30 * 86_400
    pay = _claims(bundle["credentials"]["pay"])
    assert pay.offline_limit_fen == 20_000 and pay.surname is None
    assert bundle["holder"]["foreigner_code"] == bundle["foreigner_code"]


def test_expiry_is_capped_by_the_card_validity(authority: Authority) -> None:
    issued = authority.issue(authority.enrol()["foreigner_code"], valid_until="2027-01-20")
    bundle = authority.provision(issued["provisioning_code"], device_key(2))
    end_of_last_day = int(datetime(2027, 1, 21, tzinfo=UTC).timestamp())
    assert _claims(bundle["credentials"]["svc"]).expires_at == end_of_last_day


def test_no_pay_credential_without_the_payment_entitlement(authority: Authority) -> None:
    issued = authority.issue(authority.enrol()["foreigner_code"], entitlements=["education"])
    bundle = authority.provision(issued["provisioning_code"], device_key(3))
    assert set(bundle["credentials"]) == {"id", "svc"}


def test_a_code_works_once(authority: Authority) -> None:
    issued = authority.issue(authority.enrol()["foreigner_code"])
    authority.provision(issued["provisioning_code"], device_key(4))
    answer = authority.client.post("/v1/provision",
                                   json=provision_request(issued["provisioning_code"],
                                                          device_key(5)))
    assert answer.status_code == 409 and answer.json()["code"] == "PROVISIONING_CODE_USED"


def test_expired_and_unknown_codes(authority: Authority) -> None:
    issued = authority.issue(authority.enrol()["foreigner_code"])
    authority.clock.advance(24 * 3600 + 1)
    answer = authority.client.post("/v1/provision",
                                   json=provision_request(issued["provisioning_code"],
                                                          device_key(6)))
    assert answer.status_code == 410 and answer.json()["code"] == "PROVISIONING_CODE_EXPIRED"
    answer = authority.client.post("/v1/provision",
                                   json=provision_request("AAAA-BBBB-CCCC-DDDD", device_key(6)))
    assert answer.status_code == 404 and answer.json()["code"] == "PROVISIONING_CODE_UNKNOWN"


def test_a_bad_proof_is_refused_and_leaves_the_code_usable(authority: Authority) -> None:
    issued = authority.issue(authority.enrol()["foreigner_code"])
    phone, thief = device_key(7), device_key(8)
    request = provision_request(issued["provisioning_code"], thief)
    request["device_key"] = b64url_encode(phone.public_key)  # proof by another key
    answer = authority.client.post("/v1/provision", json=request)
    assert answer.status_code == 403 and answer.json()["code"] == "PROOF_INVALID"
    authority.provision(issued["provisioning_code"], phone)


def test_a_second_phone_revokes_the_first_phones_bundle(authority: Authority) -> None:
    first, second = device_key(9), device_key(10)
    old = authority.card_with_phone(first)
    code = authority.client.post(f"/v1/cards/{old['card_number']}/provisioning-codes",
                                 headers=authority.admin)
    assert code.status_code == 201
    new = authority.provision(code.json()["provisioning_code"], second)
    assert new["status"] != old["status"]
    state = authority.state()
    assert authority.check(old, first, state=state) == "REVOKED"
    assert authority.check(new, second, state=state) == "OK"


def test_suspension_follows_the_card_to_a_new_phone(authority: Authority) -> None:
    first, second = device_key(11), device_key(12)
    old = authority.card_with_phone(first)
    authority.revoke(old["card_number"], "suspend")
    code = authority.client.post(f"/v1/cards/{old['card_number']}/provisioning-codes",
                                 headers=authority.admin).json()["provisioning_code"]
    new = authority.provision(code, second)
    assert authority.check(new, second) == "SUSPENDED"
    authority.revoke(old["card_number"], "reinstate")
    state = authority.state()
    assert authority.check(new, second, state=state) == "OK"
    assert authority.check(old, first, state=state) == "REVOKED"


def test_revoked_card_cannot_get_a_new_code(authority: Authority) -> None:
    bundle = authority.card_with_phone(device_key(13))
    authority.revoke(bundle["card_number"])
    answer = authority.client.post(f"/v1/cards/{bundle['card_number']}/provisioning-codes",
                                   headers=authority.admin)
    assert answer.status_code == 409 and answer.json()["code"] == "CARD_REVOKED"


def _refresh(authority: Authority, card_number: str, phone: Ed25519Signer,
             signer: Ed25519Signer | None = None, skew: int = 0) -> tuple[int, dict[str, Any]]:
    when = authority.clock.epoch + skew
    proof = (signer or phone).sign(refresh_proof_message(card_number, phone.public_key, when))
    answer = authority.client.post("/v1/wallet/refresh", json={
        "card_number": card_number, "device_key": b64url_encode(phone.public_key),
        "time": when, "proof": b64url_encode(proof)})
    return answer.status_code, answer.json()


def test_refresh_renews_for_the_same_phone_only(authority: Authority) -> None:
    phone = device_key(14)
    bundle = authority.card_with_phone(phone)
    authority.clock.advance(20 * 86_400)
    status, fresh = _refresh(authority, bundle["card_number"], phone)
    assert status == 200
    assert fresh["status"] == bundle["status"]  # same phone, same data: same index
    assert fresh["expires_at"] == bundle["expires_at"] + 20 * 86_400
    assert authority.check(fresh, phone) == "OK"
    assert _refresh(authority, bundle["card_number"], device_key(15))[1]["code"] == \
        "DEVICE_NOT_BOUND"
    assert _refresh(authority, bundle["card_number"], phone, signer=device_key(15))[1][
        "code"] == "PROOF_INVALID"
    assert _refresh(authority, bundle["card_number"], phone, skew=-600)[1]["code"] == \
        "REFRESH_TIME_SKEW"
    authority.revoke(bundle["card_number"])
    assert _refresh(authority, bundle["card_number"], phone)[1]["code"] == "CARD_REVOKED"


def test_passport_change_with_new_name_reissues_the_card(authority: Authority) -> None:
    phone = device_key(16)
    bundle = authority.card_with_phone(phone, surname="PETROVA", given_names="Olga",
                                       nationality="RUS")
    code = bundle["foreigner_code"]
    answer = authority.client.post(f"/v1/persons/{code}/passports", headers=authority.admin,
                                   json={"number": "760000001", "country": "RUS",
                                         "expires": "2037-01-01", "surname": "SMIRNOVA"})
    change = answer.json()
    assert answer.status_code == 200 and change["personal_data_changed"] is True
    assert change["foreigner_code"] == code
    assert [c["card_number"] for c in change["cards_reissued"]] == [bundle["card_number"]]
    card = authority.client.get(f"/v1/cards/{bundle['card_number']}", headers=authority.admin)
    assert card.json()["bundle_current"] is False
    # The phone picks the new data up by refresh: new index, old one revoked.
    status, fresh = _refresh(authority, bundle["card_number"], phone)
    assert status == 200 and fresh["status"] != bundle["status"]
    assert _claims(fresh["credentials"]["id"]).surname == "SMIRNOVA"
    state = authority.state()
    assert authority.check(fresh, phone, state=state) == "OK"
    assert authority.check(bundle, phone, state=state) == "REVOKED"


def test_passport_renewal_without_new_data_reissues_nothing(authority: Authority) -> None:
    bundle = authority.card_with_phone(device_key(17))
    answer = authority.client.post(
        f"/v1/persons/{bundle['foreigner_code']}/passports", headers=authority.admin,
        json={"number": "R9999999", "country": "NGA", "expires": "2037-01-01"})
    assert answer.json()["cards_reissued"] == []
    assert authority.check(bundle, device_key(17)) == "OK"


def test_two_phones_racing_for_one_code_one_wins(authority: Authority) -> None:
    issued = authority.issue(authority.enrol()["foreigner_code"])
    results: list[int] = []
    barrier = threading.Barrier(4)

    def redeem(seed: int) -> None:
        barrier.wait()
        answer = authority.client.post(
            "/v1/provision", json=provision_request(issued["provisioning_code"],
                                                    device_key(seed)))
        results.append(answer.status_code)

    threads = [threading.Thread(target=redeem, args=(20 + i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 409, 409, 409]


def test_issuance_answers_are_the_bytes_of_their_response_models(authority: Authority) -> None:
    """Enrol, issue and provision send their answer themselves (P11: no second validation
    in the thread pool): the bytes, status and type FastAPI would send for the model."""
    def same_as_fastapi(answer: Any, model: type[Any], status: int) -> None:
        assert answer.status_code == status
        assert answer.headers["content-type"] == "application/json"
        parsed = model.model_validate(answer.json())
        assert answer.content == JSONResponse(parsed.model_dump(mode="json", by_alias=True)).body

    body = {"surname": "ÖZTÜRK", "given_names": "Ayşe", "nationality": "TUR",
            "birth_date": "1990-04-05", "sex": "F", "confirm_new": True,
            "passport": {"number": "U12345678", "country": "TUR", "expires": "2031-01-01"}}
    enrolled = authority.client.post("/v1/persons", json=body, headers=authority.admin)
    same_as_fastapi(enrolled, EnrolmentOut, 201)
    same_as_fastapi(authority.client.post("/v1/persons", json=body, headers=authority.admin),
                    EnrolmentOut, 200)
    issued = authority.client.post("/v1/cards", headers=authority.admin, json={
        "foreigner_code": enrolled.json()["foreigner_code"], "valid_until": "2030-12-31",
        "entitlements": ["healthcare", "payment"]})
    same_as_fastapi(issued, CardIssuedOut, 201)
    bundle = authority.client.post("/v1/provision", json=provision_request(
        issued.json()["provisioning_code"], Ed25519Signer.generate(kid="device")))
    same_as_fastapi(bundle, BundleOut, 200)
