"""``ameli-grpc check-config [--connect]``: the settings validated and summarised, no secret shown.

Without ``--connect`` nothing is opened: the same refusals as ``serve``
(``check_serving``), then one line per part of the set-up. With it, each
configured dependency is reached once, within its own timeout: the database
(and its schema revision), Redis, the SMTP relay (connect, EHLO, STARTTLS and
login as configured), the RFI (``GET /health``) and the SMS gateway (any HTTP
answer from its base URL). Exit status: 0, 2 on bad settings (raised as
``ConfigurationError`` to the command line), 1 if a dependency cannot be reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import httpx
from sqlalchemy.engine import make_url

from ameli_grpc.adapters.http.identity_registry import HttpIdentityRegistry
from ameli_grpc.adapters.sql.migrate import current_revision, head_revision
from ameli_grpc.bootstrap import build_store, check_serving, open_database, smtp_mailer
from ameli_grpc.config import ROLES, Settings, is_loopback
from ameli_grpc.domain.errors import DependencyUnavailable

# Beyond a dependency's own timeout, how long its check may take (several round trips).
_CHECK_MARGIN = 2.0


def check_config(settings: Settings, *, connect: bool, out: TextIO) -> int:
    """Validate, print the summary, and with ``connect`` reach each dependency; the exit status."""
    check_serving(settings)
    for name, value in settings_summary(settings).items():
        out.write(f"{name}: {value}\n")
    out.write("configuration ok\n")
    if not connect:
        return 0
    reached = asyncio.run(reach_dependencies(settings))
    for outcome in reached:
        out.write(f"reach {outcome.name}: {'ok' if outcome.ok else 'FAILED'} ({outcome.detail})\n")
    failed = [outcome.name for outcome in reached if not outcome.ok]
    out.write(f"unreachable: {', '.join(failed)}\n" if failed else "every dependency answered\n")
    return 1 if failed else 0


def settings_summary(settings: Settings) -> dict[str, str]:
    """What the settings configure, one line each: hosts, paths and caller names, never a
    password, key or URL credential."""
    loopback = is_loopback(settings.listen)
    if settings.tls_cert_file is not None:
        tls = f"on ({settings.tls_cert_file})"
    else:
        tls = "off (loopback)" if loopback else "off (AMELI_ALLOW_INSECURE: a proxy does TLS)"
    smtp_security = " STARTTLS" if settings.smtp_starttls else " TLS" if settings.smtp_tls else ""
    smtp_login = f", login {settings.smtp_username}" if settings.smtp_username else ""
    outbox = f"outbox {settings.outbox_dir} (in clear)"
    beyond = settings.beyond_development()
    setup = f"beyond development: {', '.join(beyond)}" if beyond else "development"
    return {
        "listen": f"{settings.listen} ({setup})",
        "tls": tls,
        "database": _database(settings.database_url),
        "store": (
            f"redis {_without_credentials(settings.redis_url)} (prefix {settings.redis_prefix})"
            if settings.redis_url
            else "in-process (one process only)"
        ),
        "mailer": (
            f"smtp {settings.smtp_host}:{settings.smtp_port}{smtp_security}{smtp_login}"
            if settings.smtp_host
            else outbox
        ),
        "sms": f"http {_without_credentials(settings.sms_url)}" if settings.sms_url else outbox,
        "rfi": (
            f"http {_without_credentials(settings.rfi_url)}"
            if settings.rfi_url
            else "the SQL table rfi_affiliations"
        ),
        "secret key": (
            "AMELI_SECRET_KEY"
            if settings.secret_key.get_secret_value()
            else f"development key file {settings.secret_key_file}"
        ),
        "callers": "; ".join(
            f"{role}: {', '.join(name for name, _key in settings.api_keys(role)) or 'none'}"
            for role in ROLES
        ),
        "reflection": "on" if settings.reflection else "off",
        "log format": settings.log_format,
    }


def _database(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite {parsed.database or ':memory:'}"
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    return f"{parsed.get_backend_name()} {where}/{parsed.database or ''}"


def _without_credentials(url: str) -> str:
    """``scheme://hosts/path``: no user, password, query (it may hold a token) or fragment."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{hosts}{parts.path}"


