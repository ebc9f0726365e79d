"""Connections: aged out with a GOAWAY (AMELI_MAX_CONNECTION_AGE), gateways' keepalive pings."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import grpc
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from grpc_health.v1 import health_pb2

from ameli_grpc.bootstrap import build_container, server_options
from ameli_grpc.server.app import ServerOptions, start_server
from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import PASSWORD, PORTAL_KEY, nir, settings_for_tests
from tests.support.channels import OWN_CONNECTION
from tests.support.databases import migrated_sqlite_database
from tests.support.grpc_stubs import health_stub
from tests.support.mail import SmtpTestServer

READY = grpc.ChannelConnectivity.READY
PORTAL = (("authorization", f"Bearer {PORTAL_KEY}"),)


async def test_an_aged_connection_is_replaced_without_failing_a_call(
    make_service: ServiceFactory, smtp: SmtpTestServer
) -> None:
    """With a one-second maximum age the server sends GOAWAY: the channel leaves READY by itself,
    a call under way across the GOAWAY still gets its answer, the next call reconnects."""
    service = await make_service(max_connection_age=1.0, shutdown_grace=5.0)
    await service.add_account(nir(1))
    channel = service.channel()
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    first = await stub.CheckCredentials(
        auth_pb2.CheckCredentialsRequest(nir=nir(1), password=PASSWORD), metadata=PORTAL
    )
    assert channel.get_state() == READY
    smtp.delay = 1.5  # the email holds RequestCode past the connection's age
    slow = asyncio.ensure_future(
        stub.RequestCode(
            auth_pb2.RequestCodeRequest(login_id=first.code_required.login_id), metadata=PORTAL
        )
    )

    await asyncio.wait_for(channel.wait_for_state_change(READY), 3.0)  # the GOAWAY

    assert (await slow).masked_email  # answered on the old connection, within its grace
    smtp.delay = 0.0
    again = await stub.CheckCredentials(
        auth_pb2.CheckCredentialsRequest(nir=nir(1), password=PASSWORD), metadata=PORTAL
    )
    assert again.code_required.login_id
    assert channel.get_state() == READY


async def _still_ready_after_pings(address: str, seconds: float) -> bool:
    """A gateway's channel pinging every 200 ms with no call: still READY after ``seconds``?"""
    options = [
        ("grpc.keepalive_time_ms", 200),
        ("grpc.keepalive_timeout_ms", 1000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        *OWN_CONNECTION,
    ]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        await health_stub(channel).Check(health_pb2.HealthCheckRequest())
        try:
            await asyncio.wait_for(channel.wait_for_state_change(READY), seconds)
        except TimeoutError:
            return True
        return False  # sent away: GOAWAY too_many_pings


async def test_the_ping_policy_reaches_the_server(tmp_path: Path) -> None:
    """Clients may ping idle connections as often as the server's policy says, and no more:
    pings every 200 ms are accepted with a 100 ms policy and sent away with the default 10 s."""
    async with migrated_sqlite_database(tmp_path) as url:
        settings = settings_for_tests(database_url=url, outbox_dir=tmp_path / "outbox")
        container = await build_container(settings, migrate=False)
        default = server_options(settings, container.app.caller_keys)
        lenient = dataclasses.replace(default, min_client_ping_interval=0.1)
        assert default.min_client_ping_interval == ServerOptions.min_client_ping_interval == 10.0
        servers = [await start_server(container.app, options) for options in (lenient, default)]
        try:
            accepted, refused = await asyncio.gather(
                *(_still_ready_after_pings(f"127.0.0.1:{s.port}", 4.0) for s in servers)
            )
        finally:
            for server in servers:
                await server.stop()
            await container.aclose()
    assert accepted
    assert not refused
