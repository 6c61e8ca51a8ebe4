"""The common online charge made on the event loop, in two statements (P11).

A charge that will be accepted (a pay code of this authority, card-bound or one-use, a
terminal's good token, a known card with enough money, a code and a one-use handle never
charged, a key never used, the trust list held still current) is what a payment
terminal sends all day. The general
path (``charges.charge_online``) makes it in a pooled SQLAlchemy session on a worker
thread: a thread-pool hop, a pre-ping, ``BEGIN``, the token check, the locking read, the
write and ``COMMIT``. Here it takes two statements on a psycopg connection in autocommit,
awaited on the event loop:

1. **the read**, with no lock: the terminal behind the token (an active officer with a
   terminal), the card's balance row, its status entry, the trust state's version, the
   merchant's ledger account, whether this idempotency key or this pay code was seen;
2. the pay code verified in memory (it was, once, before the read) with that status,
   the receipt signed;
3. **the write**, a compare-and-set that commits by itself: the balance is written only
   if it is still the one read, and only while the token, the status entry and the trust
   version are as read; the ledger rows, the payment and the idempotency record are
   written with it, in the same statement (``_fast_charge.WRITE_IF_UNCHANGED``); for a
   one-use code also its handle marked used and the handle's status entry invalid
   (``WRITE_ONE_USE_IF_UNCHANGED``).

The invariants are the database's, as on the general path: the balance's CHECK, the
unique replay key (a pay code charged once) and the idempotency record's primary key. A
concurrent charge of the same card makes the compare-and-set write nothing; the same
code or key charged concurrently makes the write fail on its unique key. Either way, and
whenever anything else is not the plain acceptance (a refusal, a stored answer, a moved
trust version, a key not yet opened, an HSM's key, a lost connection), ``charge``
returns None having written nothing, and the route runs the general path, which judges
and answers exactly as before. A write whose connection is lost may have committed: the
general path then finds its idempotency record and answers it.

A pooled connection is not pinged before use: the read is the ping. A read that fails
on a connection that had been idle is run once more on a new one (the read changes
nothing), so after a failover no charge is lost to a stale connection. When the
database cannot be reached the general path answers (503 DATABASE_UNAVAILABLE), and this
path rests for a second rather than wait on a dead host for every charge.

Example::

    loop_charges = LoopCharges.for_database(database, keyring=..., issuer="CN-YW",
                                            trust_cache=cache, size=10)
    await loop_charges.start()               # in the app's lifespan, on its loop
    answer = await loop_charges.charge(unverified_token=token, pay_code=code,
                                       amount_fen=1250, idempotency_key="k1",
                                       challenge=None, now=now)
    if answer is None:
        ...                                  # the general path
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from cardsvc.db import Database
from cardsvc.payments._fast_charge import (
    READ_FOR_CHARGE,
    READ_FOR_ONE_USE_CHARGE,
    WRITE_IF_UNCHANGED,
    WRITE_ONE_USE_IF_UNCHANGED,
    Charge,
    LockedCharge,
    charge_params,
)
from cardsvc.payments._idempotency import Answer
from cardsvc.payments._paycode import (
    AuthorityTrustCache,
    active_kid,
    pay_code_replay_key,
    verify_any_status,
    verify_with_status,
)
from cardsvc.payments.charges import (
    _body_for_merchant,
    _for_merchant,
    charge_body,
    charge_request_hash,
)
from cardsvc.payments.receipts import Receipt, sign_receipt
from cardsvc.roles import Role, roles_in
from cardsvc.services import _published
from cardsvc.services.officers import MAX_TOKEN_CHARS, hash_token
from cardsvc.services.trust import Keyring
from keys import Ed25519Signer
from schemas import FmcError, TrustListClaims, b64url_encode
from schemas.challenge import Challenge, decode_challenge
from schemas.receipt import MAX_AMOUNT_FEN
from verifier import VerificationResult

__all__ = ["LoopCharges"]

_log = logging.getLogger(__name__)

_REST_SECONDS = 1.0  # after the database could not be reached
_SLOT_WAIT_SECONDS = 5.0  # for a connection, when every one is busy


@dataclass(frozen=True, slots=True)
class _Read:
    officer_id: int
    roles: str
    terminal_id: int
    merchant_id: int
    locked: LockedCharge  # not locked here: the write compares instead
    key_seen: bool
    code_seen: bool
    handle_unused: bool  # True for a card-bound code


class LoopCharges:
    """Accepted charges made on the event loop (one per app; PostgreSQL only).

    Holds up to ``size`` idle connections (the one returned last is lent first) and makes
    at most ``size`` charges at once: a charge beyond that waits for a connection (up to
    5 s, then it takes the general path)."""

    def __init__(self, connect_kwargs: dict[str, Any] | None, *, keyring: Keyring,
                 issuer: str, trust_cache: AuthorityTrustCache, size: int) -> None:
        self._connect_kwargs = connect_kwargs  # None: not PostgreSQL, never charges
        self._keyring = keyring
        self._issuer = issuer
        self._trust_cache = trust_cache
        self._size = size
        self._idle: list[AsyncConnection[Any]] = []
        self._slots: asyncio.Semaphore | None = None  # one per connection (start())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resting_until = 0.0

    @classmethod
    def for_database(cls, database: Database | None, *, keyring: Keyring, issuer: str,
                     trust_cache: AuthorityTrustCache, size: int) -> LoopCharges:
        """Charges on ``database`` if it is PostgreSQL (None: never; the general path)."""
        kwargs = (database.driver_connect_kwargs()
                  if database is not None and database.dialect == "postgresql" else None)
        return cls(kwargs, keyring=keyring, issuer=issuer, trust_cache=trust_cache, size=size)

    async def start(self) -> None:
        """Serve charges on the running loop (the app's lifespan calls it)."""
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self._size)

    async def close(self) -> None:
        """Stop, and close the idle connections."""
        self._loop = None
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()

    async def charge(
        self, *, unverified_token: str, pay_code: str, amount_fen: int, idempotency_key: str,
        challenge: str | None, now: datetime,
    ) -> Answer | None:
        """The stored answer of an accepted charge, or None having written nothing: the
        general path judges (and refuses, if it must)."""
        loop, slots = self._loop, self._slots
        if (loop is None or slots is None or self._connect_kwargs is None
                or asyncio.get_running_loop() is not loop or loop.time() < self._resting_until):
            return None
        if (type(amount_fen) is not int or not 0 < amount_fen <= MAX_AMOUNT_FEN
                or not unverified_token or len(unverified_token) > MAX_TOKEN_CHARS):
            return None
        epoch = int(now.timestamp())
        held = self._trust_cache.held(now=epoch)
        if held is None:
            return None
        trust, trust_version = held
        kid = active_kid(trust)
        signer = None if kid is None else self._keyring.opened(kid)
        # An HSM signs through its token: that may block, so it signs on the general path.
        if not isinstance(signer, Ed25519Signer):
            return None
        try:
            sale = None if challenge is None else decode_challenge(challenge)
        except FmcError:
            return None
        first = verify_any_status(pay_code, trust=trust, now=epoch, challenge=sale)
        credential = first.credential
        if not first.ok or credential is None:
            return None
        replay_key = pay_code_replay_key(pay_code)
        token_hash = hash_token(unverified_token)
        ref = credential.status
        handle = None if credential.pay_handle is None else credential.pay_handle.hex()
        read_params = {"token_hash": token_hash, "list_id": ref.list_id, "idx": ref.index,
                       "key": idempotency_key, "replay_key": replay_key.hex()}
        read_params |= ({"card_number": credential.card_number} if handle is None
                        else {"handle": handle})
        read_sql = READ_FOR_CHARGE if handle is None else READ_FOR_ONE_USE_CHARGE
        # More charges than connections wait here, on the loop, for one: the general path
        # would cost them more (a thread, a session, a transaction) and hold a connection
        # too. Only a long wait (a database that stopped answering) sends them there.
        try:
            async with asyncio.timeout(_SLOT_WAIT_SECONDS):
                await slots.acquire()
        except TimeoutError:
            return None
        connection: AsyncConnection[Any] | None = None
        reusable = False
        try:
            connection, pooled = await self._lend()
            if connection is None:
                return None
            try:
                row = await self._fetch(connection, read_sql, read_params)
            except psycopg.OperationalError:
                if not pooled:
                    raise
                # The pooled connection was dead (a restart, a failover): the read changed
                # nothing, so it runs once more on a new connection.
                connection.pgconn.finish()
                connection = await self._connect()
                if connection is None:
                    return None
                row = await self._fetch(connection, read_sql, read_params)
            reusable = True
            if row is None:
                return None
            decided = self._accepted(
                _read(row), pay_code=pay_code, first=first, trust=trust,
                trust_version=trust_version, signer=signer, sale=sale, amount_fen=amount_fen,
                idempotency_key=idempotency_key, challenge=challenge, replay_key=replay_key,
                token_hash=token_hash, now=now)
            if decided is None:
                return None
            params, answer = decided
            reusable = False  # until the write has answered
            write_sql = WRITE_IF_UNCHANGED if handle is None else WRITE_ONE_USE_IF_UNCHANGED
            written = await (await connection.execute(write_sql, params)).fetchone()
            reusable = True
            if written is None:
                return None
            if handle is not None:
                _published.changed_now()  # the handle's status entry: re-sign its list soon
            return answer
        except psycopg.Error as error:
            # A unique key taken (the same code or key charged meanwhile), a lost
            # connection (a write then committed or not: the general path finds out).
            _log.debug("charge on the loop not made: %s", type(error).__name__)
            return None
        finally:
            slots.release()
            if connection is not None:
                self._give_back(connection, reusable=reusable)

    def _accepted(
        self, read: _Read, *, pay_code: str, first: VerificationResult,
        trust: TrustListClaims, trust_version: int, signer: Ed25519Signer,
        sale: Challenge | None, amount_fen: int, idempotency_key: str, challenge: str | None,
        replay_key: bytes, token_hash: str, now: datetime,
    ) -> tuple[dict[str, Any], Answer] | None:
        """The write's parameters and the answer, if the read shows a plain acceptance."""
        locked = read.locked
        if (Role.terminal not in roles_in(read.roles) or read.key_seen
                or read.code_seen or not read.handle_unused or locked.merchant_account is None
                or locked.trust_version != trust_version or locked.status is None
                or locked.balance_fen < amount_fen):
            return None
        if sale is not None and (sale.merchant_id, sale.terminal_id, sale.amount_fen) != (
                read.merchant_id, read.terminal_id, amount_fen):
            return None
        epoch = int(now.timestamp())
        result = verify_with_status(pay_code, trust=trust, first=first, status=locked.status,
                                    now=epoch, challenge=sale)
        credential = result.credential
        if not result.ok or credential is None:
            return None
        payment_id = f"pay_{secrets.token_hex(10)}"
        balance_after = locked.balance_fen - amount_fen
        # A one-use code's receipt and answer name its handle, never the card or balance.
        receipt = sign_receipt(_for_merchant(credential, Receipt(
            payment_id, "payment", payment_id, self._issuer, locked.card_number,
            read.merchant_id, read.terminal_id, amount_fen, balance_after, 0, "online",
            epoch, epoch, b64url_encode(replay_key))), signer, alg=trust.signing_alg(epoch))
        body = _body_for_merchant(credential, charge_body(
            payment_id=payment_id, card_number=locked.card_number, amount_fen=amount_fen,
            balance_fen=balance_after, merchant_id=read.merchant_id,
            terminal_id=read.terminal_id, now=now, receipt=receipt))
        params = charge_params(locked=locked, body=body, charge=Charge(
            payment_id=payment_id, amount_fen=amount_fen, merchant_id=read.merchant_id,
            terminal_id=read.terminal_id, officer_id=read.officer_id,
            idempotency_key=idempotency_key,
            digest=charge_request_hash(pay_code=pay_code, amount_fen=amount_fen,
                                       challenge=challenge),
            replay_key_hex=replay_key.hex(), proof_time=result.proof_time or epoch,
            receipt=receipt, now=now))
        ref = credential.status
        params |= {"balance_before": locked.balance_fen, "token_hash": token_hash,
                   "list_id": ref.list_id, "idx": ref.index, "status": locked.status,
                   "trust_version": trust_version}
        if credential.pay_handle is not None:
            params["handle"] = credential.pay_handle.hex()
        return params, Answer(201, body)

    @staticmethod
    async def _fetch(connection: AsyncConnection[Any], sql: str,
                     params: dict[str, Any]) -> tuple[Any, ...] | None:
        return await (await connection.execute(sql, params)).fetchone()

    async def _lend(self) -> tuple[AsyncConnection[Any] | None, bool]:
        """(a connection, whether it was idle in the pool), the one returned last first."""
        if self._idle:
            return self._idle.pop(), True
        return await self._connect(), False

    async def _connect(self) -> AsyncConnection[Any] | None:
        assert self._connect_kwargs is not None
        try:
            return await AsyncConnection.connect(**self._connect_kwargs, autocommit=True)
        except psycopg.Error:
            if self._loop is not None:
                self._resting_until = self._loop.time() + _REST_SECONDS
            return None

    def _give_back(self, connection: AsyncConnection[Any], *, reusable: bool) -> None:
        if (reusable and self._loop is not None and len(self._idle) < self._size
                and not connection.closed and not connection.broken
                and connection.info.transaction_status is TransactionStatus.IDLE):
            self._idle.append(connection)
            return
        # A connection cut off in a statement (cancelled, failed) is not lent again;
        # finish() closes its socket at once, with no round trip to wait for.
        connection.pgconn.finish()


def _read(row: tuple[Any, ...]) -> _Read:
    (officer_id, roles, terminal_id, merchant_id, balance, card_account, card_id,
     card_number, status, version, merchant_account, key_seen, code_seen,
     handle_unused) = row
    return _Read(officer_id, roles, terminal_id, merchant_id,
                 LockedCharge(balance, card_account, card_id, card_number, status, version,
                              merchant_account),
                 bool(key_seen), bool(code_seen), bool(handle_unused))
