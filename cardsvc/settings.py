"""Settings of the issuing authority, from the environment (``CARDSVC_*``) and arguments.

Example::

    settings = get_settings(data_dir=Path("/var/lib/cardsvc"))
    settings.database_url_or_default()   # sqlite:////var/lib/cardsvc/cardsvc.db
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from schemas.credential import MAX_CREDENTIAL_LIFETIME_SECONDS

__all__ = [
    "DEFAULT_OFFLINE_LIMIT_FEN",
    "NationalSettings",
    "ServeSettings",
    "Settings",
    "get_settings",
    "normalize_url",
    "settings_problem",
    "variable",
]

DEFAULT_OFFLINE_LIMIT_FEN = 20_000  # 200 yuan on a card unless the officer sets another


def normalize_url(url: str) -> str:
    """Route plain ``postgresql://`` URLs to psycopg 3, and write libpq's multi-host form
    (``user@host1:5432,host2:5432/db``) as SQLAlchemy reads it (``user@/db?host=host1:5432
    &host=host2:5432``)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
    if not url.startswith("postgresql"):
        return url
    scheme, _, rest = url.partition("://")
    authority_end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0),
                        default=len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at, hostlist = authority.rpartition("@")
    if "," not in hostlist:
        return url
    path, _, query = tail.partition("?")
    hosts = "&".join(f"host={host}" for host in hostlist.split(",") if host)
    return f"{scheme}://{userinfo}{at}{path or '/'}?{hosts}" + (f"&{query}" if query else "")


# The databases the authority runs on (docs/DESIGN.md): anything else is refused when the
# settings are read, not when a command first connects.
_DATABASES = ("sqlite", "postgresql")


