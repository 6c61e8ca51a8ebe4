"""P11.1: the accepted online charge in few statements, and what its shortcuts must not
break: a terminal held in memory is still refused at once when its token is deactivated
(by another process), and on PostgreSQL an accepted charge on the general path (charges
on the event loop off: tests/payments/test_loop_charge.py has those) is the token check,
one locking read and one write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from payments_kit import pay_world, statements_sent
from sqlalchemy import event

from cardsvc.db import Database
from cardsvc.services.audit import Actor
from cardsvc.services.officers import deactivate_officer

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_terminal_deactivated_elsewhere_is_refused_at_the_next_charge(
    backend: str, tmp_path: Path,
) -> None:
    with pay_world(backend, tmp_path) as world:
        card = world.card(topup=10_000)
        till = world.terminal()
        assert world.charge(till, world.pay_code(card), 100).status_code == 201  # now held
        elsewhere = Database.from_settings(world.settings, pool_size=1)  # "another process"
        try:
            elsewhere.transact(lambda session: deactivate_officer(
                session, officer_id=till.officer_id, actor=Actor.cli(), now=world.clock()))
        finally:
            elsewhere.dispose()
        answer = world.charge(till, world.pay_code(card), 100)
        assert answer.status_code == 401, answer.text
        assert answer.json()["code"] == "UNAUTHENTICATED"
        assert world.balance(card.card_number) == 9_900
        assert world.ledger().ok


@pytest.mark.postgres
def test_an_accepted_charge_on_postgresql_is_threestatements_sent(tmp_path: Path) -> None:
    with pay_world("postgresql", tmp_path, charges_on_loop=False) as world:
        card = world.card(topup=10_000)
        till = world.terminal()
        assert world.charge(till, world.pay_code(card), 100).status_code == 201  # warm
        with statements_sent(world.database) as sent:
            answer = world.charge(till, world.pay_code(card), 100)
        assert answer.status_code == 201, answer.text
        work = [s for s in sent if s.strip().upper() not in ("SELECT 1", "BEGIN", "COMMIT")]
        assert len(work) == 3, work  # the token, the locking read, the write
        assert "FOR UPDATE" in work[1] and work[2].lstrip().startswith("WITH balance")
        assert world.balance(card.card_number) == 9_800
        assert world.ledger().ok


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_charge_checks_its_token_on_the_charge_s_own_connection(
    backend: str, tmp_path: Path,
) -> None:
    """P11: one pooled connection per charge (one checkout, one pre-ping on PostgreSQL),
    the token read first in that transaction."""
    with pay_world(backend, tmp_path, charges_on_loop=False) as world:
        card = world.card(topup=10_000)
        till = world.terminal()
        assert world.charge(till, world.pay_code(card), 100).status_code == 201  # warm
        checkouts: list[object] = []

        def checked_out(*_args: Any) -> None:
            checkouts.append(_args[0])

        event.listen(world.database.engine, "checkout", checked_out)
        try:
            with statements_sent(world.database) as sent:
                answer = world.charge(till, world.pay_code(card), 100)
        finally:
            event.remove(world.database.engine, "checkout", checked_out)
        assert answer.status_code == 201, answer.text
        assert len(checkouts) == 1
        work = [s for s in sent if s.strip().upper() not in ("SELECT 1", "BEGIN", "COMMIT")
                and not s.strip().upper().startswith("BEGIN ")]
        assert "officers" in work[0] and "token_hash" in work[0]
        assert world.balance(card.card_number) == 9_800
