"""One ``/metrics`` for `serve --workers N`: the parent serves what every worker counted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc

from ameli_grpc.adapters.sql.database import Database
from tests.e2e.harness import PORTAL_KEY, nir
from tests.e2e.metrics_scrape import scrape
from tests.e2e.replicas import server_process, shared_backend
from tests.support.channels import OWN_CONNECTION
from tests.support.databases import clear_tables
from tests.support.mail import free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
METADATA = (("authorization", f"Bearer {PORTAL_KEY}"),)
CALLS = 24


@pytest.fixture
async def settings(postgres_url: str, redis_url: str) -> AsyncIterator[dict[str, Any]]:
    database = Database(postgres_url)
    await clear_tables(database)
    await database.dispose()
    metrics = f"127.0.0.1:{free_port()}"
    async with shared_backend(
        postgres_url, redis_url, portal_api_keys=PORTAL_KEY, metrics_listen=metrics
    ) as settings:
        yield settings


@pytest.mark.parametrize("workers", [1, 2])
async def test_one_scrape_counts_the_calls_of_every_worker(
    settings: dict[str, Any], workers: int
) -> None:
    """Calls over as many connections, spread by the kernel over the workers: the one
    endpoint counts every one of them, and the gauges of every worker are there."""
    port = int(settings["metrics_listen"].rsplit(":", 1)[1])
    async with server_process(settings, workers=workers) as server:
        await wait_for(
            lambda: server.output().count('"event": "serving"') == workers,
            30.0,
            what="every worker serving",
        )
        for _ in range(CALLS):  # a connection each (no shared pool): the kernel spreads them
            async with grpc.aio.insecure_channel(server.address, options=OWN_CONNECTION) as channel:
                await auth_pb2_grpc.AuthServiceStub(channel).GetLockStatus(
                    auth_pb2.GetLockStatusRequest(nir=nir(1)), metadata=METADATA
                )
        scraped = await scrape(port)
        rpc_lines = [
            line for line in map(json.loads, server.output().splitlines()) if line["event"] == "rpc"
        ]

    assert len({line["pid"] for line in rpc_lines}) == workers  # every worker answered some
    assert scraped.rpc("grpc_server_started_total", "GetLockStatus") == CALLS
    assert scraped.rpc("grpc_server_handled_total", "GetLockStatus", grpc_code="OK") == CALLS
    assert scraped.rpc("grpc_server_handling_seconds_count", "GetLockStatus") == CALLS
    assert scraped.value("ameli_dependency_up", dependency="database") == 1
    assert scraped.value("ameli_dependency_up", dependency="redis") == 1
    assert scraped.value("ameli_hash_queue_depth") == 0
