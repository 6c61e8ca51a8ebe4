"""P11.3: the signed lists are served from memory; a change committed in this process
shows at once, another process's change once the recheck interval or the clock moved;
the recheck is done ahead, off the request path, and a burst past it reads the database
once; 304 on the ETag; the status list index also under its static mirror name."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from cardsvc_kit import Authority, device_key
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cardsvc.api._context import AppContext
from cardsvc.models import Card, StatusEntry
from cardsvc.publisher import ASKED_WINDOW_SECONDS, FULL_REFRESH_SECONDS, Publisher
from cardsvc.services.trust import SignedObject
from schemas import StatusListClaims
from schemas._jose import parse_json_object, split_compact
from schemas.status_list import DAY_LIST_GRACE_SECONDS, day_list_id
from schemas.timestamp import TimestampClaims, list_digest


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


def _revoke_as_another_process(authority: Authority, entry: StatusEntry) -> None:
    """Straight to the database, as another worker or a CLI would: no commit hook here."""
    with authority.database.engine.begin() as connection:
        connection.execute(text("UPDATE status_entries SET status = 1 WHERE list_id = :l "
                                "AND idx = :i"), {"l": entry.list_id, "i": entry.idx})
        connection.execute(text("UPDATE status_lists SET revision = revision + 1 "
                                "WHERE id = :l"), {"l": entry.list_id})


class _Monotonic:
    """The publisher's age clock, moved by hand (no sleeps)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _publisher(authority: Authority, monotonic: _Monotonic) -> Publisher:
    context = authority.client.app.state.context  # type: ignore[attr-defined]
    assert isinstance(context, AppContext)
    return Publisher(authority.settings, authority.database, context.keyring,
                     clock=authority.clock, recheck_seconds=1.0, monotonic=monotonic)


def test_another_process_change_shows_once_the_clock_moved(authority: Authority) -> None:
    card = authority.card_with_phone(device_key(2))
    entry = _entry(authority, card["card_number"])
    before, _ = _status_list(authority, entry.list_id)
    _revoke_as_another_process(authority, entry)
    authority.clock.advance(2)  # past the recheck interval (1 s)
    after, _ = _status_list(authority, entry.list_id)
    assert after != before


def _status(signed: SignedObject, index: int) -> int:
    payload = parse_json_object(split_compact(signed.jwt)[2])
    return StatusListClaims.from_payload(payload).statuses.get(index)


def test_the_index_under_its_static_name(authority: Authority) -> None:
    plain = authority.client.get("/v1/status-lists")
    static = authority.client.get("/v1/status-lists/index.json")
    assert plain.status_code == static.status_code == 200
    assert plain.json() == static.json()


def test_another_process_revocation_is_served_within_the_recheck(authority: Authority) -> None:
    """The documented bound (CARDSVC_PUBLICATION_RECHECK_SECONDS): before it the answer
    from memory, at it the revoked list, with the injected clock standing still."""
    entry = _entry(authority, authority.card_with_phone(device_key(3))["card_number"])
    monotonic = _Monotonic()
    publisher = _publisher(authority, monotonic)
    try:
        before = publisher.status_list(entry.list_id, authority.clock())
        _revoke_as_another_process(authority, entry)
        monotonic.now += 0.4  # not yet half-way: from memory, nothing read
        assert publisher.status_list(entry.list_id, authority.clock()) == before
        monotonic.now += 0.6  # the recheck interval has passed: read on this request
        after = publisher.status_list(entry.list_id, authority.clock())
        assert after.etag != before.etag
        assert _status(after, entry.idx) == 1
    finally:
        publisher.close()


