"""Concurrency: simultaneous enrolments of one passport make one person; simultaneous
revocations leave a status list that matches the card table exactly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from typing import TypeVar

import pytest
from cardsvc_kit import Authority
from federation_kit import NATIONAL_FINGERPRINT, federation, federation_jwt, yiwu
from kit.names import in_letters
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.db import Database, RetryTransaction
from cardsvc.federation import accept_federation_list
from cardsvc.models import Card, Passport, Person, StatusEntry
from cardsvc.services import cards, persons
from cardsvc.services.audit import Actor, verify_chain
from cardsvc.services.errors import DomainError
from schemas import StatusListClaims
from schemas._jose import parse_json_object, split_compact
from schemas.federation import SequenceBlock

T = TypeVar("T")


def _all_at_once(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``work(i)`` in ``count`` threads released together."""
    barrier = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("not run")] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as error:  # reported by the assertions below
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _database(authority: Authority, connections: int) -> Database:
    # One connection per thread on PostgreSQL, so that every request really runs at once.
    return Database.from_settings(authority.settings, pool_size=connections // 2)


def test_fifty_simultaneous_enrolments_of_one_passport_make_one_person(
    authority: Authority,
) -> None:
    database = _database(authority, 50)
    details = persons.PersonDetails("DIALLO", "Mamadou", "SEN", date(1990, 4, 12), "M")
    passport = persons.PassportDetails("A01234567", "SEN", date(2031, 1, 1))

    def enrol(_: int) -> tuple[str, bool]:
        outcome = database.transact(lambda session: persons.enrol_person(
            session, details=details, passport=passport, actor=Actor.cli(),
            now=authority.clock(), confirm_new=False,
            issuer=authority.settings.issuer))
        return outcome.person.foreigner_code, outcome.created

    try:
        results = _all_at_once(50, enrol)
    finally:
        database.dispose()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    codes = {r[0] for r in results if isinstance(r, tuple)}
    created = [r for r in results if isinstance(r, tuple) and r[1]]
    assert len(codes) == 1 and len(created) == 1
    with authority.database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Person)) == 1
        assert session.scalar(select(func.count()).select_from(Passport)) == 1
        assert verify_chain(session).ok


def test_simultaneous_enrolments_of_different_people_get_distinct_codes(
    authority: Authority,
) -> None:
    database = _database(authority, 20)

    def enrol(i: int) -> str:
        # Same nationality and birth date: every code comes from one sequence row.
        return database.transact(lambda session: persons.enrol_person(
            session, details=persons.PersonDetails(f"TWIN{in_letters(i)}", "Same", "IND",
                                                   date(1995, 5, 5), "F"),
            passport=persons.PassportDetails(f"T{i:08d}", "IND", date(2031, 1, 1)),
            actor=Actor.cli(), now=authority.clock(), confirm_new=True,
            issuer=authority.settings.issuer)).person.foreigner_code

    try:
        codes = _all_at_once(20, enrol)
    finally:
        database.dispose()
    assert sorted(c[14:17] for c in codes if isinstance(c, str)) == [
        f"{n:03d}" for n in range(1, 21)]


def test_simultaneous_enrolments_in_a_federation_stay_in_the_city_block(
    authority: Authority,
) -> None:
    """Twenty registrars at once, ten numbers in the block: ten distinct codes inside it,
    ten clear refusals, nothing taken twice or outside the block."""
    blocks = (SequenceBlock(301, 305), SequenceBlock(601, 605))
    jwt = federation_jwt(federation(yiwu(sequence_blocks=blocks)))
    authority.database.transact(lambda session: accept_federation_list(
        session, unverified_jwt=jwt, pinned_root=NATIONAL_FINGERPRINT,
        now=authority.clock.epoch))
    database = _database(authority, 20)

    def enrol(i: int) -> str:
        return database.transact(lambda session: persons.enrol_person(
            session, details=persons.PersonDetails(f"BLOCK{in_letters(i)}", "Same", "IND",
                                                   date(1995, 5, 5), "F"),
            passport=persons.PassportDetails(f"B{i:08d}", "IND", date(2031, 1, 1)),
            actor=Actor.cli(), now=authority.clock(), confirm_new=True,
            issuer=authority.settings.issuer)).person.foreigner_code

    try:
        results = _all_at_once(20, enrol)
    finally:
        database.dispose()
    codes = sorted(int(c[14:17]) for c in results if isinstance(c, str))
    assert codes == [301, 302, 303, 304, 305, 601, 602, 603, 604, 605]
    refusals = [r for r in results if not isinstance(r, str)]
    assert len(refusals) == 10
    assert all(isinstance(r, DomainError) and r.code == "FOREIGNER_CODE_EXHAUSTED"
               for r in refusals)
    with authority.database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Person)) == 10


