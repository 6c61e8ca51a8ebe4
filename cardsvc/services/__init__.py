"""Domain services: plain keyword-only functions over a Session; they never import FastAPI
and raise :class:`cardsvc.services.errors.DomainError` subclasses with a stable ``code``.

Run them inside ``Database.transact`` so each request is one transaction::

    database.transact(lambda session: cards.change_card_state(
        session, card_number=no, action="revoke", reason="lost", actor=actor, now=now))

Modules: persons (enrolment, passports, portraits), cards (issue, state, codes),
provisioning (bundles), status (status lists), trust (keys, trust list), audit,
officers, bootstrap (init).
"""
