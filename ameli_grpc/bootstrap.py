"""The composition root: settings in, a wired ``Application`` and its adapters out.

The only module that knows both the adapters and the server; the command
line (``ameli_grpc.cli``, ``ameli_grpc.serving``) goes through it. No I/O at
import time.
"""

from __future__ import annotations

import os
import secrets
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import structlog

from ameli_grpc.accounts_import import AccountRow, ImportCounts, load_accounts
from ameli_grpc.adapters.affiliation_cache import AffiliationCache, CachedIdentityRegistry
from ameli_grpc.adapters.argon2_hasher import Argon2PasswordHasher
from ameli_grpc.adapters.http.identity_registry import HttpIdentityRegistry
from ameli_grpc.adapters.http.sms_sender import HttpSmsSender
from ameli_grpc.adapters.memory_challenge_store import MemoryChallengeStore
from ameli_grpc.adapters.outbox import OutboxMailer, OutboxSmsSender
from ameli_grpc.adapters.smtp_mailer import SmtpMailer
from ameli_grpc.adapters.sql.audit_export import read_audit_events
from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.maintenance import purge_audit, purge_expired
from ameli_grpc.adapters.sql.migrate import current_revision, head_revision, upgrade
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
from ameli_grpc.domain.ports import (
    NO_EVENTS,
    ChallengeStore,
    IdentityRegistry,
    Mailer,
    Ports,
    SmsSender,
)
from ameli_grpc.domain.tokens import Keyring
from ameli_grpc.observability import describe, start_observability, untraced_checks
from ameli_grpc.server.app import Application, ServerOptions
from ameli_grpc.server.callers import CallerKeys, Role
from ameli_grpc.server.health import Check
from ameli_grpc.server.interceptors import NO_RPC_OBSERVER

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
    metrics_port: int | None = None  # where this process serves /metrics, if it does

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            await close()


async def build_container(
    settings: Settings,
    *,
    migrate: bool = True,
    clock: Clock | None = None,
    serve_metrics: bool = True,
    memory_store: MemoryChallengeStore | None = None,
) -> Container:
    """Every adapter the settings name, the two use-case sets over them, the server's view.

    With ``AMELI_METRICS_LISTEN`` the process counts, and serves ``/metrics`` itself
    unless ``serve_metrics`` is False (a worker: its parent serves them all). Tests may
    give the clock, and the in-process store of a previous container (a restart that
    keeps it, so that both adapter sets can show what a restart must not lose).
    """
    # first: these four may refuse the settings
    keyring = Keyring(load_secret_key(settings), settings.previous_keys())
    callers = caller_keys(settings)
    policy = settings.policy()
    check_outbox(settings)
    # Before any engine, client or server exists: tracing instruments their libraries.
    seen = start_observability(settings)
    metrics = seen.metrics
    database = open_database(settings)
    if migrate:
        await upgrade(settings.database_url)
    store, store_closers, redis_client = build_store(settings, memory_store)
    clock, clock_closers = await build_clock(redis_client, clock)
    registry, registry_checks, registry_closers = build_registry(settings, database, clock)
    sms, sms_closers = build_sms(settings)
    mailer, mailer_closers = build_mailer(settings)
    hasher = Argon2PasswordHasher(
        workers=settings.hash_workers,
        max_pending=settings.max_pending_hashes,
        max_wait=settings.max_hash_wait,
        overload_wait=settings.overload_hash_wait,
        on_pending=metrics.hash_queue_depth if metrics else None,
        on_duration=metrics.hash_duration if metrics else None,
    )
    ports = Ports(
        accounts=SqlAccountRepository(database, clock),
        devices=SqlTrustedDeviceRepository(database),
        provisional_codes=SqlProvisionalCodeRepository(database, clock),
        audit=SqlAuditLog(database),
        registry=registry,
        store=store,
        mailer=mailer,
        sms=sms,
        hasher=hasher,
        keyring=keyring,
        clock=clock,
        events=metrics or NO_EVENTS,
    )

    async def close_hasher() -> None:
        hasher.close()

    app = Application(
        login=LoginUseCases(ports, policy),
        advisor=AdvisorUseCases(ports, policy),
        caller_keys=callers,
        clock=clock,
        health_checks=untraced_checks(database.ping, store.ping, *registry_checks),
        rpc_observer=metrics or NO_RPC_OBSERVER,
    )
    if serve_metrics:
        seen.serve_metrics(settings)  # last: nothing is left listening if a step above fails
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
            *mailer_closers,
            *seen.closers,
        ],
        metrics_port=seen.metrics_port,
    )


