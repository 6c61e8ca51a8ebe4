"""Payments with the Foreign Merchant Card (docs/DESIGN.md sections 9 and 10).

A stored-value account per card in integer fen over a double-entry ledger; merchants
and their terminals; online charges of pay codes (each charged at most once, anywhere),
store-and-forward settlement of what terminals accepted offline, refunds, and a daily
settlement report per merchant that reconciles to the ledger.

Modules: ``models`` (tables), ``ledger`` (accounts and balanced posting), ``merchants``,
``charges`` (top-ups, charges, offline settlement, refunds), ``reports``, ``receipts``,
and ``routes`` (the FastAPI router, the only module that imports FastAPI).

Example::

    from cardsvc.payments.charges import PaymentContext, charge_online
    answer = database.transact(lambda session: charge_online(
        session, pay_code=text, amount_fen=1250, idempotency_key="till1-0042",
        terminal=terminal, ctx=PaymentContext(keyring, settings.issuer), now=now))
"""

__all__: list[str] = []
