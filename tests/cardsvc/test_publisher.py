"""P11.3: the signed lists are served from memory; a change committed in this process
shows at once, another process's change once the recheck interval or the clock moved;
304 on the ETag; the status list index also under its static mirror name."""

from __future__ import annotations

from cardsvc_kit import Authority, device_key
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cardsvc.models import Card, StatusEntry


def _status_list(authority: Authority, list_id: str) -> tuple[str, str]:
    answer = authority.client.get(f"/v1/status-lists/{list_id}")
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"].startswith("public, max-age=")
    return answer.headers["etag"], answer.text


def _entry(authority: Authority, card_number: str) -> StatusEntry:
    def find(session: Session) -> StatusEntry:
        return session.scalars(select(StatusEntry).join(Card, Card.id == StatusEntry.card_id)
                               .where(Card.card_number == card_number)).one()

    return authority.database.transact(find, readonly=True)


def test_a_change_in_this_process_shows_at_once(authority: Authority) -> None:
    card = authority.card_with_phone(device_key(1))
    entry = _entry(authority, card["card_number"])
    before, _ = _status_list(authority, entry.list_id)
    again, _ = _status_list(authority, entry.list_id)
    assert again == before  # from memory, not re-signed
    assert authority.client.get(f"/v1/status-lists/{entry.list_id}",
                                headers={"If-None-Match": before}).status_code == 304
    authority.revoke(card["card_number"])
    after, _ = _status_list(authority, entry.list_id)
    assert after != before


def test_another_process_change_shows_once_the_clock_moved(authority: Authority) -> None:
    card = authority.card_with_phone(device_key(2))
    entry = _entry(authority, card["card_number"])
    before, _ = _status_list(authority, entry.list_id)
    # As another process would: straight to the database, no commit hook here.
    with authority.database.engine.begin() as connection:
        connection.execute(text("UPDATE status_entries SET status = 1 WHERE list_id = :l "
                                "AND idx = :i"), {"l": entry.list_id, "i": entry.idx})
        connection.execute(text("UPDATE status_lists SET revision = revision + 1 "
                                "WHERE id = :l"), {"l": entry.list_id})
    authority.clock.advance(2)  # past the recheck interval (1 s)
    after, _ = _status_list(authority, entry.list_id)
    assert after != before


def test_the_index_under_its_static_name(authority: Authority) -> None:
    plain = authority.client.get("/v1/status-lists")
    static = authority.client.get("/v1/status-lists/index.json")
    assert plain.status_code == static.status_code == 200
    assert plain.json() == static.json()
