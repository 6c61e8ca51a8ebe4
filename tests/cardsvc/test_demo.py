"""``make run``'s demo data: what the README walk-through relies on is really there."""

from __future__ import annotations

from cardsvc_kit import Authority

from cardsvc.demo import seed

WALKTHROUGH_PLACEHOLDERS = {"FINGERPRINT", "CODE", "CARD", "FOREIGNER_CODE", "DUPLICATE_OF",
                            "TERMINAL_TOKEN", "REGISTRAR_TOKEN", "SUPERVISOR_TOKEN",
                            "VERIFIER_TOKEN"}


def test_the_demo_terminal_belongs_to_a_shop_and_every_card_has_money(
    authority: Authority,
) -> None:
    seeded = authority.database.transact(
        lambda session: seed(session, settings=authority.settings, now=authority.clock()))
    assert seeded is not None

    till = authority.client.get(
        "/v1/terminal", headers={"Authorization": f"Bearer {seeded.terminal_token}"})
    assert till.status_code == 200, till.text
    assert (till.json()["merchant_name"], till.json()["offline_floor_fen"]) == (
        "Demo Shop, Futian Market", 20_000)

    for card in seeded.cards:
        account = authority.client.get(f"/v1/accounts/{card.card_number}",
                                       headers=authority.admin)
        assert account.json()["balance_fen"] == 50_000, account.text
        audit = authority.client.get("/v1/audit", headers=authority.admin,
                                     params={"subject": card.card_number})
        actions = [entry["action"] for entry in audit.json()["entries"]]
        assert "account.topped_up" in actions, audit.text

    values = seeded.walkthrough_values(authority.root_fingerprint)
    assert set(values) == WALKTHROUGH_PLACEHOLDERS
    assert values["CODE"] == seeded.cards[0].provisioning_code


def test_the_demo_seeds_once(authority: Authority) -> None:
    def seeding() -> object:
        return authority.database.transact(
            lambda session: seed(session, settings=authority.settings, now=authority.clock()))

    assert seeding() is not None
    assert seeding() is None
