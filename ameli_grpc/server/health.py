"""Health: SERVING only while every dependency answers; checked in the background."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import structlog
from grpc_health.v1 import health, health_pb2

log = structlog.get_logger("ameli_grpc.health")

Check = Callable[[], Awaitable[None]]
SERVICE_NAMES = ("", "ameli.auth.v1.AuthService")


class HealthMonitor:
    """Runs the dependency checks every ``interval`` seconds and publishes the result."""

    def __init__(
        self, servicer: health.aio.HealthServicer, checks: Sequence[Check], interval: float
    ) -> None:
        self._servicer = servicer
        self._checks = checks
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._serving: bool | None = None
        self._stopped = False
        self._checking = False  # a round of checks is under way in the background task

    async def start(self) -> None:
        await self.check_once()
        self._task = asyncio.create_task(self._loop(), name="health-monitor")

    async def stop(self) -> None:
        """NOT_SERVING for good (both names): the server is draining; no check turns it back.

        Published at once; the check under way, if any, is then left to finish (bounded by
        its own timeout) rather than cancelled inside a driver call, whose connection a
        cancellation can leave half-closed for the adapters' own shutdown.
        """
        if self._stopped:
            return
        self._stopped = True
        await self._publish(False)
        await self._servicer.enter_graceful_shutdown()
        if self._task is None:
            return
        if self._checking:  # let it end (its own timeout bounds it), then the loop stops
            await asyncio.wait({self._task}, timeout=self._interval * 2 + 1)
        self._task.cancel()  # asleep between checks, or a check past its own timeout
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def check_once(self) -> bool:
        try:
            await asyncio.wait_for(
                asyncio.gather(*(check() for check in self._checks)), timeout=self._interval * 2
            )
            serving = True
        except Exception as error:  # any failure of a check means NOT_SERVING
            serving = False
            if self._serving is not False:
                log.warning(
                    "health_not_serving",
                    # DependencyUnavailable names it; a check that hangs is only a timeout
                    dependency=getattr(error, "dependency", "unknown"),
                    error=type(error).__name__,
                )
        if self._stopped:  # the server drains: NOT_SERVING stays
            return serving
        if serving and self._serving is False:
            log.info("health_serving_again")
        await self._publish(serving)
        return serving

    async def _loop(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self._interval)
            if not self._stopped:
                self._checking = True
                try:
                    await self.check_once()
                finally:
                    self._checking = False

    async def _publish(self, serving: bool) -> None:
        self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in SERVICE_NAMES:
            await self._servicer.set(name, status)
