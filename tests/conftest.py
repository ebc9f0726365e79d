"""Session-wide servers shared by the adapter and end-to-end tests.

Under ``CI=true`` an unreachable PostgreSQL or Redis fails the run instead of
skipping the tests that need it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from ameli_grpc.domain.errors import DependencyUnavailable
from tests.support.databases import (
    fail_if_unreachable,
    postgres_base_url,
    temporary_postgres_database,
)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def unreachable(message: str) -> None:
    if fail_if_unreachable():
        pytest.fail(message)
    pytest.skip(message)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """The URL of this session's migrated PostgreSQL database (dropped at the end)."""
    async with AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(temporary_postgres_database())
        except DependencyUnavailable as error:
            server = make_url(postgres_base_url())  # printed with its password masked
            unreachable(f"PostgreSQL unreachable at {server} ({error.__cause__!r})")
        yield url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def redis_url() -> str:
    """The Redis server of the tests; each test uses its own key prefix."""
    import redis.asyncio as redis  # only the Redis tests need the driver

    url = os.environ.get("AMELI_TEST_REDIS_URL") or DEFAULT_REDIS_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
        unreachable(f"Redis unreachable at {url} ({error!r})")
    finally:
        await client.aclose()
    return url