def caller_keys(settings: Settings) -> CallerKeys:
    """The named callers of each role (``AMELI_<ROLE>_API_KEYS`` and their ``_FILE``)."""
    return CallerKeys({role: settings.api_keys(role.value) for role in Role})


def check_serving(settings: Settings) -> None:
    """Every refusal ``serve`` can make from the settings alone, before any connection.

    ``serve`` runs it before migrating, ``check-config`` to validate; nothing is
    written (the development key is not generated here).
    """
    check_secret_key(settings)
    keys = caller_keys(settings)
    settings.policy()
    check_outbox(settings)
    _listening_credentials(settings, keys)


def check_outbox(settings: Settings) -> None:
    """Outside development, mail or SMS written in clear to a directory must be asked for.

    Otherwise a server missing its SMTP or SMS settings would answer "sent"
    while the codes pile up in ``AMELI_OUTBOX_DIR`` (SPEC §9).
    """
    configured = {"AMELI_SMTP_HOST": settings.smtp_host, "AMELI_SMS_URL": settings.sms_url}
    missing = [name for name, value in configured.items() if not value]
    beyond = settings.beyond_development()
    if not missing or not beyond or settings.allow_outbox:
        return
    what = {"AMELI_SMTP_HOST": "security codes", "AMELI_SMS_URL": "provisional codes"}
    raise ConfigurationError(
        f"no {' nor '.join(missing)}: {' and '.join(what[name] for name in missing)} would be "
        f"written in clear to {settings.outbox_dir} and answered as sent, on a set-up that is "
        f"not development ({', '.join(beyond)}); configure {' and '.join(missing)}, or set "
        "AMELI_ALLOW_OUTBOX=true if a local outbox is really wanted",
        ",".join([*missing, "AMELI_ALLOW_OUTBOX"]),
    )


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
        max_concurrent_streams=settings.max_concurrent_streams,
        shutdown_grace=settings.shutdown_grace,
        drain_delay=settings.drain_delay,
        max_connection_age=settings.max_connection_age,
        health_interval=settings.health_interval,
        reuse_port=reuse_port,
        reflection=settings.reflection,
        summary=describe(settings),
    )


def _listening_credentials(settings: Settings, keys: CallerKeys) -> grpc.ServerCredentials | None:
    listen, cert_file, key_file = settings.listen, settings.tls_cert_file, settings.tls_key_file
    loopback = is_loopback(listen)
    if keys.open and not loopback:
        raise ConfigurationError(
            "no AMELI_PORTAL_API_KEYS / AMELI_MOBILE_API_KEYS / AMELI_ADVISOR_API_KEYS configured: "
            f"refusing to listen on {listen} (only loopback addresses run without keys)",
            "AMELI_PORTAL_API_KEYS,AMELI_MOBILE_API_KEYS,AMELI_ADVISOR_API_KEYS",
        )
    if cert_file and key_file:
        return grpc.ssl_server_credentials([_read_tls_pair(cert_file, key_file)])
    if cert_file or key_file:
        raise ConfigurationError(
            "AMELI_TLS_CERT_FILE and AMELI_TLS_KEY_FILE go together",
            "AMELI_TLS_CERT_FILE,AMELI_TLS_KEY_FILE",
        )
    if not loopback and not settings.allow_insecure:
        raise ConfigurationError(
            f"refusing to serve cleartext on {listen}: set AMELI_TLS_CERT_FILE and "
            "AMELI_TLS_KEY_FILE, or AMELI_ALLOW_INSECURE=true where a proxy or mesh does TLS",
            "AMELI_TLS_CERT_FILE,AMELI_TLS_KEY_FILE,AMELI_ALLOW_INSECURE",
        )
    return None