def test_the_recheck_is_done_ahead_off_the_request_path(authority: Authority) -> None:
    """Half-way to the recheck a request still answers from memory and wakes the
    background refresh, which swaps in the new list: no request waits for the database."""
    entry = _entry(authority, authority.card_with_phone(device_key(4))["card_number"])
    monotonic = _Monotonic()
    publisher = _publisher(authority, monotonic)
    try:
        before = publisher.status_list(entry.list_id, authority.clock())
        _revoke_as_another_process(authority, entry)
        monotonic.now += 0.6
        assert publisher.status_list(entry.list_id, authority.clock()) == before
    finally:
        publisher.close()  # waits for the refresh that request woke
    after = publisher.status_list(entry.list_id, authority.clock())  # from memory again
    assert after.etag != before.etag
    assert _status(after, entry.idx) == 1


def test_a_burst_past_the_recheck_reads_the_database_once(authority: Authority) -> None:
    entry = _entry(authority, authority.card_with_phone(device_key(5))["card_number"])
    monotonic = _Monotonic()
    publisher = _publisher(authority, monotonic)
    reads: list[str] = []
    read_status_list = publisher._status_list

    def counted(list_id: str, now: object) -> SignedObject:
        reads.append(list_id)
        return read_status_list(list_id, now)  # type: ignore[arg-type]

    publisher._status_list = counted  # type: ignore[method-assign]
    try:
        publisher.status_list(entry.list_id, authority.clock())
        monotonic.now += 5  # every request of the burst finds the answer past its recheck
        barrier = threading.Barrier(8)
        answers: list[SignedObject] = []

        def request() -> None:
            barrier.wait()
            answers.append(publisher.status_list(entry.list_id, authority.clock()))

        threads = [threading.Thread(target=request) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        publisher.close()
    assert reads == [entry.list_id] * 2  # the first request, then one for the burst
    assert len({answer.etag for answer in answers}) == 1 and len(answers) == 8


def test_after_a_refresh_the_lists_are_those_the_timestamp_names(authority: Authority) -> None:
    entry = _entry(authority, authority.card_with_phone(device_key(6))["card_number"])
    monotonic = _Monotonic()
    publisher = _publisher(authority, monotonic)
    try:
        now = authority.clock()
        publisher.timestamp(now)
        publisher.trust_list(now)
        publisher.status_list(entry.list_id, now)
        _revoke_as_another_process(authority, entry)
        publisher.refresh()  # what the background refresh does, here in this thread
        claims = TimestampClaims.from_payload(
            parse_json_object(split_compact(publisher.timestamp(now).jwt)[2]))
        served = publisher.status_list(entry.list_id, now)
        assert _status(served, entry.idx) == 1
        assert claims.status_lists[entry.list_id].sha256 == list_digest(served.jwt)
        assert claims.trust_list.sha256 == list_digest(publisher.trust_list(now).jwt)
    finally:
        publisher.close()


def test_the_federation_list_is_served_from_memory_or_not_configured(
        authority: Authority) -> None:
    answer = authority.client.get("/v1/federation-list")
    assert answer.status_code == 404
    assert answer.json()["code"] == "FEDERATION_NOT_CONFIGURED"


class _NoDatabase:
    """Stands in for the database: any read is a failure of the test."""

    def transact(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("held() read the database")


def test_held_answers_only_from_memory(authority: Authority) -> None:
    """What the async routes answer on the event loop: the held object while usable, else
    None (the route then reads in a thread); never a database read or a lock wait."""
    monotonic = _Monotonic()
    publisher = _publisher(authority, monotonic)
    now = authority.clock()
    database = publisher.database
    try:
        assert publisher.held("trust", now) is None  # nothing held yet
        publisher.trust_list(now)  # the first signing commits, which a held answer must see
        signed = publisher.trust_list(now)
        publisher.database = _NoDatabase()  # type: ignore[assignment]
        assert publisher.held("trust", now) == signed
        assert publisher.held("status:1", now) is None
        monotonic.now += 1.5  # past the recheck: must be read again
        assert publisher.held("trust", now) is None
    finally:
        publisher.database = database
        publisher.close()


def test_unknown_or_retired_lists_are_not_held_nor_remembered(authority: Authority) -> None:
    """The list id in the path is the caller's: asking for ids that do not exist leaves
    nothing behind, and a day list held until a moment before its retirement is not
    served a moment after it."""
    publisher = _publisher(authority, _Monotonic())
    now = authority.clock()
    day = int(now.timestamp()) // 86_400 * 86_400
    retires = datetime.fromtimestamp(day + 86_400 + DAY_LIST_GRACE_SECONDS, UTC)
    try:
        publisher.index(now)  # opens the horizon's day lists
        before = retires - timedelta(milliseconds=500)
        publisher.status_list(day_list_id(day), before)
        publisher.status_list(day_list_id(day), before)  # held now
        assert publisher.held(f"status:{day_list_id(day)}", before) is not None
        assert publisher.held(f"status:{day_list_id(day)}", retires) is None
        for n in range(1_000):
            assert publisher.held(f"status:x{n}", now) is None
        assert not any(key.startswith("status:x") for key in publisher._asked)
    finally:
        publisher.close()


def test_a_list_asked_within_the_window_is_kept_fresh_between_requests(
        authority: Authority) -> None:
    """Polled in bursts further apart than the recheck (but within the window), a list
    is refreshed in the background in between: the next burst's first request answers
    from memory, with another process's revocation, and reads nothing."""
    entry = _entry(authority, authority.card_with_phone(device_key(7))["card_number"])
    monotonic = _Monotonic()
    publisher = _publisher(authority, monotonic)
    key = f"status:{entry.list_id}"
    database = publisher.database
    try:
        before = publisher.status_list(entry.list_id, authority.clock())
        _revoke_as_another_process(authority, entry)
        for _ in range(3):  # 1.5 s without a request: what the refresher does meanwhile
            monotonic.now += 0.5
            publisher.refresh()
        publisher.database = _NoDatabase()  # type: ignore[assignment]
        after = publisher.held(key, authority.clock())
        assert after is not None and after.etag != before.etag
        assert _status(after, entry.idx) == 1
    finally:
        publisher.database = database
        publisher.close()


def test_a_list_not_asked_within_the_window_is_neither_read_nor_remembered(
        authority: Authority) -> None:
    monotonic = _Monotonic()
    publisher = _publisher(authority, monotonic)
    now = authority.clock()
    database = publisher.database
    try:
        publisher.trust_list(now)
        publisher.trust_list(now)  # held (the first read signed and committed)
        monotonic.now += ASKED_WINDOW_SECONDS + 1
        publisher.database = _NoDatabase()  # type: ignore[assignment]
        publisher.refresh()  # nothing asked for within the window: nothing read
        assert publisher._asked == {}
        assert publisher.held("trust", now) is None  # past its recheck: read on request
    finally:
        publisher.database = database
        publisher.close()


def test_the_refresher_runs_while_asked_and_stops_on_close(authority: Authority) -> None:
    """Woken once, the refresher goes on refreshing (no further request) until closed."""
    monotonic = _Monotonic()
    publisher = _publisher(authority, monotonic)
    refreshed = threading.Semaphore(0)
    refresh = publisher.refresh

    def counted(now: datetime | None = None) -> None:
        refresh(now)
        refreshed.release()

    publisher.refresh = counted  # type: ignore[method-assign]
    try:
        publisher.trust_list(authority.clock())
        publisher.trust_list(authority.clock())
        monotonic.now += 0.6  # half-way: this request wakes the refresher
        assert publisher.held("trust", authority.clock()) is not None
        for _ in range(3):  # three rounds, one request only
            assert refreshed.acquire(timeout=30)
    finally:
        publisher.close()
    assert publisher._refresher is not None and not publisher._refresher.is_alive()


def test_the_refresher_stops_when_a_refresh_fails(authority: Authority) -> None:
    """A failed read (the database gone or down) ends the background loop: the request
    path reads, and reports, when an answer is due; a later request wakes it again."""
    monotonic = _Monotonic()
    publisher = _publisher(authority, monotonic)
    database = publisher.database
    try:
        publisher.trust_list(authority.clock())
        publisher.trust_list(authority.clock())
        publisher.database = _NoDatabase()  # type: ignore[assignment]
        monotonic.now += 0.6
        assert publisher.held("trust", authority.clock()) is not None  # wakes it
        refresher = publisher._refresher
        assert refresher is not None
        refresher.join(timeout=30)
        assert not refresher.is_alive()  # ended on its own, not closed
    finally:
        publisher.database = database
        publisher.close()


class _Counting:
    """The database, counting the transactions made through it."""

    def __init__(self, database: object) -> None:
        self.database = database
        self.transactions = 0

    def transact(self, *args: object, **kwargs: object) -> object:
        self.transactions += 1
        return self.database.transact(*args, **kwargs)  # type: ignore[attr-defined]


_TIMESTAMP_KEY = "timestamp"


def test_a_refresh_that_finds_nothing_changed_reads_one_fingerprint(
        authority: Authority) -> None:
    """The background refresh of unchanged lists is one read-only transaction, not a
    read (and a transaction) per object; the full read is made at least every
    FULL_REFRESH_SECONDS, for what falls due by time alone."""
    monotonic = _Monotonic()
    publisher = _publisher(authority, monotonic)
    now = authority.clock()
    database = publisher.database
    counting = _Counting(database)
    try:
        publisher.timestamp(now)
        publisher.trust_list(now)
        for list_id in publisher.status_list_ids(now):
            publisher.status_list(list_id, now)
        publisher.refresh()  # the first: a full read
        publisher.database = counting  # type: ignore[assignment]
        monotonic.now += 0.5
        publisher.refresh()
        assert counting.transactions == 1
        publisher.database = _NoDatabase()  # type: ignore[assignment]
        assert publisher.held("trust", now) is not None  # checked: still served
        assert publisher.held(_TIMESTAMP_KEY, now) is not None
        publisher.database = counting  # type: ignore[assignment]
        monotonic.now += FULL_REFRESH_SECONDS
        publisher.refresh()
        assert counting.transactions > 3  # every object read again
    finally:
        publisher.database = database
        publisher.close()


def test_a_refresh_after_another_process_s_change_reads_it(authority: Authority) -> None:
    """The fingerprint follows a change made elsewhere (no commit hook in this process):
    the next refresh reads the objects again and holds the new list."""
    entry = _entry(authority, authority.card_with_phone(device_key(8))["card_number"])
    monotonic = _Monotonic()
    publisher = _publisher(authority, monotonic)
    now = authority.clock()
    try:
        before = publisher.status_list(entry.list_id, now)
        publisher.refresh()
        monotonic.now += 0.5
        publisher.refresh()  # nothing changed
        assert publisher.held(f"status:{entry.list_id}", now) == before
        _revoke_as_another_process(authority, entry)
        monotonic.now += 0.5
        publisher.refresh()
        after = publisher.held(f"status:{entry.list_id}", now)
        assert after is not None and after.etag != before.etag
        assert _status(after, entry.idx) == 1
    finally:
        publisher.close()


def test_an_answer_read_before_the_fingerprint_is_read_again(authority: Authority) -> None:
    """An answer read on request before the last full refresh (not asked for then) may
    predate a change that refresh saw: an unchanged fingerprint does not vouch for it."""
    entry = _entry(authority, authority.card_with_phone(device_key(9))["card_number"])
    monotonic = _Monotonic()
    publisher = _publisher(authority, monotonic)
    now = authority.clock()
    key = f"status:{entry.list_id}"
    try:
        before = publisher.status_list(entry.list_id, now)  # read, then not asked
        publisher._asked.pop(key)
        _revoke_as_another_process(authority, entry)
        monotonic.now += 0.2
        publisher.trust_list(now)
        publisher.refresh()  # full: the fingerprint has the revocation; the list not asked
        monotonic.now += 0.2
        publisher._asked[key] = monotonic.now  # asked again, still within its recheck
        publisher.refresh()  # the fingerprint unchanged: the list is read, not vouched for
        after = publisher.held(key, now)
        assert after is not None and after.etag != before.etag
        assert _status(after, entry.idx) == 1
    finally:
        publisher.close()
