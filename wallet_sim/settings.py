"""The phone's environment variables, declared in one place (docs/CONFIGURATION.md).

``--wallet`` reads ``FMC_WALLET`` through Typer (:func:`variable` names it); the PIN is
read here and nowhere else, and is asked for (hidden) when unset.

Example::

    variable("wallet")                   # 'FMC_WALLET'
    WalletSettings().wallet_pin          # SecretStr('**********') or None
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["WalletSettings", "variable"]


class WalletSettings(BaseSettings):
    """Every variable the ``wallet-sim`` command (phone page included) reads."""

    # An empty PIN counts as unset: it is then asked for, as before.
    model_config = SettingsConfigDict(env_prefix="FMC_", extra="ignore", env_ignore_empty=True)

    wallet: Path | None = Field(
        default=None, description="The encrypted wallet file; `--wallet`.")
    wallet_pin: SecretStr | None = Field(
        default=None, description="The wallet's PIN, for non-interactive use; asked for"
        " (hidden) when unset.")


def variable(field: str) -> str:
    """The environment variable of one :class:`WalletSettings` field."""
    return f"{WalletSettings.model_config.get('env_prefix', '')}{field}".upper()