def _read_tls_pair(cert_file: Path, key_file: Path) -> tuple[bytes, bytes]:
    """The PEM key and chain, checked now: gRPC would only fail when binding, blaming the port."""
    for variable, path in (("AMELI_TLS_CERT_FILE", cert_file), ("AMELI_TLS_KEY_FILE", key_file)):
        if not os.access(path, os.R_OK):
            raise ConfigurationError(f"{variable}: cannot read {path}", variable)
    try:
        # An encrypted key gets an empty passphrase (and fails) rather than a terminal prompt.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file, password=lambda: b"")
    except (ssl.SSLError, OSError, ValueError):
        raise ConfigurationError(
            f"{cert_file} and {key_file} are not a PEM certificate chain and its private key",
            "AMELI_TLS_CERT_FILE,AMELI_TLS_KEY_FILE",
        ) from None
    return key_file.read_bytes(), cert_file.read_bytes()


def open_database(settings: Settings) -> Database:
    """The SQL engine (no connection is made until the first session)."""
    return Database(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        timeout=settings.database_timeout,
    )


async def migrate(settings: Settings) -> str:
    """Alembic upgrade head of the configured database; the revision it is at."""
    return await upgrade(settings.database_url)


async def check_schema(settings: Settings) -> str:
    """The database's revision, which must be this version's head (``serve --no-migrate``).

    For a database role without DDL rights: the schema is migrated by another
    role beforehand, and a server that finds it behind refuses to start.
    """
    current, head = await current_revision(settings.database_url), head_revision()
    if current != head:
        raise ConfigurationError(
            f"the database schema is at revision {current or 'none (empty database)'}, this "
            f"version needs {head}: run `ameli-grpc migrate` with a role allowed to change the "
            "schema, then start again",
            "AMELI_DATABASE_URL",
        )
    return current


async def import_accounts(
    settings: Settings, rows: Iterable[AccountRow], *, update: bool = False
) -> ImportCounts:
    """Migrate, then hash and create each new account with its RFI affiliation.

    An existing account (same NIR) is skipped, or replaced with ``update``.
    """
    await migrate(settings)
    database = open_database(settings)
    hasher = Argon2PasswordHasher(workers=settings.hash_workers)
    try:
        return await load_accounts(
            rows,
            SqlAccountRepository(database),
            SqlIdentityRegistry(database),
            hasher,
            update=update,
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
    """The RFI: over HTTP when ``AMELI_RFI_URL`` is set, else the SQL reference table.

    Either way its answers are cached for ``AMELI_RFI_CACHE_TTL`` seconds.
    """
    if not settings.rfi_url:
        cache = AffiliationCache(settings.rfi_cache_ttl)
        return CachedIdentityRegistry(SqlIdentityRegistry(database, clock), cache), [], []
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


def build_mailer(settings: Settings) -> tuple[Mailer, list[Closer]]:
    """The security-code email: to the SMTP relay when ``AMELI_SMTP_HOST`` is set, else the
    outbox; the relay's idle connections are closed on stop."""
    if not settings.smtp_host:
        return OutboxMailer(settings.outbox_dir, settings.mail_from), []
    mailer = smtp_mailer(settings)
    return mailer, [mailer.aclose]


def smtp_mailer(settings: Settings) -> SmtpMailer:
    """The mailer of the SMTP relay that ``AMELI_SMTP_*`` name (``smtp_host`` is set)."""
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
    check_secret_key(settings)
    path: Path = settings.secret_key_file
    if not path.exists():
        _create_key_file(path)
    return path.read_text().strip().encode()


def check_secret_key(settings: Settings) -> None:
    """Refuse a missing ``AMELI_SECRET_KEY`` outside development (nothing is generated here)."""
    if not settings.secret_key.get_secret_value() and not settings.development:
        raise ConfigurationError(
            "AMELI_SECRET_KEY is required with Redis or beyond loopback: every replica and "
            "worker must share it (64 hex characters: python -c 'import secrets; "
            "print(secrets.token_hex(32))')",
            "AMELI_SECRET_KEY",
        )


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
