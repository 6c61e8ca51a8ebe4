"""Trust list and status lists as served (ETag, Cache-Control, 304) and key rotation."""

from __future__ import annotations

from cardsvc_kit import Authority, device_key
from sqlalchemy.orm import Session

from cardsvc.services.trust import RETIREMENT_GRACE_SECONDS
from schemas import KeyState, TrustListClaims
from schemas._jose import parse_json_object, split_compact
from schemas.status_list import day_list_id
from verifier import verify_trust_list


def _trust(authority: Authority) -> TrustListClaims:
    return verify_trust_list(authority.client.get("/v1/trust-list").text,
                             root_fingerprint=authority.root_fingerprint)


def _kid(jws: str) -> str:
    return str(parse_json_object(split_compact(jws)[1])["kid"])


def test_trust_list_publishes_the_next_key_ahead_of_use(authority: Authority) -> None:
    claims = _trust(authority)
    assert claims.issuer == "CN-YW"
    assert [(k.kid, k.state) for k in claims.keys] == [("k1", KeyState.ACTIVE),
                                                        ("k2", KeyState.NEXT)]
    assert claims.expires_at - claims.issued_at == 30 * 86_400
    keys = authority.client.get("/v1/keys").json()
    assert keys["root_fingerprint"] == authority.root_fingerprint


def test_signed_lists_carry_etag_and_answer_304(authority: Authority) -> None:
    for path, media in (("/v1/trust-list", "application/jwt"),
                        ("/v1/status-lists/1", "application/statuslist+jwt")):
        first = authority.client.get(path)
        assert first.status_code == 200 and first.headers["content-type"] == media
        assert first.headers["cache-control"] == "public, max-age=300"
        again = authority.client.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        other = authority.client.get(path, headers={"If-None-Match": '"nope"'})
        assert other.status_code == 200 and other.text == first.text


def test_status_list_is_resigned_when_a_bit_changes_or_half_the_ttl_passed(
    authority: Authority,
) -> None:
    first = authority.client.get("/v1/status-lists/1")
    authority.clock.advance(100)
    same = authority.client.get("/v1/status-lists/1")
    assert same.headers["etag"] == first.headers["etag"]
    assert same.headers["cache-control"] == "public, max-age=200"  # what is left of the ttl
    authority.clock.advance(60)  # 160 s > ttl / 2
    assert authority.client.get("/v1/status-lists/1").headers["etag"] != first.headers["etag"]
    before = authority.client.get("/v1/status-lists/1").headers["etag"]
    bundle = authority.card_with_phone(device_key(30))
    assert authority.client.get("/v1/status-lists/1").headers["etag"] == before  # 0 bits only
    authority.revoke(bundle["card_number"])
    assert authority.client.get("/v1/status-lists/1").headers["etag"] != before


def test_status_list_index(authority: Authority) -> None:
    listing = authority.client.get("/v1/status-lists").json()
    # The card list, then the day lists of one-use pay credentials, published ahead for
    # today and the 6 days they are pre-issued for.
    today = authority.clock.epoch // 86_400 * 86_400
    ids = ["1"] + [day_list_id(today + n * 86_400) for n in range(7)]
    assert listing == {"status_lists": [
        {"id": list_id, "uri": f"http://testserver/v1/status-lists/{list_id}"}
        for list_id in ids]}
    missing = authority.client.get("/v1/status-lists/99")
    assert missing.status_code == 404 and missing.json()["code"] == "STATUS_LIST_NOT_FOUND"


def test_rotation_keeps_old_credentials_valid_and_signs_new_ones_with_the_next_key(
    authority: Authority,
) -> None:
    old_phone, new_phone = device_key(31), device_key(32)
    old = authority.card_with_phone(old_phone)
    assert _kid(old["credentials"]["id"]) == "k1"
    authority.clock.advance(60)
    rotated = authority.client.post("/v1/keys/rotate", headers=authority.admin)
    assert rotated.status_code == 200, rotated.text
    states = {k["kid"]: k["state"] for k in rotated.json()["keys"]}
    assert states == {"k1": "retired", "k2": "active", "k3": "next"}
    authority.clock.advance(60)
    new = authority.card_with_phone(new_phone)
    assert _kid(new["credentials"]["id"]) == "k2"
    state = authority.state()  # the status list is now signed by k2
    assert authority.check(old, old_phone, state=state) == "OK"
    assert authority.check(new, new_phone, state=state) == "OK"
    trust = _trust(authority)
    retired = trust.keys_by_kid["k1"]
    assert retired.state is KeyState.RETIRED
    assert retired.valid_until == authority.clock.epoch - 60 + RETIREMENT_GRACE_SECONDS


