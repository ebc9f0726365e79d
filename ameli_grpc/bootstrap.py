"""The composition root: settings in, a wired ``AuthService`` out. No I/O at import time."""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from ameli_grpc.adapters.argon2_hasher import Argon2PasswordHasher
from ameli_grpc.adapters.http_identity_registry import HttpIdentityRegistry
from ameli_grpc.adapters.http_sms_sender import HttpSmsSender
from ameli_grpc.adapters.memory_challenge_store import MemoryChallengeStore
from ameli_grpc.adapters.outbox import OutboxMailer, OutboxSmsSender
from ameli_grpc.adapters.smtp_mailer import SmtpMailer
from ameli_grpc.adapters.sql_database import Database
from ameli_grpc.adapters.sql_migrations import upgrade
from ameli_grpc.adapters.sql_repositories import (
    SqlAccountRepository,
    SqlAuditLog,
    SqlIdentityRegistry,
    SqlProvisionalCodeRepository,
    SqlTrustedDeviceRepository,
)
from ameli_grpc.config import ConfigurationError, Settings
from ameli_grpc.domain.clock import Clock, SystemClock
from ameli_grpc.domain.ports import ChallengeStore, IdentityRegistry, Mailer, Ports, SmsSender
from ameli_grpc.domain.service import AuthService
from ameli_grpc.domain.tokens import Keyring
from ameli_grpc.server.interceptors import CallerKeys, Role

log = structlog.get_logger("ameli_grpc.bootstrap")

Closer = Callable[[], Awaitable[None]]
Check = Callable[[], Awaitable[None]]


@dataclass
class Container:
    """Everything a server process needs, and what to close when it stops."""

    service: AuthService
    ports: Ports
    database: Database
    clock: Clock
    caller_keys: CallerKeys
    health_checks: list[Check] = field(default_factory=list)
    closers: list[Closer] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            await close()


async def build_container(
    settings: Settings, *, migrate: bool = True, clock: Clock | None = None
) -> Container:
    clock = clock or SystemClock()
    keyring = Keyring(load_secret_key(settings))  # first: it may refuse the settings
    database = Database.from_settings(settings)
    if migrate:
        await upgrade(settings.database_url)
    store, store_closer = build_store(settings)
    registry, registry_checks, registry_closers = build_registry(settings, database, clock)
    sms, sms_closers = build_sms(settings)
    hasher = Argon2PasswordHasher(workers=settings.hash_workers)
    ports = Ports(
        accounts=SqlAccountRepository(database, clock),
        devices=SqlTrustedDeviceRepository(database),
        provisional_codes=SqlProvisionalCodeRepository(database, clock),
        audit=SqlAuditLog(database),
        registry=registry,
        store=store,
        mailer=build_mailer(settings),
        sms=sms,
        hasher=hasher,
        keyring=keyring,
        clock=clock,
    )

    async def close_hasher() -> None:
        hasher.close()

    return Container(
        service=AuthService(ports, settings.policy()),
        ports=ports,
        database=database,
        clock=clock,
        caller_keys=CallerKeys(
            {
                Role.PORTAL: Settings.keys(settings.portal_api_keys),
                Role.ADVISOR: Settings.keys(settings.advisor_api_keys),
            }
        ),
        health_checks=[database.ping, store.ping, *registry_checks],
        closers=[
            database.dispose,
            close_hasher,
            *([store_closer] if store_closer else []),
            *registry_closers,
            *sms_closers,
        ],
    )


def build_store(settings: Settings) -> tuple[ChallengeStore, Closer | None]:
    if not settings.redis_url:
        return MemoryChallengeStore(), None
    # imported only when Redis is configured
    from ameli_grpc.adapters.redis_challenge_store import RedisChallengeStore
    from ameli_grpc.adapters.redis_connection import redis_client_from_url

    client = redis_client_from_url(settings.redis_url, settings.redis_timeout)
    return RedisChallengeStore(client, settings.redis_prefix), client.aclose


def build_registry(
    settings: Settings, database: Database, clock: Clock
) -> tuple[IdentityRegistry, list[Check], list[Closer]]:
    """The RFI: over HTTP when ``AMELI_RFI_URL`` is set, else the SQL reference table."""
    if not settings.rfi_url:
        return SqlIdentityRegistry(database, clock), [], []
    registry = HttpIdentityRegistry(
        settings.rfi_url, timeout=settings.rfi_timeout, cache_ttl=settings.rfi_cache_ttl
    )
    return registry, [registry.ping], [registry.aclose]


def build_sms(settings: Settings) -> tuple[SmsSender, list[Closer]]:
    """The advisor's SMS: to the HTTP gateway when ``AMELI_SMS_URL`` is set, else the outbox."""
    if not settings.sms_url:
        return OutboxSmsSender(settings.outbox_dir), []
    sms = HttpSmsSender(
        settings.sms_url,
        api_key=settings.sms_api_key.get_secret_value() or None,
        timeout=settings.sms_timeout,
    )
    return sms, [sms.aclose]


def build_mailer(settings: Settings) -> Mailer:
    if not settings.smtp_host:
        return OutboxMailer(settings.outbox_dir, settings.mail_from)
    return SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.mail_from,
        starttls=settings.smtp_starttls,
        use_tls=settings.smtp_tls,
        username=settings.smtp_username or None,
        password=settings.smtp_password.get_secret_value() or None,
        timeout=settings.smtp_timeout,
    )


def load_secret_key(settings: Settings) -> bytes:
    """``AMELI_SECRET_KEY``; in development only, a key generated once into ``secret_key_file``.

    The key must outlive restarts and be the same on every replica and worker:
    codes, store keys and trusted-device tokens are HMACs under it. So outside
    development (``Settings.development``) it must be configured.
    """
    configured = settings.secret_key.get_secret_value()
    if configured:
        return configured.encode()
    if not settings.development:
        raise ConfigurationError(
            "AMELI_SECRET_KEY is required with Redis or beyond loopback: every replica and "
            "worker must share it (64 hex characters: python -c 'import secrets; "
            "print(secrets.token_hex(32))')"
        )
    path: Path = settings.secret_key_file
    if not path.exists():
        _create_key_file(path)
    return path.read_text().strip().encode()


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` unless it exists; never leaves a partial file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    try:
        os.link(draft, path)  # atomic, and fails if another process made the key first
        log.warning(
            "secret_key_generated",
            path=str(path),
            detail="development only: set AMELI_SECRET_KEY in production",
        )
    except FileExistsError:
        pass
    finally:
        draft.unlink()
