"""The common online charge on PostgreSQL in two pre-written statements (P11).

A charge that will be accepted (a known card with a balance row, enough money, a pay code
never charged, an idempotency key never used, the trust list held still current) is the
case worth making cheap. It is written here as two fixed SQL texts sent through the
connection's driver (no ORM unit of work, no statement built or compiled per request;
psycopg prepares them server-side after a few uses):

1. the locking read: the card's balance row ``FOR UPDATE`` and, in the same statement,
   the card, its status entry, the trust state's version, the merchant's ledger account,
   any idempotency record under this key and any payment of this pay code;
2. the write: balance, ledger transaction, its two entries, payment and idempotency
   record as one statement (data-modifying CTEs).

Anything else (a refusal, a stored answer, an unknown card, a moved trust version)
returns None and the caller runs the general path in the same transaction; nothing was
written yet, and the lock it holds is the one that path takes first anyway.

Why reading the idempotency record and the replay key in the locking statement is
safe: under READ COMMITTED that statement's subqueries see the snapshot taken before it
waited for the lock, so a charge of the same code or key committed while we waited is
not seen here. The primary key of ``idempotency_records`` and the unique
``payments.replay_key`` then refuse the write (IntegrityError), the whole transaction
is rolled back and run again by the route, and the second run sees the committed row.
The balance is the locked row's newest version, as PostgreSQL re-reads a row it waited
for. A record found is committed and real: its answer is given by the general path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from cardsvc.payments._idempotency import Answer, canonical_json
from cardsvc.payments.ledger import merchant_account_key
from schemas import Credential

__all__ = ["READ_FOR_CHARGE", "READ_FOR_ONE_USE_CHARGE", "WRITE_IF_UNCHANGED",
           "WRITE_ONE_USE_IF_UNCHANGED", "Charge", "LockedCharge", "charge_params",
           "lock_for_charge", "write_charge"]

_LOCK = """SELECT b.balance_fen, b.account_id, c.id, c.card_number,
  (SELECT status FROM status_entries WHERE list_id = %(list_id)s AND idx = %(idx)s),
  (SELECT version FROM trust_state WHERE id = 1),
  (SELECT id FROM ledger_accounts WHERE key = %(merchant_key)s),
  (SELECT request_hash FROM idempotency_records
    WHERE officer_id = %(officer_id)s AND key = %(key)s),
  (SELECT id FROM payments WHERE replay_key = %(replay_key)s)
FROM card_balances b JOIN cards c ON c.id = b.card_id
WHERE c.card_number = %(card_number)s
FOR UPDATE OF b"""

# What an accepted charge writes once its balance row is updated (the CTE ``balance``):
# ledger transaction, its two entries, the payment and the idempotency record. The
# payment's id is an expression: a one-use charge's write guards it (below).
_CHARGE_ROWS_OF = """
  txn AS (INSERT INTO ledger_transactions (kind, reference, card_id, posted_at)
    SELECT 'charge', %(payment_id)s, card_id, %(now)s FROM balance RETURNING id),
  entries AS (INSERT INTO ledger_entries (transaction_id, account_id, amount_fen)
    SELECT txn.id, e.account_id, e.amount_fen FROM txn,
      (VALUES (%(card_account)s::integer, %(amount)s::bigint),
              (%(merchant_account)s::integer, -%(amount)s::bigint)) AS e(account_id, amount_fen)),
  payment AS (INSERT INTO payments (id, card_id, merchant_id, terminal_id, mode, amount_fen,
      refunded_fen, overdraft_fen, balance_after_fen, replay_key, proof_time, accepted_at,
      settled_at, transaction_id, receipt)
    SELECT {payment_id}, %(card_id)s, %(merchant_id)s, %(terminal_id)s, 'online',
      %(amount)s, 0, 0, %(balance_after)s, %(replay_key)s, %(proof_time)s, %(now)s, %(now)s,
      txn.id, %(receipt)s FROM txn)
INSERT INTO idempotency_records (officer_id, key, request_hash, status_code, response,
  created_at)
