"""P11.1: charges verify against a trust list held in memory. A key compromised behind
the app's back (another process: no hook in this one) counts from the very next charge,
because the trust state's version is read with the card's row lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from payments_kit import pay_world
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.models import IssuerKeyRecord
from cardsvc.services.audit import Actor
from cardsvc.services.bootstrap import open_keyring
from cardsvc.services.trust import compromise_key


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql",
                                                            marks=pytest.mark.postgres)])
def test_a_key_compromised_elsewhere_counts_from_the_next_charge(
    backend: str, tmp_path: Path,
) -> None:
    with pay_world(backend, tmp_path) as world:
        card = world.card(topup=10_000)
        till = world.terminal()
        assert world.charge(till, world.pay_code(card), 100).status_code == 201
        elsewhere = Database.from_settings(world.settings, pool_size=1)  # "another process"
        try:
            keyring = open_keyring(world.settings)

            def compromise(session: Session) -> None:
                kid = session.scalars(select(IssuerKeyRecord.kid)
                                      .where(IssuerKeyRecord.state == "active")).one()
                compromise_key(session, kid=kid, keyring=keyring, actor=Actor.cli(),
                               now=world.clock(), kid_prefix=world.settings.kid_prefix)

            elsewhere.transact(compromise)
        finally:
            elsewhere.dispose()
        answer = world.charge(till, world.pay_code(card), 100)
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "KEY_COMPROMISED"
        assert world.balance(card.card_number) == 9_900
        assert world.ledger().ok