class Settings(BaseSettings):
    """Everything configurable; read once per process by :func:`get_settings`."""

    model_config = SettingsConfigDict(env_prefix="CARDSVC_", extra="ignore")

    data_dir: Path = Field(default=Path(".data"), description="The data directory (SQLite"
                           " database, key store, passphrase file); `--data-dir`.")
    database_url: str | None = Field(default=None, description="An SQLAlchemy URL, e.g."
                                     " `postgresql+psycopg://…`. Default: SQLite in the data dir.")
    key_passphrase: SecretStr | None = Field(default=None, description="Encrypts the private"
                                             " keys. Unset: `init` writes a random one to the"
                                             " data dir (development only).")
    keys: str = Field(default="file", description="Where the private keys live: `file`"
                      " (PKCS#8 files encrypted with the passphrase, in the data dir) or an"
                      " HSM token as a PKCS#11 URI, `pkcs11:token=LABEL[;module-path=…]`;"
                      " chosen at `cardsvc init --keys` and recorded in the data dir.")
    root_keys: str | None = Field(default=None, description="A separate PKCS#11 token for"
                                  " the root (`cardsvc init --root-keys`), plugged in only"
                                  " to sign a trust list. Unset: the root lives with `keys`.")
    hsm_pin: SecretStr | None = Field(default=None, description="The user PIN of the `keys`"
                                      " token (never in the URI).")
    root_pin: SecretStr | None = Field(default=None, description="The user PIN of the"
                                       " `root_keys` token; set only during a signing"
                                       " ceremony (`cardsvc trust sign`).")
    issuer: str = Field(default="CN-YW", pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,8}){1,3}$",
                        description="The city code: the `iss` of every credential, trust"
                        " list, status list and receipt (e.g. `CN-HZ`).")
    kid_prefix: str = Field(default="k", pattern=r"^[a-z]{1,3}$", description="Issuer key"
                            " ids are this plus a number (`k1`, `k2`; Hangzhou `h1`): kids are"
                            " unique nationally, so each city takes its own prefix (not `ts`,"
                            " not ending in `i`).")
    federation_root: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{43}$",
                                        description="The national root fingerprint (RFC 7638)"
                                        " the held federation list must be signed by. Unset:"
                                        " no federation, one city as before.")
    federation_url: str | None = Field(default=None, description="Where to fetch the"
                                       " national federation list: comma-separated URLs of the"
                                       " list itself, tried in order (national publication,"
                                       " then mirrors); a bare `http://host:port` means its"
                                       " `/v1/federation-list`.")
    federation_refresh_seconds: int = Field(default=300, ge=10, description="How often"
                                            " `serve` fetches the federation list again.")
    interchange_timeout_seconds: float = Field(default=3.0, gt=0, le=30, description="How"
                                               " long one signed request to another city"
                                               " (leg B of a cross-city charge) may take.")
    interchange_attempts: int = Field(default=2, ge=1, le=10, description="Tries of leg B"
                                      " before the terminal is answered 503"
                                      " ISSUER_UNREACHABLE (and the forward is voided).")
    interauth_timeout_seconds: float = Field(default=3.0, gt=0, le=60, description="How"
                                             " long a request to another city's authority"
                                             " may take (lookups, transfers); a city that"
                                             " does not answer in time is \"not checked\".")
    interauth_lookups_per_minute: int = Field(default=60, ge=1, description="Person lookups"
                                              " one other city may make here per minute.")
    interchange_recovery_seconds: float = Field(default=30, gt=0, description="How often"
                                                " `serve` takes pending or voiding charges of"
                                                " other cities' cards forward again (also once"
                                                " at start-up).")
    public_url: str = Field(default="http://127.0.0.1:8000", description="The authority's"
                            " base URL as clients see it (status list URIs). `serve` defaults"
                            " it to `http://HOST:PORT`.")

    provisioning_ttl_seconds: int = Field(default=24 * 3600, gt=0, description="How long a"
                                          " one-time provisioning code is good for.")
    # Never beyond the longest cap of the format; each purpose is clamped to its own at issue.
    credential_lifetime_days: int = Field(default=30, gt=0,
                                          le=MAX_CREDENTIAL_LIFETIME_SECONDS // 86_400,
                                          description="Lifetime of a signed credential (the"
                                          " phone refreshes); at most 92 days.")
    trust_list_lifetime_days: int = Field(default=30, gt=1, description="Lifetime of a"
                                          " published trust list.")
    status_ttl_seconds: int = Field(default=300, gt=1, description="The `ttl` of a status"
                                    " list: how often verifiers should fetch it.")
    status_lifetime_seconds: int = Field(default=86_400, gt=1, description="The `exp` of a"
                                         " status list, counted from its `iat`.")
    # The signed timestamp (P8.5): a verifier that cannot fetch a newer one refuses after
    # this plus its status grace (24 h), instead of the trust list's 30 days.
    timestamp_lifetime_seconds: int = Field(default=12 * 3600, ge=600, description="Lifetime"
                                            " of the signed timestamp (`GET /v1/timestamp`).")
    portrait_bundle_lifetime_seconds: int = Field(default=3 * 86_400, ge=600, description=(
        "The `exp` of the portrait bundle manifest (`GET /v1/portrait-bundle/manifest`);"
        " re-signed at half its life or when a portrait slot changed."))
    publication_recheck_seconds: float = Field(default=1.0, ge=0, le=60, description="How"
                                               " long a worker serves the signed lists from"
                                               " memory before asking the database whether"
                                               " another process changed them (its own"
                                               " changes show at once; 0: every request).")
    status_list_size: int = Field(default=131_072, ge=1024, description="Entries per status"
                                  " list (indices are assigned at random).")
    default_offline_limit_fen: int = Field(default=DEFAULT_OFFLINE_LIMIT_FEN, ge=0,
                                           description="A new card's offline limit, in fen.")
    one_use_pay_lifetime_days: int = Field(default=7, ge=1, le=7, description="How many"
                                           " days of one-use pay credentials (P13.3) a phone"
                                           " may hold: today and the days after it. Each"
                                           " credential is valid on one UTC day only.")
    pay_offline_per_day: int = Field(default=5, ge=1, le=100, description="One-use pay"
                                     " credentials per card per day that carry an offline"
                                     " limit (each carries the card's tier divided by this,"
                                     " so one till takes at most the tier from a card on a"
                                     " day); more that day are online-only (`ol` 0). Times"
                                     " `CARDSVC_ONE_USE_PAY_LIFETIME_DAYS` at most"
                                     " `CARDSVC_PAY_HANDLES_OUTSTANDING_MAX`.")
    pay_batch_max: int = Field(default=20, ge=1, le=100, description="One-use pay"
                               " credentials one `POST /v1/wallet/pay-batch` may ask for.")
    pay_handles_outstanding_max: int = Field(default=40, ge=1, le=1000, description="Unused,"
                                             " unexpired one-use pay credentials a card may"
                                             " hold (online-only top-ups included): at"
                                             " least `CARDSVC_PAY_OFFLINE_PER_DAY` times"
                                             " `CARDSVC_ONE_USE_PAY_LIFETIME_DAYS`.")
    portrait_max_bytes: int = Field(default=2 * 1024 * 1024, gt=0, description="The largest"
                                    " portrait accepted at enrolment.")
    request_max_bytes: int = Field(default=4 * 1024 * 1024, gt=0, description="The largest"
                                   " request body accepted.")
    db_pool_size: int = Field(default=10, gt=0, le=1000, description="Database connections per"
                              " worker (PostgreSQL).")
    db_concurrent_transactions: int = Field(
        default=4, gt=0, le=1000, description="Transactions one worker runs at once on PostgreSQL;"
        " the others wait their turn (a few at once keep the cores busy, more only queue"
        " for Python's lock and the audit chain's head).")
    charges_on_loop: bool = Field(default=True, description="Make accepted online charges"
                                  " on the event loop in two statements"
                                  " (PostgreSQL; docs/PAYMENTS.md). Off: every charge takes"
                                  " the general path.")
    log_format: Literal["json", "text"] = Field(default="json", description="One log line"
                                                 " per event: JSON objects or plain words.")

    @field_validator("database_url")
    @classmethod
    def _a_database_we_run_on(cls, value: str | None) -> str | None:
        # The message never repeats the URL: it may hold the database's password.
        if not value:
            return None  # unset or empty: SQLite in the data dir
        try:
            backend = make_url(normalize_url(value)).get_backend_name()
        except (ArgumentError, ValueError):
            raise ValueError("not a database URL (sqlite:///PATH or postgresql://…)") from None
        if backend not in _DATABASES:
            raise ValueError("only SQLite (sqlite:///PATH) and PostgreSQL (postgresql://…)"
                             " are supported")
        return value

    @field_validator("kid_prefix")
    @classmethod
    def _kid_prefix_apart(cls, value: str) -> str:
        # "ts" would mint ts1, the timestamp key's kid; a prefix ending in "i" could mint
        # another city's interchange kid (<prefix>i1).
        if value == "ts" or value.endswith("i"):
            raise ValueError("the kid prefix may not be 'ts' nor end with 'i'")
        return value

    @model_validator(mode="after")
    def _pay_days_fit_the_outstanding_cap(self) -> Settings:
        # A phone holds N credentials for each day up to the horizon: the cap must hold them.
        days = self.pay_offline_per_day * self.one_use_pay_lifetime_days
        if days > self.pay_handles_outstanding_max:
            raise ValueError(
                f"CARDSVC_PAY_OFFLINE_PER_DAY ({self.pay_offline_per_day}) times"
                f" CARDSVC_ONE_USE_PAY_LIFETIME_DAYS ({self.one_use_pay_lifetime_days}) is"
                f" {days}, more than CARDSVC_PAY_HANDLES_OUTSTANDING_MAX"
                f" ({self.pay_handles_outstanding_max}): raise the cap or lower one of them")
        return self

    def database_url_or_default(self) -> str:
        """``CARDSVC_DATABASE_URL`` when set, else SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cardsvc.db').resolve()}"

    @property
    def federation_urls(self) -> tuple[str, ...]:
        """``CARDSVC_FEDERATION_URL`` split at commas, blanks dropped."""
        text = self.federation_url or ""
        return tuple(url.strip() for url in text.split(",") if url.strip())

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def passphrase_file(self) -> Path:
        return self.data_dir / "key-passphrase"

    @property
    def public_base(self) -> str:
        return self.public_url.rstrip("/")


class NationalSettings(BaseSettings):
    """What ``cardsvc national`` reads: the passphrase of the national root's key store."""

    model_config = SettingsConfigDict(env_prefix="FMC_NATIONAL_", extra="ignore")

    passphrase: SecretStr | None = Field(default=None, description="Encrypts the national"
                                         " root key at rest (`cardsvc national`); required"
                                         " unless the root is in a token.")
    pin: SecretStr | None = Field(default=None, description="The user PIN of the token"
                                  " holding the national root (`cardsvc national init"
                                  " --keys pkcs11:…`); set only while publishing.")


