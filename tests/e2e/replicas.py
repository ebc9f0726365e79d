"""Server processes started with the real CLI, as a deployment runs them."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, Any

import grpc
import redis.asyncio as redis
from grpc_health.v1 import health_pb2

from tests.support.grpc_stubs import health_stub
from tests.support.mail import free_port
from tests.support.redis import delete_prefix
from tests.support.waiting import wait_for


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    address: str
    log: IO[bytes]

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    async def wait(self) -> int:
        """The exit status; a server that does not stop within 15 s fails the test."""
        return await asyncio.wait_for(asyncio.to_thread(self.process.wait), 15.0)


@asynccontextmanager
async def shared_backend(
    postgres_url: str, redis_url: str, **settings: Any
) -> AsyncIterator[dict[str, Any]]:
    """The settings of server processes sharing one PostgreSQL and one Redis key prefix
    (their own, deleted on exit), one secret key, JSON logs; ``settings`` added."""
    prefix = f"ameli-test-{secrets.token_hex(6)}"
    yield {
        "database_url": postgres_url,
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "secret_key": secrets.token_hex(32),
        "log_format": "json",
        **settings,
    }
    client = redis.Redis.from_url(redis_url)
    await delete_prefix(client, prefix)
    await client.aclose()


def environment(settings: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMELI_")}
    env.update({f"AMELI_{key.upper()}": str(value) for key, value in settings.items()})
    return env


async def wait_until_serving(server: ServerProcess) -> None:
    process = server.process
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_stub(channel)

        async def serving() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    f"the server exited with {process.returncode}: {server.output()[-2000:]}"
                )
            answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
            return answer.status == health_pb2.HealthCheckResponse.SERVING

        try:
            await wait_for(serving, 30.0, interval=0.1, ignoring=(grpc.aio.AioRpcError,))
        except AssertionError as error:
            if process.poll() is not None:
                raise
            raise AssertionError(f"{error}: {server.output()[-2000:]}") from None


@asynccontextmanager
async def server_process(
    settings: dict[str, Any], *, workers: int = 1, port: int | None = None
) -> AsyncIterator[ServerProcess]:
    """``ameli-grpc serve`` in a child process; SIGTERM and wait on exit.

    No drain delay unless ``settings`` gives one: no load balancer needs time to notice.
    """
    address = f"127.0.0.1:{port or free_port()}"
    command = [sys.executable, "-m", "ameli_grpc.cli", "serve", "--workers", str(workers)]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below; a pipe could fill and block
    process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own CLI; starting it is instant
        command,
        # no mail server; no load balancer to wait for
        env=environment({"allow_outbox": "true", "drain_delay": 0, **settings, "listen": address}),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(process, address, log)
    try:
        await wait_until_serving(server)
        yield server
    finally:
        server.terminate()
        try:
            await server.wait()
        except TimeoutError:
            process.kill()
            raise
        finally:
            log.close()
