"""Errors of the wallet, each with a stable code (callers and tests compare codes).

Example::

    try:
        wallet = open_wallet(path, pin="1234")
    except WalletError as error:
        print(error.code, error)      # WRONG_PIN  the PIN does not open this wallet ...
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["WalletError", "WalletErrorCode"]


class WalletErrorCode(StrEnum):
    """Why a wallet operation failed. Codes may be added, never renamed."""

    # the wallet file and its PIN (usage/configuration: CLI exit code 2)
    WALLET_NOT_FOUND = "WALLET_NOT_FOUND"
    WALLET_CORRUPT = "WALLET_CORRUPT"
    UNSUPPORTED_WALLET_VERSION = "UNSUPPORTED_WALLET_VERSION"
    WRONG_PIN = "WRONG_PIN"
    PIN_REQUIRED = "PIN_REQUIRED"
    PIN_TOO_SHORT = "PIN_TOO_SHORT"
    PIN_MISMATCH = "PIN_MISMATCH"
    WALLET_CHANGED = "WALLET_CHANGED"
    WRITE_FAILED = "WRITE_FAILED"
    NO_CARDS = "NO_CARDS"
    CARD_NOT_FOUND = "CARD_NOT_FOUND"
    CARD_REQUIRED = "CARD_REQUIRED"
    BAD_ARGUMENT = "BAD_ARGUMENT"
    # the card's state (CLI exit code 1)
    CREDENTIALS_EXPIRED = "CREDENTIALS_EXPIRED"
    CREDENTIAL_MISSING = "CREDENTIAL_MISSING"
    # talking to the authority (CLI exit code 1)
    SERVER_UNREACHABLE = "SERVER_UNREACHABLE"
    SERVER_REFUSED = "SERVER_REFUSED"
    BAD_SERVER_RESPONSE = "BAD_SERVER_RESPONSE"
    REFRESH_UNSUPPORTED = "REFRESH_UNSUPPORTED"
    # usage (exit 2): no --wallet given
    WALLET_REQUIRED = "WALLET_REQUIRED"
    # the authority said the card is revoked; recorded in the wallet (exit 1)
    CARD_REVOKED = "CARD_REVOKED"
    CARD_SUSPENDED = "CARD_SUSPENDED"
    # the till's sale challenge cannot be read (usage: exit 2)
    BAD_CHALLENGE = "BAD_CHALLENGE"
    # no unused one-use pay credential left (P13.3): refresh online to refill (exit 1)
    PAY_BATCH_EMPTY = "PAY_BATCH_EMPTY"


# Errors in what the user typed or configured, as opposed to refusals by the world.
# A wrong PIN is a refusal (exit 1): the command was well formed, the wallet said no.
_USAGE = frozenset(
    {
        WalletErrorCode.WALLET_NOT_FOUND,
        WalletErrorCode.WALLET_CORRUPT,
        WalletErrorCode.UNSUPPORTED_WALLET_VERSION,
        WalletErrorCode.PIN_REQUIRED,
        WalletErrorCode.PIN_TOO_SHORT,
        WalletErrorCode.PIN_MISMATCH,
        WalletErrorCode.WALLET_CHANGED,
        WalletErrorCode.WRITE_FAILED,
        WalletErrorCode.NO_CARDS,
        WalletErrorCode.CARD_NOT_FOUND,
        WalletErrorCode.CARD_REQUIRED,
        WalletErrorCode.BAD_ARGUMENT,
        WalletErrorCode.WALLET_REQUIRED,
        WalletErrorCode.BAD_CHALLENGE,
    }
)


class WalletError(Exception):
    """A wallet operation failed; ``code`` is stable, the message is for people.

    ``server_code`` carries the authority's problem+json ``code`` when it refused.
    """

    def __init__(
        self, code: WalletErrorCode, message: str, *, server_code: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.server_code = server_code

    @property
    def is_usage_error(self) -> bool:
        """True for mistakes in input or configuration (CLI exit 2), else a refusal (exit 1)."""
        return self.code in _USAGE
