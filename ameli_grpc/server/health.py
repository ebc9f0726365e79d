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

    async def start(self) -> None:
        await self.check_once()
        self._task = asyncio.create_task(self._loop(), name="health-monitor")

    async def stop(self) -> None:
        """NOT_SERVING for good (both names): the server is draining; no check turns it back."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._stopped:
            return
        self._stopped = True
        await self._publish(False)
        await self._servicer.enter_graceful_shutdown()

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
        if serving and self._serving is False:
            log.info("health_serving_again")
        await self._publish(serving)
        return serving

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check_once()

    async def _publish(self, serving: bool) -> None:
        self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in SERVICE_NAMES:
            await self._servicer.set(name, status)
