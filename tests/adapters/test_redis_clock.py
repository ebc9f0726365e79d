"""``RedisClock``: every replica's ``now`` is the Redis server's TIME (SPEC §7, one clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from ameli_grpc.adapters.redis.clock import RedisClock
from ameli_grpc.adapters.redis.connection import redis_client_from_url
from ameli_grpc.bootstrap import build_container
from ameli_grpc.domain import clock as domain_clock
from ameli_grpc.domain.errors import DependencyUnavailable
from tests.e2e.harness import settings_for_tests
from tests.support.databases import migrated_sqlite_database

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


async def server_time(client: Redis) -> datetime:
    seconds, micros = await client.time()
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=micros)


async def test_now_is_the_redis_servers_time(client: Redis) -> None:
    """After a read of TIME, ``now`` follows the server's clock, to within the round trip."""
    clock = RedisClock(client)
    await clock.start()
    try:
        assert abs(clock.now() - await server_time(client)) < timedelta(milliseconds=200)
    finally:
        await clock.aclose()


async def test_between_reads_it_advances_with_the_monotonic_clock(client: Redis) -> None:
    """Between two reads, ``now`` moves exactly as the process's monotonic clock does."""
    tick = [100.0]
    clock = RedisClock(client, monotonic=lambda: tick[0])
    await clock.sync()
    first = clock.now()

    tick[0] += 60.5

    assert clock.now() - first == timedelta(seconds=60.5)


async def test_before_a_first_read_it_fails_closed() -> None:
    """With Redis unreachable from the start, ``now`` refuses; ``start`` tolerates the outage."""
    unreachable = redis_client_from_url("redis://127.0.0.1:1/0", 0.2)
    clock = RedisClock(unreachable)
    await clock.start()
    try:
        with pytest.raises(DependencyUnavailable) as refused:
            clock.now()
        assert refused.value.dependency == "redis"
    finally:
        await clock.aclose()
        await unreachable.aclose()


async def test_a_replica_with_a_wrong_system_clock_keeps_the_shared_time(
    redis_url: str, client: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Redis, the composition root gives the rules Redis' time, not the machine's clock."""
    skewed = datetime.now(UTC) + timedelta(hours=3)
    monkeypatch.setattr(domain_clock.SystemClock, "now", lambda self: skewed)
    async with migrated_sqlite_database(tmp_path) as database_url:
        settings = settings_for_tests(
            database_url=database_url, redis_url=redis_url, outbox_dir=tmp_path / "outbox"
        )
        container = await build_container(settings, migrate=False)
        try:
            shared = container.app.clock.now()
        finally:
            await container.aclose()

    assert abs(shared - await server_time(client)) < timedelta(seconds=1)
    assert domain_clock.SystemClock().now() == skewed  # the machine's clock is still wrong
