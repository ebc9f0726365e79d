"""Redis for the tests: a store under a throw-away key prefix, and a throw-away server.

Plain async context managers (no pytest here), so that adapter tests and
end-to-end tests use Redis the same way:

- ``redis_store(url)`` yields a ``RedisChallengeStore`` on the test server
  (``AMELI_TEST_REDIS_URL``, else the local one) under a random prefix, and
  deletes every key of that prefix on exit; it raises
  ``DependencyUnavailable`` if the server cannot be reached;
- ``throwaway_redis_server()`` runs a ``redis-server`` of our own on a free
  port, which a test may ``stop()`` (killed, as in a crash), ``pause()``
  (frozen, as in a network partition) and ``start()`` again on the same port;
- ``throwaway_redis_cluster()`` runs a Redis Cluster of our own: three such
  servers as primaries (no replica), each serving a third of the slots.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from pathlib import Path

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from ameli_grpc.adapters.redis.connection import RedisClient, redis_client_from_url
from ameli_grpc.adapters.redis.store import RedisChallengeStore
from tests.support.waiting import wait_for

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SENTINEL_SERVICE = "ameli-test-master"
_STARTUP_SECONDS = 30.0  # `--cluster create` waits for the nodes to meet; slow on a loaded machine
_CLUSTER_SIZE = 3


def redis_test_url() -> str:
    """The server of the Redis tests: ``AMELI_TEST_REDIS_URL`` or the local one."""
    return os.environ.get("AMELI_TEST_REDIS_URL") or DEFAULT_REDIS_URL


def new_test_prefix() -> str:
    return f"ameli-test-{secrets.token_hex(6)}"


@asynccontextmanager
async def redis_store(
    url: str | None = None, *, prefix: str | None = None, client_timeout: float = 2.0
) -> AsyncIterator[RedisChallengeStore]:
    """A store under ``prefix`` (random by default), whose keys are all deleted on exit."""
    prefix = prefix or new_test_prefix()
    client = redis_client_from_url(url or redis_test_url(), client_timeout)
    try:
        store = RedisChallengeStore(client, prefix)
        await store.ping()
        try:
            yield store
        finally:
            await delete_prefix(client, prefix)
    finally:
        await client.aclose()


async def keys_of(client: RedisClient, prefix: str) -> list[str]:
    """Every key under ``prefix`` (SCAN, never KEYS; on every primary of a cluster), as text."""
    found = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
    return sorted(key.decode() if isinstance(key, bytes) else key for key in found)


async def delete_prefix(client: RedisClient, prefix: str) -> None:
    """Delete every key under ``prefix``; quietly nothing if the server is gone."""
    try:
        for key in await keys_of(client, prefix):
            await client.delete(key)
    except (
        redis_errors.ConnectionError,
        redis_errors.TimeoutError,
        redis_errors.RedisClusterException,  # no node of the cluster is reachable
        OSError,
    ):
        return


class ThrowawayRedisServer:
    """A ``redis-server`` process of this test only: no persistence, one fixed port."""

    def __init__(
        self,
        directory: Path,
        *,
        monitor: ThrowawayRedisServer | None = None,
        port: int | None = None,
        cluster_bus_port: int | None = None,
    ) -> None:
        """A server, or with ``monitor`` a Sentinel watching it as master ``SENTINEL_SERVICE``.

        With ``cluster_bus_port``, a Redis Cluster node (its cluster bus on that port).
        """
        self.port = port or _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._monitor = monitor
        self._cluster_bus_port = cluster_bus_port
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the server (again) on the same port and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH")
        self._process = await asyncio.create_subprocess_exec(
            binary,
            *self._arguments(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await self._wait_until_ready()

    def _arguments(self) -> list[str]:
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self._directory)]
        if self._cluster_bus_port is not None:
            options += [
                *("--cluster-enabled", "yes", "--cluster-port", str(self._cluster_bus_port)),
                *("--cluster-config-file", str(self._directory / f"nodes-{self.port}.conf")),
            ]
        if self._monitor is None:
            return [*options, "--save", "", "--appendonly", "no"]
        config = self._directory / f"sentinel-{self.port}.conf"  # Sentinel rewrites its file
        master = f"127.0.0.1 {self._monitor.port}"
        config.write_text(f"sentinel monitor {SENTINEL_SERVICE} {master} 1\n")
        return [str(config), "--sentinel", *options]

    async def stop(self) -> None:
        """Kill the server (SIGKILL: a crash, not a clean shutdown) and reap it."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open, nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, number: signal.Signals) -> None:
        if self._process is None:
            raise RuntimeError("the server is not running")
        self._process.send_signal(number)

    async def _wait_until_ready(self) -> None:
        client = Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.2)
        try:
            await wait_for(
                client.ping,
                _STARTUP_SECONDS,
                ignoring=(redis_errors.ConnectionError, redis_errors.TimeoutError, OSError),
                what=f"redis-server answering on port {self.port}",
            )
        finally:
            await client.aclose()


