"""What every request needs: settings, database, keys and the clock (one per app)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from cardsvc.db import Database
from cardsvc.payments._loop_charge import LoopCharges
from cardsvc.payments._paycode import AuthorityTrustCache
from cardsvc.payments.merchants import TerminalDirectory
from cardsvc.payments.pay_batch import PayBatchPolicy
from cardsvc.publisher import Publisher
from cardsvc.services.provisioning import SigningContext
from cardsvc.services.trust import Keyring
from cardsvc.settings import Settings

__all__ = ["AppContext"]


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    database: Database
    keyring: Keyring
    clock: Callable[[], datetime]
    # Outgoing requests to other cities' authorities (P10); tests route it in process.
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0))
    publisher: Publisher = field(init=False, repr=False, compare=False)
    # the trust list charges verify against, held between requests
    trust_cache: AuthorityTrustCache = field(default_factory=AuthorityTrustCache, repr=False,
                                             compare=False)
    # terminal officer -> its (immutable) terminal, held between requests
    terminals: TerminalDirectory = field(default_factory=TerminalDirectory, repr=False,
                                         compare=False)

    # accepted charges made on the event loop (PostgreSQL; started by the app's lifespan)
    loop_charges: LoopCharges = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # what verifiers sync, held in memory (one per app)
        object.__setattr__(self, "publisher",
                           Publisher(self.settings, self.database, self.keyring,
                                     clock=self.clock))
        object.__setattr__(self, "loop_charges", LoopCharges.for_database(
            self.database if self.settings.charges_on_loop else None, keyring=self.keyring,
            issuer=self.settings.issuer, trust_cache=self.trust_cache,
            size=self.settings.db_pool_size))

    @property
    def signing(self) -> SigningContext:
        return SigningContext(self.keyring, self.settings.issuer,
                              self.settings.credential_lifetime_days,
                              self.settings.status_list_size)

    @property
    def pay_batch_policy(self) -> PayBatchPolicy:
        return PayBatchPolicy(self.settings.one_use_pay_lifetime_days,
                              self.settings.pay_batch_max,
                              self.settings.pay_handles_outstanding_max,
                              self.settings.default_offline_limit_fen,
                              self.settings.pay_offline_per_day)

    def url(self, path: str) -> str:
        return self.settings.public_base + path