def test_hundred_simultaneous_revocations_match_the_status_list(authority: Authority) -> None:
    now = authority.clock()

    def issue_all(session: Session) -> list[str]:
        numbers = []
        for i in range(110):
            person = persons.enrol_person(
                session, details=persons.PersonDetails(f"HOLDER{in_letters(i)}", "Test", "KEN",
                                                       date(1980, 1, 1 + i % 28), "F"),
                passport=persons.PassportDetails(f"K{i:08d}", "KEN", date(2031, 1, 1)),
                actor=Actor.cli(), now=now, confirm_new=True,
                issuer=authority.settings.issuer).person
            numbers.append(cards.issue_card(
                session, foreigner_code=person.foreigner_code, entitlements=["healthcare"],
                valid_until=date(2030, 1, 1), actor=Actor.cli(), now=now).card.card_number)
        return numbers

    numbers = authority.database.transact(issue_all)
    keep = numbers[::11]  # ten cards stay valid, a hundred are revoked, all at once
    targets = [n for n in numbers if n not in keep]
    assert len(targets) == 100
    database = _database(authority, 50)
    try:
        results = _all_at_once(len(targets), lambda i: database.transact(
            lambda session: cards.change_card_state(
                session, card_number=targets[i], action="revoke", reason="bulk",
                actor=Actor.cli(), now=now).state))
    finally:
        database.dispose()
    assert results == ["revoked"] * len(targets)

    jwt = authority.client.get("/v1/status-lists/1").text
    statuses = StatusListClaims.from_payload(parse_json_object(split_compact(jwt)[2])).statuses
    with authority.database.sessions() as session:
        expected: set[tuple[int, int]] = set()
        for card in session.scalars(select(Card)):
            assert card.status_index is not None
            expected.add((card.status_index, {"active": 0, "revoked": 1}[card.state]))
        entries = session.execute(select(StatusEntry.idx, StatusEntry.status)).all()
        assert verify_chain(session).ok
    assert {(index, status) for index, status in entries} == expected
    published = {i for i in range(statuses.size) if statuses.get(i) != 0}
    assert published == {index for index, status in expected if status == 1}
    assert all(statuses.get(index) == status for index, status in expected)


def test_a_transaction_asked_to_run_again_is_rolled_back_and_run_again(
    authority: Authority,
) -> None:
    """RetryTransaction (an enrolment that lost a unique key to a concurrent one): what
    the first run wrote is gone, the second run's answer stands; after the last attempt
    the fallback error is raised and nothing stays."""
    runs: list[int] = []

    def clash_once(session: Session) -> str:
        runs.append(1)
        person = persons.enrol_person(
            session, details=persons.PersonDetails("RETRY", "Once", "NGA", date(1990, 1, 1),
                                                   "F"),
            passport=persons.PassportDetails(f"R{len(runs):08d}", "NGA", date(2031, 1, 1)),
            actor=Actor.cli(), now=authority.clock(), confirm_new=True,
            issuer=authority.settings.issuer).person
        if len(runs) == 1:
            raise RetryTransaction(DomainError("NEVER", "not raised"))
        return person.foreigner_code

    code = authority.database.transact(clash_once)
    assert len(runs) == 2

    def always(session: Session) -> None:
        persons.enrol_person(
            session, details=persons.PersonDetails("RETRY", "Never", "NGA", date(1991, 1, 1),
                                                   "F"),
            passport=persons.PassportDetails("N00000001", "NGA", date(2031, 1, 1)),
            actor=Actor.cli(), now=authority.clock(), confirm_new=True,
            issuer=authority.settings.issuer)
        raise RetryTransaction(DomainError("ENROLMENT_CONFLICT", "gave up"))

    with pytest.raises(DomainError) as raised:
        authority.database.transact(always, attempts=3)
    assert raised.value.code == "ENROLMENT_CONFLICT"
    with authority.database.sessions() as session:
        persons_now = session.scalars(select(Person.foreigner_code)
                                      .where(Person.surname == "RETRY")).all()
        assert persons_now == [code]  # the first run's person and the last ones' are gone
