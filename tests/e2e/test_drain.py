"""SIGTERM drains a real ``ameli-grpc serve``: health NOT_SERVING at once, calls still served for
the drain delay, then none taken, and every call taken gets its real answer — never CANCELLED."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as redis
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from ameli_grpc.accounts_import import AccountRow, load_accounts
from ameli_grpc.adapters.argon2_hasher import Argon2PasswordHasher
from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.repositories import SqlAccountRepository, SqlIdentityRegistry
from ameli_grpc.domain.model import Affiliation
from tests.e2e.harness import ADVISOR_KEY, EMAIL, PASSWORD, PORTAL_KEY, nir
from tests.e2e.replicas import ServerProcess, server_process
from tests.support.channels import OWN_CONNECTION
from tests.support.databases import clear_tables, migrated_sqlite_database
from tests.support.grpc_stubs import health_stub
from tests.support.mail import SmtpTestServer
from tests.support.waiting import wait_for

METADATA = (("authorization", f"Bearer {PORTAL_KEY}"),)
ADVISOR = (("authorization", f"Bearer {ADVISOR_KEY}"),)
IN_FLIGHT = 80  # logins under way when SIGTERM comes
DURING_DELAY = 10  # logins sent once health said NOT_SERVING
BURST = 40  # lock status reads sent as the drain delay ends
DRAIN_DELAY = 1.0
SERVICE_NAMES = ("", "ameli.auth.v1.AuthService")


class _OneHash:
    """Hands every imported account the same real argon2 hash: one hash computed, not 90."""

    def __init__(self, password_hash: str) -> None:
        self._hash = password_hash

    async def hash(self, _password: str) -> str:
        return self._hash


async def _load_accounts(database_url: str) -> None:
    database = Database(database_url)
    await clear_tables(database)
    hasher = Argon2PasswordHasher(workers=1)
    one_hash = _OneHash(await hasher.hash(PASSWORD))
    hasher.close()
    rows = (
        AccountRow(nir(n), PASSWORD, EMAIL, True, None, Affiliation.AFFILIATED)
        for n in range(1, IN_FLIGHT + DURING_DELAY + 1)
    )
    accounts, registry = SqlAccountRepository(database), SqlIdentityRegistry(database)
    await load_accounts(rows, accounts, registry, one_hash)  # type: ignore[arg-type]
    await database.dispose()


def _server_settings(smtp: SmtpTestServer, **storage: Any) -> dict[str, Any]:
    return {
        **storage,
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "secret_key": secrets.token_hex(32),
        "portal_api_keys": PORTAL_KEY,
        "advisor_api_keys": ADVISOR_KEY,
        "log_format": "json",
        "drain_delay": DRAIN_DELAY,
        "shutdown_grace": 15,
        # One argon2 thread and room for every login: ~90 verifications queue up, so calls
        # are still under way when the drain delay ends.
        "hash_workers": 1,
        "max_pending_hashes": 200,
        "max_hash_wait": 0,
        # Every call in the server's own queue, none held by the client: the stop must answer
        # them all (with the bound, a connection's calls beyond it would wait on its side).
        "max_concurrent_streams": 0,
    }


@pytest.fixture
async def embedded_settings(smtp: SmtpTestServer, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with migrated_sqlite_database(tmp_path) as url:
        await _load_accounts(url)
        yield _server_settings(smtp, database_url=url)


@pytest.fixture
async def shared_settings(
    postgres_url: str, redis_url: str, smtp: SmtpTestServer
) -> AsyncIterator[dict[str, Any]]:
    await _load_accounts(postgres_url)
    prefix = f"ameli-test-{secrets.token_hex(6)}"
    yield _server_settings(
        smtp, database_url=postgres_url, redis_url=redis_url, redis_prefix=prefix
    )
    client = redis.Redis.from_url(redis_url)
    async for key in client.scan_iter(match=f"{prefix}:*", count=500):
        await client.delete(key)
    await client.aclose()


async def _outcome(call: Any) -> str:
    """OK, the reason of a refusal (rich status), or the bare code of a call that got neither."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        for packed in status.details if status else ():
            info = error_details_pb2.ErrorInfo()
            if packed.Unpack(info):
                return str(info.reason)
        return str(error.code().name)
    return "OK"


async def _health_not_serving(address: str) -> bool:
    """Whether a new connection is told NOT_SERVING, for the whole server and for AuthService."""
    async with grpc.aio.insecure_channel(address, options=OWN_CONNECTION) as channel:
        health = health_stub(channel)
        answers = [
            await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=2)
            for name in SERVICE_NAMES
        ]
    return all(a.status == health_pb2.HealthCheckResponse.NOT_SERVING for a in answers)


def _events(server: ServerProcess) -> list[dict[str, Any]]:
    lines = server.output().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


