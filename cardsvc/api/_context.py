"""What every request needs: settings, database, keys and the clock (one per app)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cardsvc.db import Database
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

    @property
    def signing(self) -> SigningContext:
        return SigningContext(self.keyring, self.settings.issuer,
                              self.settings.credential_lifetime_days,
                              self.settings.status_list_size)

    def url(self, path: str) -> str:
        return self.settings.public_base + path
