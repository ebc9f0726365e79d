"""Settings from the ``AMELI_*`` environment (SPEC §5); durations are in seconds."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ameli_grpc.domain.clients import parse_networks
from ameli_grpc.domain.policy import Policy
from ameli_grpc.domain.tokens import MIN_KEY_BYTES


class ConfigurationError(Exception):
    """The settings are unsafe or inconsistent; the service refuses to start."""


def is_loopback(listen: str) -> bool:
    """Whether ``host:port`` only accepts connections from this machine."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_CALLER_NAME = re.compile(r"[a-z0-9-]{1,40}")


def _caller_entry(entry: str, source: str) -> tuple[str | None, str]:
    """``name:key`` → (name, key); a bare key → (None, key); the key is never echoed."""
    if ":" not in entry:
        return None, entry
    name, key = (part.strip() for part in entry.split(":", 1))
    if not _CALLER_NAME.fullmatch(name):
        raise ConfigurationError(f"{source}: caller names are 1 to 40 of a-z, 0-9 and '-'")
    if not key:
        raise ConfigurationError(f"{source}: the caller {name!r} has an empty key")
    return name, key


DEFAULT_MAIL_FROM = "Votre Assurance Maladie <ne-pas-repondre@app.assurance-maladie.fr>"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AMELI_", extra="ignore")

    listen: str = "127.0.0.1:50051"
    database_url: str = "sqlite+aiosqlite:///./var/ameli.db"
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    database_timeout: float = Field(default=5.0, gt=0)
    redis_url: str = ""
    redis_prefix: str = "ameli"
    redis_timeout: float = Field(default=2.0, gt=0)
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout: float = Field(default=10.0, gt=0)
    outbox_dir: Path = Path("./var/outbox")
    mail_from: str = DEFAULT_MAIL_FROM
    sms_url: str = ""
    sms_api_key: SecretStr = SecretStr("")
    sms_timeout: float = Field(default=5.0, gt=0)
    rfi_url: str = ""
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
    secret_key: SecretStr = SecretStr("")
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
    log_format: str = "console"
    # SPEC §7.5: requests are small; a busy process refuses at once rather than queue.
    max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    max_concurrent_rpcs: int = Field(default=1000, ge=1)
    max_pending_hashes: int = Field(default=32, ge=0)
    hash_workers: int = Field(default=0, ge=0)
    shutdown_grace: float = Field(default=10.0, ge=0)
    health_interval: float = Field(default=5.0, gt=0)

    def policy(self) -> Policy:
        """The rules' numbers; a malformed ``AMELI_CLIENT_ALLOWLIST`` refuses to start."""
        try:
            client_allowlist = parse_networks(self.client_allowlist)
        except ValueError as error:
            raise ConfigurationError(f"AMELI_CLIENT_ALLOWLIST: {error}") from None
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
                    f"{variable}_FILE: cannot read {path} ({type(error).__name__})"
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
