"""The composition root: settings in, a wired ``Application`` and its adapters out.

The only module that knows both the adapters and the server; the command
line (``ameli_grpc.cli``, ``ameli_grpc.serving``) goes through it. No I/O at
import time.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import structlog

from ameli_grpc.accounts_import import AccountRow, load_accounts
from ameli_grpc.adapters.argon2_hasher import Argon2PasswordHasher
from ameli_grpc.adapters.http.identity_registry import HttpIdentityRegistry
from ameli_grpc.adapters.http.sms_sender import HttpSmsSender
from ameli_grpc.adapters.memory_challenge_store import MemoryChallengeStore
from ameli_grpc.adapters.outbox import OutboxMailer, OutboxSmsSender
from ameli_grpc.adapters.smtp_mailer import SmtpMailer
from ameli_grpc.adapters.sql.audit_export import read_audit_events
from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.maintenance import purge_audit, purge_expired
from ameli_grpc.adapters.sql.migrate import upgrade
from ameli_grpc.adapters.sql.repositories import (
    SqlAccountRepository,
    SqlAuditLog,
    SqlIdentityRegistry,
    SqlProvisionalCodeRepository,
    SqlTrustedDeviceRepository,
)
from ameli_grpc.config import ConfigurationError, Settings, is_loopback
from ameli_grpc.domain.advisor import AdvisorUseCases
from ameli_grpc.domain.clock import Clock, SystemClock
from ameli_grpc.domain.login import LoginUseCases
from ameli_grpc.domain.model import AuditEvent
from ameli_grpc.domain.ports import ChallengeStore, IdentityRegistry, Mailer, Ports, SmsSender
from ameli_grpc.domain.tokens import Keyring
from ameli_grpc.server.app import Application, ServerOptions
from ameli_grpc.server.callers import CallerKeys, Role
from ameli_grpc.server.health import Check

if TYPE_CHECKING:  # the Redis driver is imported only when Redis is configured
    from ameli_grpc.adapters.redis.connection import RedisClient

log = structlog.get_logger("ameli_grpc.bootstrap")

Closer = Callable[[], Awaitable[None]]


@dataclass
class Container:
    """Everything a server process needs, and what to close when it stops."""

    app: Application
    ports: Ports
    database: Database
    closers: list[Closer] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            await close()


async def build_container(
    settings: Settings,
    *,
    migrate: bool = True,
    clock: Clock | None = None,
    memory_store: MemoryChallengeStore | None = None,
) -> Container:
    """Every adapter the settings name, the two use-case sets over them, the server's view.

    Tests may give the clock, and the in-process store of a previous container (a restart
    that keeps it, so that both adapter sets can show what a restart must not lose).
    """
    # first: these three may refuse the settings
    keyring = Keyring(load_secret_key(settings), settings.previous_keys())
    callers = caller_keys(settings)
    policy = settings.policy()
    database = open_database(settings)
    if migrate:
        await upgrade(settings.database_url)
    store, store_closers, redis_client = build_store(settings, memory_store)
    clock, clock_closers = await build_clock(redis_client, clock)
    registry, registry_checks, registry_closers = build_registry(settings, database, clock)
    sms, sms_closers = build_sms(settings)
    hasher = Argon2PasswordHasher(
        workers=settings.hash_workers, max_pending=settings.max_pending_hashes
    )
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

    app = Application(
        login=LoginUseCases(ports, policy),
        advisor=AdvisorUseCases(ports, policy),
        caller_keys=callers,
        clock=clock,
        health_checks=(database.ping, store.ping, *registry_checks),
    )
    return Container(
        app=app,
        ports=ports,
        database=database,
        closers=[
            database.dispose,
            close_hasher,
            *store_closers,
            *clock_closers,
            *registry_closers,
            *sms_closers,
        ],
    )


def caller_keys(settings: Settings) -> CallerKeys:
    """The named callers of each role (``AMELI_<ROLE>_API_KEYS`` and their ``_FILE``)."""
    return CallerKeys({role: settings.api_keys(role.value) for role in Role})


def server_options(
    settings: Settings, keys: CallerKeys, *, reuse_port: bool = False
) -> ServerOptions:
    """How to listen, from the settings; refuses what would expose the service.

    Beyond loopback: no caller keys, or cleartext without ``AMELI_ALLOW_INSECURE``.
    """
    return ServerOptions(
        listen=settings.listen,
        credentials=_listening_credentials(settings, keys),
        max_message_bytes=settings.max_message_bytes,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        shutdown_grace=settings.shutdown_grace,
        health_interval=settings.health_interval,
        reuse_port=reuse_port,
    )


def _listening_credentials(settings: Settings, keys: CallerKeys) -> grpc.ServerCredentials | None:
    listen, cert_file, key_file = settings.listen, settings.tls_cert_file, settings.tls_key_file
    loopback = is_loopback(listen)
    if keys.open and not loopback:
        raise ConfigurationError(
            "no AMELI_PORTAL_API_KEYS / AMELI_MOBILE_API_KEYS / AMELI_ADVISOR_API_KEYS configured: "
            f"refusing to listen on {listen} (only loopback addresses run without keys)"
        )
    if cert_file and key_file:
        return grpc.ssl_server_credentials([(key_file.read_bytes(), cert_file.read_bytes())])
    if cert_file or key_file:
        raise ConfigurationError("AMELI_TLS_CERT_FILE and AMELI_TLS_KEY_FILE go together")
    if not loopback and not settings.allow_insecure:
        raise ConfigurationError(
            f"refusing to serve cleartext on {listen}: set AMELI_TLS_CERT_FILE and "
            "AMELI_TLS_KEY_FILE, or AMELI_ALLOW_INSECURE=true where a proxy or mesh does TLS"
        )
    return None


def open_database(settings: Settings) -> Database:
    """The SQL engine (no connection is made until the first session)."""
    return Database(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        timeout=settings.database_timeout,
    )


async def migrate(settings: Settings) -> None:
    """Alembic upgrade head of the configured database."""
    await upgrade(settings.database_url)


async def import_accounts(settings: Settings, rows: Iterable[AccountRow]) -> int:
    """Migrate, then hash and upsert each account with its RFI affiliation."""
    await migrate(settings)
    database = open_database(settings)
    hasher = Argon2PasswordHasher(workers=settings.hash_workers)
    try:
        return await load_accounts(
            rows, SqlAccountRepository(database), SqlIdentityRegistry(database), hasher
        )
    finally:
        hasher.close()
        await database.dispose()


async def purge(
    settings: Settings, now: datetime, *, audit_before: datetime | None = None
) -> dict[str, int]:
    """Delete the expired rows, and the audit rows older than ``audit_before`` if given;
    the count per table."""
    database = open_database(settings)
    try:
        deleted = await purge_expired(database, now)
        if audit_before is not None:
            deleted["audit_events"] = await purge_audit(database, audit_before)
        return deleted
    finally:
        await database.dispose()


async def audit_events(
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    kinds: Collection[str] = (),
) -> AsyncGenerator[AuditEvent, None]:
    """The audit rows of the configured database, oldest first, streamed."""
    database = open_database(settings)
    try:
        async for event in read_audit_events(database, since=since, until=until, kinds=kinds):
            yield event
    finally:
        await database.dispose()


async def build_clock(
    redis_client: RedisClient | None, clock: Clock | None
) -> tuple[Clock, list[Closer]]:
    """The given clock (tests), else Redis' TIME for every replica on Redis, else the system's."""
    if clock is not None:
        return clock, []
    if redis_client is None:
        return SystemClock(), []
    from ameli_grpc.adapters.redis.clock import RedisClock  # imported only with Redis

    redis_clock = RedisClock(redis_client)
    await redis_clock.start()
    return redis_clock, [redis_clock.aclose]


def build_store(
    settings: Settings, memory_store: MemoryChallengeStore | None = None
) -> tuple[ChallengeStore, list[Closer], RedisClient | None]:
    """The challenge store, what closes it, and the Redis client it uses (None: in-process)."""
    if not settings.redis_url:
        return memory_store or MemoryChallengeStore(), [], None
    # imported only when Redis is configured
    from ameli_grpc.adapters.redis.connection import redis_client_from_url
    from ameli_grpc.adapters.redis.store import RedisChallengeStore

    client = redis_client_from_url(settings.redis_url, settings.redis_timeout)
    return RedisChallengeStore(client, settings.redis_prefix), [client.aclose], client


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
