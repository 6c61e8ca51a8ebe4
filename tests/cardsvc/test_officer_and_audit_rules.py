"""Rules that once lived only in the console, now in the services: the API enforces them
too (an officer cannot deactivate themself; the audit log pages from the newest entry)."""

from __future__ import annotations

from typing import Any

import pytest
from cardsvc_kit import Authority

from cardsvc.services.audit import AUDIT_PAGE_SIZE


def _officer_id(authority: Authority, name: str) -> int:
    listing = authority.client.get("/v1/officers", headers=authority.admin).json()
    return int(next(officer["id"] for officer in listing if officer["name"] == name))


def _audit(authority: Authority, **query: Any) -> dict[str, Any]:
    answer = authority.client.get("/v1/audit", params=query, headers=authority.as_role("auditor"))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_an_officer_cannot_deactivate_themself_through_the_api(authority: Authority) -> None:
    admin_id = _officer_id(authority, "admin")
    answer = authority.client.post(f"/v1/officers/{admin_id}/deactivate",
                                   headers=authority.admin)
    assert answer.status_code == 409
    assert answer.json()["code"] == "OFFICER_IS_YOU"
    assert authority.client.get("/v1/officers", headers=authority.admin).status_code == 200


def test_a_supervisor_deactivates_another_officer_whose_token_then_fails(
    authority: Authority,
) -> None:
    created = authority.client.post("/v1/officers", headers=authority.admin,
                                    json={"name": "Leaving", "roles": ["auditor"]}).json()
    leaving = {"Authorization": f"Bearer {created['token']}"}
    assert authority.client.get("/v1/audit", headers=leaving).status_code == 200
    answer = authority.client.post(f"/v1/officers/{created['id']}/deactivate",
                                   headers=authority.admin)
    assert answer.status_code == 200, answer.text
    assert answer.json()["active"] is False
    assert authority.client.get("/v1/audit", headers=leaving).status_code == 401


@pytest.mark.parametrize(("officer_id", "status", "code"), [
    ("999999", 404, "OFFICER_NOT_FOUND"),
    ("0", 422, "VALIDATION_FAILED"),
    ("abc", 422, "VALIDATION_FAILED"),
])
def test_deactivating_no_such_officer_is_refused(
    authority: Authority, officer_id: str, status: int, code: str
) -> None:
    answer = authority.client.post(f"/v1/officers/{officer_id}/deactivate",
                                   headers=authority.admin)
    assert (answer.status_code, answer.json()["code"]) == (status, code)


def test_the_api_pages_the_audit_log_from_the_newest_entry(authority: Authority) -> None:
    for number in range(AUDIT_PAGE_SIZE + 5):
        authority.client.post("/v1/officers", headers=authority.admin,
                              json={"name": f"Officer {number}", "roles": ["auditor"]})
    head = _audit(authority)["chain"]["head_seq"]
    pages = -(-head // AUDIT_PAGE_SIZE)
    first = _audit(authority, page=1)
    assert (first["page"], first["pages"], first["next_after_seq"]) == (1, pages, None)
    assert [entry["seq"] for entry in first["entries"]] == list(
        range(head, head - AUDIT_PAGE_SIZE, -1))
    last = _audit(authority, page=pages + 7)  # past the end: the last page
    assert last["page"] == pages
    assert [entry["seq"] for entry in last["entries"]] == list(
        range(head - (pages - 1) * AUDIT_PAGE_SIZE, 0, -1))
    by_subject = _audit(authority, page=1, subject="officer:2")
    assert (by_subject["page"], by_subject["pages"]) == (1, 1)
    assert {entry["subject"] for entry in by_subject["entries"]} == {"officer:2"}