SELECT %(officer_id)s, %(key)s, %(digest)s, 201, %(response)s, %(now)s FROM txn"""
_CHARGE_ROWS = _CHARGE_ROWS_OF.format(payment_id="%(payment_id)s")

_WRITE = """WITH balance AS (
    UPDATE card_balances SET balance_fen = %(balance_after)s, updated_at = %(now)s
    WHERE card_id = %(card_id)s RETURNING card_id),""" + _CHARGE_ROWS  # noqa: S608 (constants)

# The charge made on the event loop (cardsvc/payments/_loop_charge.py) holds no lock
# between its read and this write: the balance is written only if it is still the one
# read (a compare-and-set), and only while the terminal's token, the card's status entry
# and the trust state's version are as they were read. Otherwise the balance CTE updates
# nothing, every insert selects from it and writes nothing, and no row comes back.
_BALANCE_IF_UNCHANGED = """WITH balance AS (
    UPDATE card_balances SET balance_fen = %(balance_after)s, updated_at = %(now)s
    WHERE card_id = %(card_id)s AND balance_fen = %(balance_before)s
      AND EXISTS (SELECT 1 FROM officers
                  WHERE id = %(officer_id)s AND token_hash = %(token_hash)s AND active)
      AND (SELECT status FROM status_entries
           WHERE list_id = %(list_id)s AND idx = %(idx)s) = %(status)s
      AND (SELECT version FROM trust_state WHERE id = 1) = %(trust_version)s"""
WRITE_IF_UNCHANGED = _BALANCE_IF_UNCHANGED + """
    RETURNING card_id),""" + _CHARGE_ROWS + """
RETURNING officer_id"""

# A one-use code's charge on the loop also marks its handle used and the handle's status
# entry invalid (its list's revision moves on), in the same statement. The balance is
# written only while the handle is unused; as every charge of a handle is a charge of its
# card, a handle used since the read has moved the balance too and the compare fails. Were
# the handle's update ever to find it used all the same, the payment's id is NULL: the
# statement fails on the primary key and nothing at all is written.
_ONE_USE_CHARGE_ROWS = _CHARGE_ROWS_OF.format(
    payment_id="CASE WHEN (SELECT count(*) FROM handle) = 1 THEN %(payment_id)s END")
WRITE_ONE_USE_IF_UNCHANGED = _BALANCE_IF_UNCHANGED + """
      AND EXISTS (SELECT 1 FROM pay_handles WHERE handle = %(handle)s AND card_id = %(card_id)s
                  AND used_at IS NULL AND ended_at IS NULL)
    RETURNING card_id),
  handle AS (UPDATE pay_handles SET used_at = %(now)s, payment_id = %(payment_id)s
    WHERE handle = %(handle)s AND used_at IS NULL AND card_id IN (SELECT card_id FROM balance)
    RETURNING status_list_id, status_index),
  entry AS (UPDATE status_entries e SET status = 1 FROM handle
    WHERE e.list_id = handle.status_list_id AND e.idx = handle.status_index AND e.status <> 1
    RETURNING e.list_id),
  revision AS (UPDATE status_lists SET revision = revision + 1
    WHERE id IN (SELECT list_id FROM entry)),""" + _ONE_USE_CHARGE_ROWS + """
RETURNING officer_id"""  # noqa: S608 (constants only)

# Its read, with no lock: the terminal behind the token (an active officer) and, for the
# card, what the locking read of the general path reads. The merchant's ledger account
# key is merchant_account_key's ('merchant:<id>'); were it ever to differ, the account
# reads NULL and the general path charges.
_READ_COLUMNS = """SELECT o.id, o.roles, t.id, t.merchant_id,
  b.balance_fen, b.account_id, c.id, c.card_number,
  (SELECT status FROM status_entries WHERE list_id = %(list_id)s AND idx = %(idx)s),
  (SELECT version FROM trust_state WHERE id = 1),
  (SELECT id FROM ledger_accounts WHERE key = 'merchant:' || t.merchant_id),
  EXISTS (SELECT 1 FROM idempotency_records WHERE officer_id = o.id AND key = %(key)s),
  EXISTS (SELECT 1 FROM payments WHERE replay_key = %(replay_key)s),"""
READ_FOR_CHARGE = _READ_COLUMNS + """ true
FROM officers o JOIN terminals t ON t.officer_id = o.id,
  cards c JOIN card_balances b ON b.card_id = c.id
