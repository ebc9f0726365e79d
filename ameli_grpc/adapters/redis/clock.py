"""``RedisClock``: one time line for every replica, read from the Redis server (SPEC §7, item 8).

Windows and lock ends are decided with a ``now`` that every replica takes from
the Redis server's ``TIME``, so a replica whose own clock is wrong can neither
shorten nor lengthen a lock. Between two reads the clock advances with this
process's monotonic clock, which no wall-clock step affects: ``now()`` stays a
plain, synchronous call. It is read again every ``resync_every`` seconds in
the background (every second until a first read has succeeded).

Before a first read, ``now()`` raises ``DependencyUnavailable``: the service
fails closed rather than count with a time nobody agreed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from ameli_grpc.adapters.outages import map_outages
from ameli_grpc.adapters.redis.connection import REDIS_OUTAGES, RedisClient
from ameli_grpc.domain.errors import DependencyUnavailable

_log = structlog.get_logger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNSYNCED_RETRY = 1.0


class RedisClock:
    def __init__(
        self,
        client: RedisClient,
        *,
        resync_every: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._resync_every = resync_every
        self._monotonic = monotonic
        self._anchor: tuple[datetime, float] | None = None  # (Redis time, monotonic then)
        self._task: asyncio.Task[None] | None = None

    def now(self) -> datetime:
        if self._anchor is None:
            raise DependencyUnavailable("redis", "clock not synchronised")
        redis_time, at = self._anchor
        return redis_time + timedelta(seconds=self._monotonic() - at)

    async def sync(self) -> None:
        """Read the server's TIME; the anchor is the middle of the round trip."""
        before = self._monotonic()
        with map_outages("redis", REDIS_OUTAGES):
            seconds, micros = await self._client.time()
        after = self._monotonic()
        moment = _EPOCH + timedelta(seconds=int(seconds), microseconds=int(micros))
        self._anchor = (moment, (before + after) / 2)

    async def start(self) -> None:
        """A first read now (an outage is tolerated: retried), then the background resync."""
        with contextlib.suppress(DependencyUnavailable):
            await self.sync()
        self._task = asyncio.create_task(self._keep_in_sync(), name="redis-clock")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _keep_in_sync(self) -> None:
        while True:
            await asyncio.sleep(self._resync_every if self._anchor else UNSYNCED_RETRY)
            try:
                await self.sync()
            except DependencyUnavailable as error:
                _log.warning("redis_clock_not_synced", dependency="redis", error=error.detail)
