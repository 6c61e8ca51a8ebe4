"""The audit log: every state change is chained; edits and deletions are detected."""

from __future__ import annotations

import pytest
from cardsvc_kit import Authority, device_key
from sqlalchemy import delete, select, update

from cardsvc.models import AuditEntry
from cardsvc.services.audit import verify_chain


def _story(authority: Authority) -> None:
    bundle = authority.card_with_phone(device_key(40))
    authority.revoke(bundle["card_number"], "suspend")
    authority.revoke(bundle["card_number"], "reinstate")
    authority.client.post(f"/v1/persons/{bundle['foreigner_code']}/passports",
                          headers=authority.admin,
                          json={"number": "Q1111111", "country": "NGA", "expires": "2035-01-01"})


def test_every_state_change_appends_one_entry(authority: Authority) -> None:
    auditor = authority.as_role("auditor")
    _story(authority)
    answer = authority.client.get("/v1/audit", headers=auditor)
    assert answer.status_code == 200
    body = answer.json()
    assert body["chain"]["ok"] is True
    actions = [entry["action"] for entry in body["entries"]]
    assert actions == ["authority.initialised", "officer.created", "officer.created",
                       "person.enrolled", "card.issued", "card.provisioned", "card.suspended",
                       "card.reinstated", "person.passport_recorded"]
    assert [e["seq"] for e in body["entries"]] == list(range(1, len(actions) + 1))
    for before, after in zip(body["entries"], body["entries"][1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    issued = body["entries"][4]
    assert issued["officer_id"] == 1 and issued["actor"] == "officer:1"
    assert body["entries"][5]["actor"] == "wallet"
    page = authority.client.get("/v1/audit", headers=authority.as_role("auditor"),
                                params={"after_seq": 3, "limit": 2}).json()
    assert [e["seq"] for e in page["entries"]] == [4, 5] and page["next_after_seq"] == 5


def test_a_refused_request_writes_nothing(authority: Authority) -> None:
    before = authority.database.transact(verify_chain).entries
    authority.client.post("/v1/cards", headers=authority.admin, json={
        "foreigner_code": "933566198503020011", "entitlements": [], "valid_until": "2030-01-01"})
    authority.client.post("/v1/provision", json={"provisioning_code": "AAAA-BBBB-CCCC-DDDD",
                                                 "device_key": "A" * 43, "proof": "A" * 86})
    assert authority.database.transact(verify_chain).entries == before


@pytest.mark.parametrize("tamper", ["edit_details", "edit_time", "delete_middle",
                                    "delete_last"])
def test_tampering_is_detected(authority: Authority, tamper: str) -> None:
    _story(authority)
    with authority.database.sessions() as session, session.begin():
        last = max(session.scalars(select(AuditEntry.seq)))
        if tamper == "edit_details":
            session.execute(update(AuditEntry).where(AuditEntry.seq == 5)
                            .values(details='{"reason":"nothing to see"}'))
        elif tamper == "edit_time":
            entry = session.get(AuditEntry, 5)
            assert entry is not None
            entry.at = entry.at.replace(year=2020)
        elif tamper == "delete_middle":
            session.execute(delete(AuditEntry).where(AuditEntry.seq == 5))
        else:
            session.execute(delete(AuditEntry).where(AuditEntry.seq == last))
    check = authority.database.transact(verify_chain)
    assert not check.ok
    assert check.broken_at == (last if tamper == "delete_last" else 5)
    chain = authority.client.get("/v1/audit", headers=authority.as_role("auditor")).json()
    assert chain["chain"]["ok"] is False