WHERE o.token_hash = %(token_hash)s AND o.active AND c.card_number = %(card_number)s"""
# A one-use code names its handle, not its card; the last column: the handle is unused.
READ_FOR_ONE_USE_CHARGE = _READ_COLUMNS + """ h.used_at IS NULL AND h.ended_at IS NULL
FROM officers o JOIN terminals t ON t.officer_id = o.id,
  pay_handles h JOIN cards c ON c.id = h.card_id JOIN card_balances b ON b.card_id = c.id
WHERE o.token_hash = %(token_hash)s AND o.active AND h.handle = %(handle)s"""


@dataclass(frozen=True, slots=True)
class LockedCharge:
    """What the locking read found, the balance row now locked until commit."""

    balance_fen: int
    card_account: int
    card_id: int
    card_number: str
    status: int | None
    trust_version: int | None
    merchant_account: int


@dataclass(frozen=True, slots=True)
class Charge:
    """One accepted online charge, as it is written."""

    payment_id: str
    amount_fen: int
    merchant_id: int
    terminal_id: int
    officer_id: int
    idempotency_key: str
    digest: str
    replay_key_hex: str
    proof_time: int
    receipt: str
    now: datetime


def _driver_execute(session: Session, sql: str, params: dict[str, Any]) -> Any:
    # The driver's SQL text as is: no compile step, errors still wrapped as SQLAlchemy's
    # (IntegrityError is retried by the route, a lost connection is invalidated).
    return session.connection().exec_driver_sql(sql, params)


def lock_for_charge(
    session: Session, credential: Credential, *, replay_key_hex: str, officer_id: int,
    idempotency_key: str, merchant_id: int,
) -> LockedCharge | None:
    """The card's balance row locked, with what the charge needs; None when the general
    path must judge (no such card or balance row, a record under this key, a code charged
    before, or no merchant account yet)."""
    ref = credential.status
    found = _driver_execute(session, _LOCK, {
        "list_id": ref.list_id, "idx": ref.index, "merchant_key": merchant_account_key(merchant_id),
        "officer_id": officer_id, "key": idempotency_key, "replay_key": replay_key_hex,
        "card_number": credential.card_number}).first()
    if found is None:
        return None
    balance, card_account, card_id, card_number, status, version, merchant_account, \
        stored_hash, paid = found
    if stored_hash is not None or paid is not None or merchant_account is None:
        return None
    return LockedCharge(balance, card_account, card_id, card_number, status, version,
                        merchant_account)


def charge_params(*, locked: LockedCharge, charge: Charge,
                  body: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the write (``_WRITE``, ``WRITE_IF_UNCHANGED`` adds its own)."""
    return {
        "balance_after": locked.balance_fen - charge.amount_fen, "now": charge.now.astimezone(UTC),
        "card_id": locked.card_id, "payment_id": charge.payment_id,
        "card_account": locked.card_account, "merchant_account": locked.merchant_account,
        "amount": charge.amount_fen, "merchant_id": charge.merchant_id,
        "terminal_id": charge.terminal_id, "replay_key": charge.replay_key_hex,
        "proof_time": charge.proof_time, "receipt": charge.receipt,
        "officer_id": charge.officer_id, "key": charge.idempotency_key,
        "digest": charge.digest, "response": canonical_json(body)}


def write_charge(session: Session, *, locked: LockedCharge, charge: Charge,
                 body: dict[str, Any]) -> Answer:
    """The one-statement write of an accepted charge; the answer it stores."""
    _driver_execute(session, _WRITE, charge_params(locked=locked, charge=charge, body=body))
    return Answer(201, body)

