"""End-to-end fixtures: the same scenarios on both adapter sets.

``embedded``: SQLite file + in-process store. ``redis_postgres``: the
session's PostgreSQL database (emptied before each test) + Redis under a key
prefix of its own (deleted after the test). Mail goes to an in-process
aiosmtpd server in both.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from ameli_grpc.adapters.sql.database import Database
from tests.e2e.harness import ServiceUnderTest, settings_for_tests
from tests.support.databases import clear_tables, migrated_sqlite_database
from tests.support.mail import SmtpTestServer, smtp_server

BACKENDS = [
    pytest.param("embedded", id="embedded"),
    pytest.param(
        "redis_postgres", id="redis_postgres", marks=[pytest.mark.redis, pytest.mark.postgres]
    ),
]

ServiceFactory = Callable[..., Awaitable[ServiceUnderTest]]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def servers(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The session's PostgreSQL and Redis URLs, asked for only by the backend that needs them."""
    if backend == "embedded":
        return {}
    return {name: request.getfixturevalue(name) for name in ("postgres_url", "redis_url")}


@pytest.fixture
async def backend_settings(
    servers: dict[str, str], tmp_path: Path
) -> AsyncIterator[dict[str, Any]]:
    """The storage settings of one backend, fresh for this test."""
    if not servers:
        async with migrated_sqlite_database(tmp_path) as url:
            yield {"database_url": url, "redis_url": ""}
        return
    postgres_url, redis_url = servers["postgres_url"], servers["redis_url"]
    database = Database(postgres_url)
    await clear_tables(database)
    await database.dispose()
    prefix = f"ameli-test-{secrets.token_hex(6)}"
    yield {"database_url": postgres_url, "redis_url": redis_url, "redis_prefix": prefix}
    client = redis.Redis.from_url(redis_url)
    async for key in client.scan_iter(match=f"{prefix}:*", count=500):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpTestServer]:
    async with smtp_server() as server:
        yield server


@pytest.fixture
async def make_service(
    backend_settings: dict[str, Any], smtp: SmtpTestServer, tmp_path: Path
) -> AsyncIterator[ServiceFactory]:
    """Start a service with settings overridden by keyword (short durations, channels...)."""
    started: list[ServiceUnderTest] = []

    async def factory(**overrides: Any) -> ServiceUnderTest:
        values = {
            **backend_settings,
            "smtp_host": smtp.host,
            "smtp_port": smtp.port,
            "outbox_dir": tmp_path / "outbox",
            **overrides,
        }
        service = ServiceUnderTest(settings_for_tests(**values), smtp)
        await service.start()
        started.append(service)
        return service

    yield factory
    for service in started:
        await service.stop()


@pytest.fixture
async def service(make_service: ServiceFactory) -> ServiceUnderTest:
    return await make_service()