def test_a_compromised_key_fails_its_credentials(authority: Authority) -> None:
    phone = device_key(33)
    bundle = authority.card_with_phone(phone)
    authority.clock.advance(60)
    from cardsvc.services.audit import Actor
    from cardsvc.services.bootstrap import open_keyring
    from cardsvc.services.trust import compromise_key

    keyring = open_keyring(authority.settings)
    authority.database.transact(lambda session: compromise_key(
        session, kid="k1", keyring=keyring, kid_prefix="k",
        actor=Actor.cli(), now=authority.clock()))
    trust = _trust(authority)
    assert trust.keys_by_kid["k1"].state is KeyState.COMPROMISED
    assert trust.keys_by_kid["k2"].state is KeyState.ACTIVE
    assert authority.check(bundle, phone) == "KEY_COMPROMISED"
    fresh = authority.client.post(
        f"/v1/cards/{bundle['card_number']}/provisioning-codes", headers=authority.admin)
    renewed = authority.provision(fresh.json()["provisioning_code"], phone)
    assert authority.check(renewed, phone) == "OK"


def test_trust_list_versions_only_go_up(authority: Authority) -> None:
    first = _trust(authority).version
    authority.client.post("/v1/keys/rotate", headers=authority.admin)
    second = _trust(authority).version
    authority.clock.advance(16 * 86_400)  # past half its life: re-signed
    third = _trust(authority)
    assert first < second < third.version
    assert third.issued_at == authority.clock.epoch


def test_a_full_status_list_opens_the_next_one(authority: Authority) -> None:
    from sqlalchemy import select, update

    from cardsvc.models import StatusEntry, StatusListRecord
    from cardsvc.services.status import reserve_status_entry

    card = authority.issue(authority.enrol()["foreigner_code"])["card"]
    with authority.database.sessions() as session:
        card_id = session.scalar(select(StatusEntry.card_id))
    assert card_id is not None

    def fill(session: Session) -> list[tuple[str, int]]:
        session.execute(update(StatusListRecord).values(allocated=StatusListRecord.fill_limit))
        refs = [reserve_status_entry(session, card_id=card_id, status=0,
                                     now=authority.clock(), list_size=16) for _ in range(40)]
        return [(ref.list_id, ref.index) for ref in refs]

    refs = authority.database.transact(fill)
    assert len(set(refs)) == 40  # never the same index twice
    lists = {list_id for list_id, _ in refs}
    assert "1" not in lists and {"2", "3"} <= lists  # 16 entries, closed at about 12
    assert all(0 <= index < 16 for _, index in refs)
    listing = authority.client.get("/v1/status-lists").json()["status_lists"]
    assert [entry["id"] for entry in listing][:3] == ["1", "2", "3"]
    assert card["status"]["list_id"] == "1"


def test_a_status_change_moves_the_revision_the_same_transaction_sees(
    authority: Authority,
) -> None:
    """The revision bump runs on the connection: a list the session loaded before must
    not keep the old revision (a list signed in the same transaction would be stale)."""
    from cardsvc.models import StatusListRecord
    from cardsvc.services.status import set_entry_status
    from schemas import STATUS_REVOKED, StatusRef

    status = authority.card_with_phone(device_key(77))["status"]
    ref = StatusRef(status["list_id"], status["index"])

    def work(session: Session) -> tuple[int, int]:
        record = session.get(StatusListRecord, ref.list_id)
        assert record is not None
        before = record.revision
        assert set_entry_status(session, ref=ref, status=STATUS_REVOKED)
        return before, record.revision

    before, after = authority.database.transact(work)
    assert after == before + 1