@dataclass(frozen=True)
class Reached:
    """What reaching one dependency gave: ``detail`` is what answered, or why nothing did."""

    name: str
    ok: bool
    detail: str


Probe = Callable[[Settings], Awaitable[str]]


async def reach_dependencies(settings: Settings) -> list[Reached]:
    """Each configured dependency, reached in turn within its own timeout."""
    probes: list[tuple[str, Probe, float]] = [
        ("database", _reach_database, settings.database_timeout)
    ]
    if settings.redis_url:
        probes.append(("redis", _reach_redis, settings.redis_timeout))
    if settings.smtp_host:
        probes.append(("smtp", _reach_smtp, settings.smtp_timeout))
    if settings.rfi_url:
        probes.append(("rfi", _reach_rfi, settings.rfi_timeout))
    if settings.sms_url:
        probes.append(("sms", _reach_sms, settings.sms_timeout))
    reached = []
    for name, probe, timeout in probes:
        try:
            async with asyncio.timeout(timeout + _CHECK_MARGIN):
                reached.append(Reached(name, True, await probe(settings)))
        except TimeoutError:
            reached.append(Reached(name, False, f"no answer within {timeout + _CHECK_MARGIN:g} s"))
        except Exception as error:  # whatever failed is the answer
            reached.append(Reached(name, False, _describe(error)))
    return reached


def _describe(error: BaseException) -> str:
    """The failure's kind and message. These probes send no personal data (``SELECT 1``,
    ``PING``, ``EHLO``, a ``GET``), so the drivers' messages cannot quote any."""
    cause = error.__cause__ if isinstance(error, DependencyUnavailable) else error
    if cause is None:
        return str(error)
    message = " ".join(str(cause).split()).split(" (Background on this error")[0][:200]
    return f"{type(cause).__name__}: {message}" if message else type(cause).__name__


def _missing_sqlite_file(database_url: str) -> str | None:
    """The SQLite file of the URL if it does not exist yet (reaching it would create it)."""
    url = make_url(database_url)
    path = url.database or ""
    if url.get_backend_name() != "sqlite" or path in ("", ":memory:") or path.startswith("file:"):
        return None
    return None if Path(path).exists() else path


async def _reach_database(settings: Settings) -> str:
    missing = _missing_sqlite_file(settings.database_url)
    if missing is not None:
        return f"no file {missing} yet: `ameli-grpc migrate` (or serve) creates it"
    database = open_database(settings)
    try:
        await database.ping()
    finally:
        await database.dispose()
    current = await current_revision(
        settings.database_url, connect_timeout=settings.database_timeout
    )
    head = head_revision()
    if current == head:
        return f"schema at head {head}"
    return f"schema at {current or 'none'}, head is {head}: `ameli-grpc migrate` (serve does it)"


async def _reach_redis(settings: Settings) -> str:
    store, closers, _client = build_store(settings)
    try:
        await store.ping()
    finally:
        for close in closers:
            await close()
    return "PING answered"


async def _reach_smtp(settings: Settings) -> str:
    return await smtp_mailer(settings).check()


async def _reach_rfi(settings: Settings) -> str:
    registry = HttpIdentityRegistry(
        settings.rfi_url, timeout=settings.rfi_timeout, cache_ttl=settings.rfi_cache_ttl
    )
    try:
        await registry.ping()
    finally:
        await registry.aclose()
    return "GET /health answered 2xx"


async def _reach_sms(settings: Settings) -> str:
    """Any HTTP answer from the base URL: nothing is sent (its API has no health route)."""
    async with httpx.AsyncClient(timeout=settings.sms_timeout, follow_redirects=False) as client:
        response = await client.get(settings.sms_url)
    return f"HTTP {response.status_code}"
