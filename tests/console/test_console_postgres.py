"""The console's flows on PostgreSQL: search queries, enrolment with a duplicate, a card
revoked, the audit chain green."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_kit import (
    Authority,
    Template,
    code_of,
    csrf_of,
    enrol,
    issued_card,
    postgres_database,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_authority(tmp_path: Path) -> Iterator[Authority]:
    with postgres_database("console") as url:
        instance = Template.create(tmp_path / "template", url).authority(tmp_path)
        try:
            yield instance
        finally:
            instance.database.dispose()


def test_story_on_postgresql(pg_authority: Authority) -> None:
    registrar = pg_authority.signed_in("registrar")
    code = code_of(enrol(registrar))
    duplicate = enrol(registrar, expect=409, surname="MUHAMMAD", passport_number="B7654321")
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"',
                             duplicate.text))
    assert registrar.post("/persons/new", data={**hidden, "link_to": code}).status_code == 303
    number, _ = issued_card(registrar, code)
    supervisor = pg_authority.signed_in("supervisor")
    for query in ("A1234567", "mohamed", code):
        html = supervisor.get("/", params={"q": query}).text
        assert re.findall(r'href="/persons/(\w+)" class="mono"', html) == [code], query
    page = supervisor.get(f"/cards/{number}/revoke")
    done = supervisor.post(f"/cards/{number}/revoke", data={
        "csrf": csrf_of(page.text), "reason": "lost", "confirmed": "1"})
    assert done.status_code == 303
    audit = pg_authority.signed_in("auditor").get("/audit").text
    assert 'data-testid="chain" data-ok="true"' in audit
    assert re.findall(r'data-action="([\w.]+)"', audit)[0] == "card.revoked"
