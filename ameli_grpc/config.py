"""Settings from the ``AMELI_*`` environment (SPEC §5); durations are in seconds."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ameli_grpc.domain.policy import Policy


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
    secret_key: SecretStr = SecretStr("")
    secret_key_file: Path = Path("./var/secret.key")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    allow_insecure: bool = False
    portal_api_keys: str = ""
    advisor_api_keys: str = ""
    log_format: str = "console"
    max_message_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    hash_workers: int = Field(default=0, ge=0)
    shutdown_grace: float = Field(default=10.0, ge=0)
    health_interval: float = Field(default=5.0, gt=0)

    def policy(self) -> Policy:
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
        )

    @property
    def development(self) -> bool:
        """One process on a loopback address with the in-process store: the ``make run`` set-up.

        Only there may the secret key be generated and callers go without keys.
        """
        return is_loopback(self.listen) and not self.redis_url

    @staticmethod
    def keys(raw: str) -> frozenset[str]:
        return frozenset(key.strip() for key in raw.split(",") if key.strip())
