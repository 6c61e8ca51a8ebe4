"""The verifier's environment variables, declared in one place (docs/CONFIGURATION.md).

The ``verifier`` command's options read their variable through Typer (``--cache`` beats
``VERIFIER_CACHE`` beats the default); :func:`variable` gives each option its name, so
no command spells one by hand. What is not an option (the XDG cache base) is read here.

Example::

    variable("cache")                    # 'VERIFIER_CACHE'
    VerifierSettings().cache_base()      # $XDG_CACHE_HOME or ~/.cache
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic.config import JsonDict
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["VerifierSettings", "variable"]

# Which commands read a variable, for docs/CONFIGURATION.md.
_CHECKS: JsonDict = {"read_by": "`verifier check`, `verifier serve`"}


class VerifierSettings(BaseSettings):
    """Every variable the ``verifier`` command (counter page and terminal included) reads."""

    # An empty variable counts as unset, as the shell's ${VAR:-default} does.
    model_config = SettingsConfigDict(env_prefix="VERIFIER_", extra="ignore",
                                      env_ignore_empty=True)

    cache: Path | None = Field(
        default=None, description="The cache directory (lists, replay store, portraits);"
        " `--cache`. Default: `$XDG_CACHE_HOME/fmc-verifier`.")
    status_grace: str = Field(
        default="86400", description="How long past its iat + ttl a status list is accepted"
        " offline (`90m`, `24h`, `7d`); `--status-grace`. Its hard exp still applies.",
        json_schema_extra=_CHECKS)
    trust_grace: str = Field(
        default="0", description="How long past its exp a trust list is accepted;"
        " `--trust-grace`.", json_schema_extra=_CHECKS)
    portrait_token_file: Path | None = Field(
        default=None, description="A file holding a token of the authority's `verifier`"
        " role: missing portraits are fetched (checked against the digest);"
        " `--portrait-token-file`.", json_schema_extra=_CHECKS)
    xdg_cache_home: str | None = Field(
        default=None, validation_alias="XDG_CACHE_HOME",
        description="The base of the default cache directory. Default: `~/.cache`.")
    terminal_token: SecretStr | None = Field(
        default=None, validation_alias="FMC_TERMINAL_TOKEN",
        description="The payment terminal's bearer token; `--token`.",
        json_schema_extra={"read_by": "`verifier terminal`"})

    def cache_base(self) -> Path:
        """Where user caches go: ``$XDG_CACHE_HOME``, else ``~/.cache``."""
        return Path(self.xdg_cache_home) if self.xdg_cache_home else Path.home() / ".cache"


def variable(field: str) -> str:
    """The environment variable of one :class:`VerifierSettings` field."""
    return _variable_of(VerifierSettings, field)


def _variable_of(settings: type[BaseSettings], field: str) -> str:
    alias = settings.model_fields[field].validation_alias
    if isinstance(alias, str):
        return alias
    return f"{settings.model_config.get('env_prefix', '')}{field}".upper()