class ServeSettings(BaseSettings):
    """What ``cardsvc serve`` alone reads: its options, through Typer (:func:`variable`).

    Apart from :class:`Settings`, so a bad ``CARDSVC_PORT`` fails ``serve`` and nothing else.
    """

    model_config = SettingsConfigDict(env_prefix="CARDSVC_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="The address `serve` binds; `--host`.")
    port: int = Field(default=8000, description="The port `serve` binds; `--port`.")
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes of `serve`;"
                         " `--workers`. More than 1 wants PostgreSQL.")


def variable(field: str) -> str:
    """The environment variable of a :class:`Settings` or :class:`ServeSettings` field."""
    if field not in Settings.model_fields and field not in ServeSettings.model_fields:
        raise KeyError(field)
    return f"CARDSVC_{field}".upper()


def get_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with explicit arguments taking precedence."""
    given = {name: value for name, value in overrides.items() if value is not None}
    return Settings(**given)


def settings_problem(error: ValidationError) -> str | None:
    """What is wrong with one of this module's settings classes, variable by variable, for
    a person to read; never a value (a value may be a secret: a passphrase, a PIN, a
    database password). None when ``error`` is about another model."""
    kind = next((cls for cls in (Settings, ServeSettings, NationalSettings)
                 if cls.__name__ == error.title), None)
    if kind is None:
        return None
    prefix = str(kind.model_config.get("env_prefix", ""))

    def named(loc: tuple[int | str, ...]) -> str:
        field = str(loc[0]) if loc else ""
        return f"{prefix}{field}".upper() if field in kind.model_fields else "the settings"

    return "; ".join(f"{named(problem['loc'])}: {problem['msg']}"
                     for problem in error.errors(include_input=False, include_url=False))