@asynccontextmanager
async def throwaway_redis_server(
    *, monitor: ThrowawayRedisServer | None = None
) -> AsyncIterator[ThrowawayRedisServer]:
    """A running ``redis-server`` of our own, killed on exit; needs the binary on PATH.

    With ``monitor``, a Sentinel that knows that server as ``SENTINEL_SERVICE``.
    """
    with tempfile.TemporaryDirectory(prefix="ameli-redis-") as directory:
        server = ThrowawayRedisServer(Path(directory), monitor=monitor)
        await server.start()
        try:
            yield server
        finally:
            await server.stop()  # SIGKILL ends a paused server too


class ThrowawayRedisCluster:
    """Three ``ThrowawayRedisServer`` cluster nodes, all primaries; ``url`` names two of them."""

    def __init__(self, directory: Path) -> None:
        ports = _free_ports(2 * _CLUSTER_SIZE)  # each node: its port and its cluster bus
        self.nodes = [
            ThrowawayRedisServer(directory, port=port, cluster_bus_port=bus)
            for port, bus in zip(ports[::2], ports[1::2], strict=True)
        ]
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    async def create(self) -> None:
        """Start the nodes, give them the slots, and wait until every node says ``ok``."""
        binary = shutil.which("redis-cli")
        if binary is None:
            raise FileNotFoundError("redis-cli is not on PATH")
        for node in self.nodes:
            await node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        command = [binary, "--cluster", "create", *addresses]
        process = await asyncio.create_subprocess_exec(
            *command,
            *("--cluster-replicas", "0", "--cluster-yes"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(_STARTUP_SECONDS):
                output, _ = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if process.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {output.decode()[-2000:]}")
        await self._wait_until_ok()

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()

    async def _wait_until_ok(self) -> None:
        async with AsyncExitStack() as stack:
            clients = []
            for node in self.nodes:
                client = Redis(port=node.port, socket_timeout=1, decode_responses=True)
                stack.push_async_callback(client.aclose)
                clients.append(client)

            async def every_node_ok() -> bool:
                states = [await client.cluster("INFO") for client in clients]
                return all(state.get("cluster_state") == "ok" for state in states)

            await wait_for(every_node_ok, _STARTUP_SECONDS, what="every cluster node ok")


@asynccontextmanager
async def throwaway_redis_cluster() -> AsyncIterator[ThrowawayRedisCluster]:
    """A running Redis Cluster of our own (3 primaries), killed on exit.

    Needs ``redis-server`` (7.0 or later) and ``redis-cli`` on PATH.
    """
    with tempfile.TemporaryDirectory(prefix="ameli-redis-cluster-") as directory:
        cluster = ThrowawayRedisCluster(Path(directory))
        try:
            await cluster.create()
            yield cluster
        finally:
            await cluster.stop()


def _free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all probed at once, so none repeats)."""
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