async def _logins_through_sigterm(server: ServerProcess, connections: int) -> None:
    """80 logins under way, SIGTERM; 10 more once health says NOT_SERVING; a burst of lock status
    reads as the drain delay ends; one login after it.

    Every one is answered OK or refused normally (rich status), none is CANCELLED; some sent
    during the drain delay are served; the one sent after it is not taken.
    """
    loop = asyncio.get_running_loop()
    channels = [
        grpc.aio.insecure_channel(server.address, options=OWN_CONNECTION)
        for _ in range(connections)
    ]
    stubs = [auth_pb2_grpc.AuthServiceStub(channel) for channel in channels]

    def login(n: int) -> asyncio.Future[str]:
        request = auth_pb2.CheckCredentialsRequest(nir=nir(n), password=PASSWORD)
        call = stubs[n % connections].CheckCredentials(request, metadata=METADATA, timeout=30)
        return asyncio.ensure_future(_outcome(call))

    def lock_status(n: int) -> asyncio.Future[str]:
        request = auth_pb2.GetLockStatusRequest(nir=nir(n))
        call = stubs[n % connections].GetLockStatus(request, metadata=ADVISOR, timeout=30)
        return asyncio.ensure_future(_outcome(call))

    try:
        in_flight = [login(n) for n in range(1, IN_FLIGHT + 1)]
        await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)  # at work on them
        server.terminate()
        await wait_for(
            lambda: _health_not_serving(server.address),
            what="health NOT_SERVING",
            ignoring=(grpc.aio.AioRpcError,),
        )
        told_not_serving = loop.time()
        during_delay = [login(n) for n in range(IN_FLIGHT + 1, IN_FLIGHT + DURING_DELAY + 1)]
        # Around the end of the delay: calls that reach the process just before or as it stops
        # taking calls, many still waiting in gRPC's queue — the ones a bare stop cancels.
        await asyncio.sleep(told_not_serving + DRAIN_DELAY - 0.1 - loop.time())
        burst = [lock_status(n) for n in range(1, BURST + 1)]
        await asyncio.sleep(told_not_serving + DRAIN_DELAY + 0.3 - loop.time())
        after_delay = await _outcome(
            stubs[0].CheckCredentials(
                auth_pb2.CheckCredentialsRequest(nir=nir(1), password=PASSWORD),
                metadata=METADATA,
                timeout=10,
            )
        )
        logins = await asyncio.gather(*in_flight, *during_delay)
        reads = await asyncio.gather(*burst)
    finally:
        for channel in channels:
            await channel.close()

    assert "CANCELLED" not in [*logins, *reads, after_delay]
    # Taken, hence answered; or refused before being taken (the gate), a normal refusal.
    assert set(logins) | set(reads) <= {"OK", "SERVICE_UNAVAILABLE"}, (logins, reads)
    assert logins[IN_FLIGHT:].count("OK") >= 1  # served while health said NOT_SERVING
    # Not taken: refused by the closed gate, or the server has gone (a transport failure).
    assert after_delay in {"SERVICE_UNAVAILABLE", "UNAVAILABLE"}
    assert await server.wait() == 0


def _assert_drained_in_order(server: ServerProcess, processes: int) -> list[dict[str, Any]]:
    events = _events(server)
    names = [event["event"] for event in events]
    for name in ("draining", "stopping", "stopped"):
        assert names.count(name) == processes, names
    assert max(i for i, n in enumerate(names) if n == "draining") < min(
        i for i, n in enumerate(names) if n == "stopped"
    )
    # The gate closed while logins were still under way: the stop waited for them.
    assert any(e["event"] == "stopping" and e["calls_under_way"] > 0 for e in events)
    return events


async def test_sigterm_with_logins_in_flight_cancels_none(
    embedded_settings: dict[str, Any],
) -> None:
    """SIGTERM with 80 password logins in flight: health NOT_SERVING at once, logins sent during
    the drain delay still served, none CANCELLED, the one after the delay not taken."""
    async with server_process(embedded_settings) as server:
        await _logins_through_sigterm(server, connections=1)
        _assert_drained_in_order(server, processes=1)


@pytest.mark.redis
@pytest.mark.postgres
async def test_sigterm_to_two_workers_with_logins_in_flight_cancels_none(
    shared_settings: dict[str, Any],
) -> None:
    """The same with `--workers 2`: the parent passes SIGTERM on, both workers drain without
    cancelling a call, and neither is restarted."""
    async with server_process(shared_settings, workers=2) as server:
        await wait_for(
            lambda: server.output().count('"event": "serving"') == 2, 20.0, what="both workers"
        )
        await _logins_through_sigterm(server, connections=8)
        events = _assert_drained_in_order(server, processes=2)
        assert "worker_restarted" not in [event["event"] for event in events]
