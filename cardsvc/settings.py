"""Settings of the issuing authority, from the environment (``CARDSVC_*``) and arguments.

Example::

    settings = get_settings(data_dir=Path("/var/lib/cardsvc"))
    settings.database_url_or_default()   # sqlite:////var/lib/cardsvc/cardsvc.db
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_OFFLINE_LIMIT_FEN", "Settings", "get_settings"]

DEFAULT_OFFLINE_LIMIT_FEN = 20_000  # 200 yuan on a card unless the officer sets another


class Settings(BaseSettings):
    """Everything configurable; read once per process by :func:`get_settings`."""

    model_config = SettingsConfigDict(env_prefix="CARDSVC_", extra="ignore")

    data_dir: Path = Path(".data")
    database_url: str | None = None
    key_passphrase: SecretStr | None = None
    issuer: str = "CN-YW"
    public_url: str = "http://127.0.0.1:8000"

    provisioning_ttl_seconds: int = Field(default=24 * 3600, gt=0)
    credential_lifetime_days: int = Field(default=30, gt=0)
    trust_list_lifetime_days: int = Field(default=30, gt=1)
    status_ttl_seconds: int = Field(default=300, gt=1)
    status_lifetime_seconds: int = Field(default=86_400, gt=1)
    # The signed timestamp (P8.5): a verifier that cannot fetch a newer one refuses after
    # this plus its status grace (24 h), instead of the trust list's 30 days.
    timestamp_lifetime_seconds: int = Field(default=12 * 3600, ge=600)
    status_list_size: int = Field(default=131_072, ge=1024)
    default_offline_limit_fen: int = Field(default=DEFAULT_OFFLINE_LIMIT_FEN, ge=0)
    portrait_max_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    request_max_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    db_pool_size: int = Field(default=10, gt=0)

    def database_url_or_default(self) -> str:
        """``CARDSVC_DATABASE_URL`` when set, else SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cardsvc.db').resolve()}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def passphrase_file(self) -> Path:
        return self.data_dir / "key-passphrase"

    @property
    def public_base(self) -> str:
        return self.public_url.rstrip("/")


def get_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with explicit arguments taking precedence."""
    given = {name: value for name, value in overrides.items() if value is not None}
    return Settings(**given)
