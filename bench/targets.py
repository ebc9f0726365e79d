"""The targets, each in its own process: the service (``ameli-grpc serve``) and the anchors.

The service runs as a deployment runs it, configured by ``AMELI_*`` only: a temporary
SQLite file (embedded) or a temporary PostgreSQL database and a Redis key prefix
(redis_postgres), both removed at the end; the accounts are imported before it starts.
``cpu_seconds`` and ``rss_bytes`` read ``/proc`` for a process and its descendants (the
workers of ``--workers N``).
"""

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
from pathlib import Path
from typing import IO, Any

import grpc
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from redis.asyncio import Redis

from ameli_grpc.accounts_import import AccountRow
from ameli_grpc.bootstrap import import_accounts
from ameli_grpc.config import Settings
from ameli_grpc.domain.model import Affiliation
from bench.common import MOBILE_KEY, PASSWORD, PORTAL_KEY, bearer, email, nir
from tests.support.databases import temporary_postgres_database
from tests.support.mail import free_port
from tests.support.redis import delete_prefix

REPO_ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("AMELI_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Target:
    name: str
    address: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def cpu_seconds(self) -> float:
        """utime + stime of the process and its descendants, in seconds."""
        return sum(_stat(pid)[11] + _stat(pid)[12] for pid in _tree(self.process.pid)) / CLOCK_TICKS

    def rss_bytes(self) -> int:
        return sum(_stat(pid)[21] * PAGE_BYTES for pid in _tree(self.process.pid))

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]


def _stat(pid: int) -> list[int]:
    """The numeric fields of /proc/<pid>/stat after the command name (state first, as 0)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # a worker that just ended
        return [0] * 50
    fields = text.rpartition(")")[2].split()
    return [0, *(int(value) for value in fields[1:])]


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            children.setdefault(_stat(int(entry.name))[1], []).append(int(entry.name))
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack += children.get(pid, [])
    return pids


def _environment(settings: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMELI_")}
    env.update({f"AMELI_{key.upper()}": str(value) for key, value in settings.items()})
    paths = [str(REPO_ROOT), str(REPO_ROOT / "clients" / "python"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    return env


@asynccontextmanager
async def started(
    name: str, command: list[str], settings: dict[str, Any] | None = None
) -> AsyncIterator[Target]:
    """``command`` (a Python module) listening on a free port; SIGTERM on exit."""
    address = f"127.0.0.1:{free_port()}"
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below; a pipe could fill and block
    arguments = [sys.executable, "-m", *command]
    arguments += ["--listen", address]
    process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own modules; starting is instant
        arguments, env=_environment(settings or {}), stdout=log, stderr=subprocess.STDOUT
    )
    target = Target(name, address, process, log)
    try:
        await _wait_until_answering(target)
        yield target
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), 15)
        except TimeoutError:
            process.kill()
        log.close()


async def _wait_until_answering(target: Target) -> None:
    """Until a GetLockStatus is answered (any answer but UNAVAILABLE), 60 s at most."""
    async with grpc.aio.insecure_channel(target.address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        request = auth_pb2.GetLockStatusRequest(nir=nir(0))
        for _ in range(600):
            if target.process.poll() is not None:
                raise RuntimeError(f"{target.name} exited:\n{target.output()}")
            try:
                await stub.GetLockStatus(request, metadata=bearer(PORTAL_KEY), timeout=1)
                return
            except grpc.aio.AioRpcError as error:
                if error.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{target.name} did not answer within 60 s:\n{target.output()}")


def anchor(kind: str) -> Any:
    return started(f"anchor {kind}", ["bench.anchors", kind, "--redis-url", REDIS_URL])


@asynccontextmanager
async def storage(backend: str, directory: Path) -> AsyncIterator[dict[str, Any]]:
    """The service's storage settings on temporary data, removed on exit."""
    if backend == "embedded":
        yield {"database_url": f"sqlite+aiosqlite:///{directory / 'ameli.db'}"}
        return
    prefix = f"ameli-bench-{secrets.token_hex(6)}"
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
        async with temporary_postgres_database() as url:
            yield {"database_url": url, "redis_url": REDIS_URL, "redis_prefix": prefix}
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()


def service_settings(
    stored: dict[str, Any],
    directory: Path,
    smtp_port: int,
    max_pending: int,
    previous_key: bool = False,
    max_wait: float = 0.0,
) -> dict[str, Any]:
    """``AMELI_*`` of the service: production defaults but for what a local run needs.

    ``max_pending`` and ``max_wait`` (``AMELI_MAX_PENDING_HASHES``, ``AMELI_MAX_HASH_WAIT``):
    the shedding, out of the way of the load unless a flood measures it.
    ``previous_key``: a key rotation under way (each NIR looked up under both keys).
    """
    previous = {"previous_secret_keys": secrets.token_hex(32)} if previous_key else {}
    return {
        **previous,
        **stored,
        "secret_key": secrets.token_hex(32),
        "portal_api_keys": f"bench-portal:{PORTAL_KEY}",
        "mobile_api_keys": f"bench-mobile:{MOBILE_KEY}",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "outbox_dir": directory / "outbox",
        "allow_outbox": "true",
        "log_level": "warning",  # no line per call
        "drain_delay": 0,
        "shutdown_grace": 1,
        "max_pending_hashes": max_pending,  # throughput, not shedding (unless a flood asks)
        "max_hash_wait": max_wait,
    }


async def load(settings: dict[str, Any], accounts: int) -> None:
    """Migrate, then import ``accounts`` accounts (serials 0 to accounts - 1)."""
    rows = [
        AccountRow(nir(i), PASSWORD, email(i), True, None, Affiliation.AFFILIATED)
        for i in range(accounts)
    ]
    await import_accounts(Settings(**settings), rows)


def service(settings: dict[str, Any], workers: int = 1) -> Any:
    command = ["ameli_grpc.cli", "serve", "--workers", str(workers)]
    return started(f"service ({workers} process{'es' if workers > 1 else ''})", command, settings)
