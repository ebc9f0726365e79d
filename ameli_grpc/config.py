"""Settings from the ``AMELI_*`` environment (SPEC §5); durations are in seconds.

A bad value is a ``ConfigurationError`` naming its variable (SPEC §9): the
command line turns it into one ``refusing_to_start`` log line and exit status 2.
``load_settings`` maps pydantic's errors to the variables; a new setting is
one field below, and its name is then known to ``unknown_variables``.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import structlog
from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ameli_grpc.domain.clients import parse_networks
from ameli_grpc.domain.policy import Policy
from ameli_grpc.domain.tokens import MIN_KEY_BYTES

ENV_PREFIX = "AMELI_"


class ConfigurationError(Exception):
    """The settings are unsafe or inconsistent; the service refuses to start.

    ``variable`` names the ``AMELI_…`` variable at fault (several: comma-separated).
    """

    def __init__(self, reason: str, variable: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.variable = variable


def log_refusal(error: ConfigurationError) -> None:
    """The one ``refusing_to_start`` line of a configuration error (the caller exits 2)."""
    structlog.get_logger("ameli_grpc.config").error(
        "refusing_to_start", variable=error.variable, reason=error.reason
    )


def variable_of(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def is_loopback(listen: str) -> bool:
    """Whether ``host:port`` only accepts connections from this machine."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})")


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) → ``(host, port)``; ``ValueError`` saying what is wrong."""
    host, colon, port = address.rpartition(":")
    if not colon or not host:
        raise ValueError(f"{address!r} is not host:port (e.g. 127.0.0.1:50051 or [::]:50051)")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"the port of {address!r} is not a number from 0 to 65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        return host[1:-1], int(port)
    if ":" in host:
        raise ValueError(f"write the IPv6 address of {address!r} in brackets: [host]:port")
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name or IP address")
    return host, int(port)


def _address(value: str) -> str:
    split_address(value)
    return value


Address = Annotated[str, AfterValidator(_address)]
"""A ``host:port`` to listen on, checked when the settings are read."""

# The engines the SQL adapter supports (``adapters.sql.database.SUPPORTED_DRIVERS``).
DATABASE_DRIVERS = frozenset({"sqlite", "sqlite+aiosqlite", "postgresql+asyncpg"})
REDIS_SCHEMES = frozenset(
    {"redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "rediss+cluster"}
)


def _database_url(value: str) -> str:
    try:
        driver = make_url(value).drivername
    except ArgumentError:
        raise ValueError("not a database URL (e.g. postgresql+asyncpg://user@host/db)") from None
    if driver not in DATABASE_DRIVERS:
        supported = " or ".join(f"{name}://" for name in sorted(DATABASE_DRIVERS))
        raise ValueError(f"unsupported scheme {driver}://: use {supported}")
    return value


def _redis_url(value: str) -> str:
    scheme = value.partition("://")[0] if "://" in value else ""
    if value and scheme not in REDIS_SCHEMES:
        supported = ", ".join(f"{name}://" for name in sorted(REDIS_SCHEMES))
        raise ValueError(f"not a Redis URL: use one of {supported}")
    return value


def _http_url(value: str) -> str:
    if value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an absolute http:// or https:// URL")
    return value


def _secret_key(value: SecretStr) -> SecretStr:
    if value.get_secret_value() and len(value.get_secret_value().encode()) < 32:
        raise ValueError(
            "too short: at least 32 bytes (64 hex characters: python -c "
            "'import secrets; print(secrets.token_hex(32))')"
        )
    return value


def _optional_address(value: str) -> str:
    return _address(value.strip()) if value.strip() else ""


OptionalAddress = Annotated[str, AfterValidator(_optional_address)]
"""A ``host:port``, or empty for "off"."""


_CALLER_NAME = re.compile(r"[a-z0-9-]{1,40}")
ROLES = ("portal", "mobile", "advisor")


def _caller_entry(entry: str, source: str) -> tuple[str | None, str]:
    """``name:key`` → (name, key); a bare key → (None, key); the key is never echoed."""
    if ":" not in entry:
        return None, entry
    name, key = (part.strip() for part in entry.split(":", 1))
    if not _CALLER_NAME.fullmatch(name):
        raise ConfigurationError(f"{source}: caller names are 1 to 40 of a-z, 0-9 and '-'", source)
    if not key:
        raise ConfigurationError(f"{source}: the caller {name!r} has an empty key", source)
    return name, key


DEFAULT_MAIL_FROM = "Votre Assurance Maladie <ne-pas-repondre@app.assurance-maladie.fr>"


class Settings(BaseSettings):
    # An empty variable is an unset one: its default applies.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    listen: Address = "127.0.0.1:50051"
    database_url: Annotated[str, AfterValidator(_database_url)] = (
        "sqlite+aiosqlite:///./var/ameli.db"
    )
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    database_timeout: float = Field(default=5.0, gt=0)
    redis_url: Annotated[str, AfterValidator(_redis_url)] = ""
    redis_prefix: str = "ameli"
    redis_timeout: float = Field(default=2.0, gt=0)
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout: float = Field(default=10.0, gt=0)
    outbox_dir: Path = Path("./var/outbox")
    mail_from: str = DEFAULT_MAIL_FROM
    sms_url: Annotated[str, AfterValidator(_http_url)] = ""
    sms_api_key: SecretStr = SecretStr("")
    sms_timeout: float = Field(default=5.0, gt=0)
    rfi_url: Annotated[str, AfterValidator(_http_url)] = ""
    rfi_timeout: float = Field(default=2.0, gt=0)
    rfi_cache_ttl: float = Field(default=60.0, ge=0)
    code_ttl: int = Field(default=900, gt=0)
    login_ttl: int = Field(default=3600, gt=0)
    code_quota: int = Field(default=5, ge=1)
    code_quota_window: int = Field(default=3600, gt=0)
    code_quota_lock: int = Field(default=3600, gt=0)
    max_password_failures: int = Field(default=3, ge=1)
    max_code_failures: int = Field(default=3, ge=1)
    failure_window: int = Field(default=900, gt=0)
    failure_lock: int = Field(default=900, gt=0)
    trusted_device_months: int = Field(default=6, ge=1)
    provisional_code_ttl: int = Field(default=3600, gt=0)
    franceconnect_requires_code: bool = True
    daily_failure_limit: int = Field(default=20, ge=1)
    daily_lock: int = Field(default=86400, gt=0)
    max_consecutive_failures: int = Field(default=100, ge=1)
    client_failure_limit: int = Field(default=50, ge=1)
    client_failure_window: int = Field(default=600, gt=0)
    client_lock: int = Field(default=900, gt=0)
    client_allowlist: str = ""
    secret_key: Annotated[SecretStr, AfterValidator(_secret_key)] = SecretStr("")
    secret_key_file: Path = Path("./var/secret.key")
    previous_secret_keys: SecretStr = SecretStr("")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    allow_insecure: bool = False
    portal_api_keys: str = ""
    portal_api_keys_file: Path | None = None
    mobile_api_keys: str = ""
    mobile_api_keys_file: Path | None = None
    advisor_api_keys: str = ""
    advisor_api_keys_file: Path | None = None
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_listen: OptionalAddress = ""  # host:port of /metrics (SPEC §9); empty: no metrics
    # SPEC §7.5: requests are small; a busy process refuses at once rather than queue.
    max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    max_concurrent_rpcs: int = Field(default=1000, ge=1)
    # Beyond SPEC §7.5: calls in flight on one connection (HTTP/2); 0: gRPC's own (no bound).
    max_concurrent_streams: int = Field(default=32, ge=0)
    max_pending_hashes: int = Field(default=32, ge=0)
    # Beyond SPEC §7.5: nor may an admitted CheckCredentials expect a longer wait (0: no bound).
    max_hash_wait: float = Field(default=1.0, ge=0)
    # ... and, once the hash queue has stood that long, this (0: no other bound).
    overload_hash_wait: float = Field(default=0.02, ge=0)
    hash_workers: int = Field(default=0, ge=0)
    shutdown_grace: float = Field(default=10.0, ge=0)
    # SIGTERM: health NOT_SERVING at once, still serving this long (the load balancers notice).
    drain_delay: float = Field(default=5.0, ge=0)
    # A connection is sent GOAWAY after this long (± 10 %), so gateways spread over new replicas.
    max_connection_age: float = Field(default=300.0, ge=0)
    health_interval: float = Field(default=5.0, gt=0)
    # Outside development, mail and SMS written in clear to a directory must be asked for.
    allow_outbox: bool = False
    reflection: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Options that contradict each other: refused, whichever command reads them."""
        if self.smtp_starttls and self.smtp_tls:
            raise ConfigurationError(
                "AMELI_SMTP_STARTTLS and AMELI_SMTP_TLS contradict each other: STARTTLS "
                "upgrades a cleartext connection (port 587), TLS starts encrypted (port 465)",
                "AMELI_SMTP_STARTTLS,AMELI_SMTP_TLS",
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            missing = "AMELI_TLS_KEY_FILE" if self.tls_key_file is None else "AMELI_TLS_CERT_FILE"
            raise ConfigurationError(
                f"AMELI_TLS_CERT_FILE and AMELI_TLS_KEY_FILE go together: {missing} is missing",
                missing,
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case_level(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    def metrics_address(self) -> tuple[str, int] | None:
        """``AMELI_METRICS_LISTEN`` as (host, port); None when empty (no metrics)."""
        if not self.metrics_listen.strip():
            return None
        return split_address(self.metrics_listen.strip())  # checked when read

    def policy(self) -> Policy:
        """The rules' numbers; a malformed ``AMELI_CLIENT_ALLOWLIST`` refuses to start."""
        try:
            client_allowlist = parse_networks(self.client_allowlist)
        except ValueError as error:
            raise ConfigurationError(
                f"AMELI_CLIENT_ALLOWLIST: {error}", "AMELI_CLIENT_ALLOWLIST"
            ) from None
        return Policy(
            code_ttl=timedelta(seconds=self.code_ttl),
            login_ttl=timedelta(seconds=self.login_ttl),
            code_quota=self.code_quota,
            code_quota_window=timedelta(seconds=self.code_quota_window),
            code_quota_lock=timedelta(seconds=self.code_quota_lock),
            max_password_failures=self.max_password_failures,
            max_code_failures=self.max_code_failures,
            failure_window=timedelta(seconds=self.failure_window),
            failure_lock=timedelta(seconds=self.failure_lock),
            trusted_device_months=self.trusted_device_months,
            provisional_code_ttl=timedelta(seconds=self.provisional_code_ttl),
            franceconnect_requires_code=self.franceconnect_requires_code,
            daily_failure_limit=self.daily_failure_limit,
            daily_lock=timedelta(seconds=self.daily_lock),
            max_consecutive_failures=self.max_consecutive_failures,
            client_failure_limit=self.client_failure_limit,
            client_failure_window=timedelta(seconds=self.client_failure_window),
            client_lock=timedelta(seconds=self.client_lock),
            client_allowlist=client_allowlist,
        )

    @property
    def development(self) -> bool:
        """One process on a loopback address with the in-process store: the ``make run`` set-up.

        Only there may the secret key be generated and callers go without keys.
        """
        return is_loopback(self.listen) and not self.redis_url

    def beyond_development(self) -> list[str]:
        """The variables that make this more than one developer's set-up (SPEC §9), if any.

        Caller keys, or a non-loopback address: then no outbox without
        ``AMELI_ALLOW_OUTBOX`` and no demo data. Empty on ``make run``'s set-up.
        """
        reasons = [] if is_loopback(self.listen) else ["AMELI_LISTEN"]
        for role in ROLES:
            if self.api_keys(role):
                reasons.append(f"AMELI_{role.upper()}_API_KEYS")
        return reasons

    def previous_keys(self) -> tuple[bytes, ...]:
        """``AMELI_PREVIOUS_SECRET_KEYS``: comma-separated keys still recognised after a
        rotation (README, "Rotating the secret key"), each at least 32 bytes like the key."""
        keys = [k.strip() for k in self.previous_secret_keys.get_secret_value().split(",")]
        if any(0 < len(key.encode()) < MIN_KEY_BYTES for key in keys):
            raise ConfigurationError(
                f"AMELI_PREVIOUS_SECRET_KEYS: each key must be at least {MIN_KEY_BYTES} bytes, "
                "like AMELI_SECRET_KEY"
            )
        return tuple(key.encode() for key in keys if key)

    def api_keys(self, role: str) -> list[tuple[str, str]]:
        """The ``(name, key)`` callers of one role: ``"portal"``, ``"mobile"`` or ``"advisor"``.

        ``AMELI_<ROLE>_API_KEYS`` holds comma-separated entries, then
        ``AMELI_<ROLE>_API_KEYS_FILE`` one entry a line (blank lines and ``#``
        comments skipped). An entry is ``name:key`` (name ``[a-z0-9-]{1,40}``) or a
        bare key, named ``<role>-1``, ``<role>-2``… in order (SPEC §7.1).
        """
        variable = f"AMELI_{role.upper()}_API_KEYS"
        raw: str = getattr(self, f"{role}_api_keys")
        entries = [(variable, entry) for entry in raw.split(",")]
        path: Path | None = getattr(self, f"{role}_api_keys_file")
        if path is not None:
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeError) as error:
                raise ConfigurationError(
                    f"{variable}_FILE: cannot read {path} ({type(error).__name__})",
                    f"{variable}_FILE",
                ) from None
            entries += [(f"{variable}_FILE", line) for line in lines if not line.startswith("#")]
        callers: list[tuple[str, str]] = []
        bare = 0
        for source, entry in entries:
            name, key = _caller_entry(entry.strip(), source)
            if not key:
                continue
            if name is None:
                bare += 1
                name = f"{role}-{bare}"
            callers.append((name, key))
        return callers


def load_settings(**overrides: Any) -> Settings:
    """The settings of the environment (``overrides`` from the command line win).

    Raises ``ConfigurationError`` naming each bad variable (an override by its
    option: ``listen`` → ``--listen``), never quoting a value (it may be a secret).
    """
    try:
        return Settings(**overrides)
    except ValidationError as error:
        names, problems = [], []
        for problem in error.errors(include_url=False, include_input=False):
            field = str(problem["loc"][0]) if problem["loc"] else ""
            name = f"--{field.replace('_', '-')}" if field in overrides else variable_of(field)
            message = str(problem["msg"]).removeprefix("Value error, ")
            names.append(name)
            problems.append(f"{name}: {message.replace('Input should', 'should')}")
        raise ConfigurationError("; ".join(problems), ",".join(dict.fromkeys(names))) from None


# Read by the ``ameli-advisor`` client command, not by the server.
CLIENT_VARIABLES = frozenset({"AMELI_ADVISOR_TARGET", "AMELI_ADVISOR_API_KEY"})
TEST_PREFIX = "AMELI_TEST_"  # the test suite's own (README, "Tests")


def unknown_variables(environ: Mapping[str, str]) -> Iterator[tuple[str, str | None]]:
    """Each ``AMELI_*`` variable no setting reads, with the closest known name if one is near."""
    known = {variable_of(field) for field in Settings.model_fields}
    for name in sorted(environ):
        upper = name.upper()  # the settings read their variables case-insensitively
        if not upper.startswith(ENV_PREFIX) or upper.startswith(TEST_PREFIX):
            continue
        if upper in known or upper in CLIENT_VARIABLES:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
        yield name, close[0] if close else None


def warn_unknown_variables(environ: Mapping[str, str]) -> None:
    """One warning line per unknown ``AMELI_*`` variable: it is ignored, probably misspelt."""
    log = structlog.get_logger("ameli_grpc.config")
    for name, close in unknown_variables(environ):
        log.warning("unknown_variable", variable=name, did_you_mean=close, detail="ignored")
