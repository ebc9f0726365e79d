"""Several server processes on one Redis and one PostgreSQL: every limit holds across them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import grpc
import pytest
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc

from ameli_grpc.accounts_import import AccountRow, load_accounts
from ameli_grpc.adapters.argon2_hasher import Argon2PasswordHasher
from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.repositories import SqlAccountRepository, SqlIdentityRegistry
from ameli_grpc.domain.model import Affiliation
from tests.e2e.harness import EMAIL, PASSWORD, PORTAL_KEY, nir, refused
from tests.e2e.replicas import server_process, shared_backend
from tests.support.databases import clear_tables
from tests.support.mail import SmtpTestServer, extract_code
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
METADATA = (("authorization", f"Bearer {PORTAL_KEY}"),)


@pytest.fixture
async def shared_settings(
    postgres_url: str, redis_url: str, smtp: SmtpTestServer
) -> AsyncIterator[dict[str, Any]]:
    database = Database(postgres_url)
    await clear_tables(database)
    hasher = Argon2PasswordHasher()
    rows = [
        AccountRow(nir(n), PASSWORD, EMAIL, True, None, Affiliation.AFFILIATED) for n in (1, 2, 3)
    ]
    await load_accounts(rows, SqlAccountRepository(database), SqlIdentityRegistry(database), hasher)
    hasher.close()
    await database.dispose()
    async with shared_backend(
        postgres_url,
        redis_url,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        portal_api_keys=PORTAL_KEY,
        advisor_api_keys="advisor-key",
        allow_outbox="true",  # the advisor's SMS, which these tests do not send
    ) as settings:
        yield settings


@pytest.fixture
async def two_servers(
    shared_settings: dict[str, Any],
) -> AsyncIterator[list[auth_pb2_grpc.AuthServiceAsyncStub]]:
    """Two server processes on the same Redis and PostgreSQL, started side by side."""
    async with servers_side_by_side(shared_settings) as stubs:
        yield stubs


@asynccontextmanager
async def servers_side_by_side(
    settings: dict[str, Any],
) -> AsyncIterator[list[auth_pb2_grpc.AuthServiceAsyncStub]]:
    """Two server processes of ``settings``, started side by side; a stub of each."""
    async with AsyncExitStack() as stack:
        async with asyncio.TaskGroup() as starting:  # a failed start cancels the other
            tasks = [
                starting.create_task(stack.enter_async_context(server_process(settings)))
                for _ in range(2)
            ]
        channels = [grpc.aio.insecure_channel(task.result().address) for task in tasks]
        yield [auth_pb2_grpc.AuthServiceStub(channel) for channel in channels]
        for channel in channels:
            await channel.close()


async def start_login(stub: auth_pb2_grpc.AuthServiceAsyncStub, nir_value: str) -> str:
    response = await stub.CheckCredentials(
        auth_pb2.CheckCredentialsRequest(nir=nir_value, password=PASSWORD), metadata=METADATA
    )
    return str(response.code_required.login_id)


async def send_code(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, login_id: str, smtp: SmtpTestServer
) -> str:
    """RequestCode, and the code of the email it sent (not of an earlier one)."""
    before = len(smtp.deliveries)
    await stub.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id), metadata=METADATA)
    return extract_code((await smtp.wait_for_messages(before + 1))[before])


def verify(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, login_id: str, code: str
) -> grpc.aio.UnaryUnaryCall[auth_pb2.VerifyCodeRequest, auth_pb2.VerifyCodeResponse]:
    return stub.VerifyCode(
        auth_pb2.VerifyCodeRequest(login_id=login_id, code=code), metadata=METADATA
    )


async def test_wrong_codes_alternated_between_servers_lock_at_three(
    two_servers: list[auth_pb2_grpc.AuthServiceAsyncStub], smtp: SmtpTestServer
) -> None:
    """Wrong codes sent to one server then the other lock the NIR at exactly the third."""
    first, second = two_servers
    login_id = await start_login(first, nir(1))
    code = await send_code(second, login_id, smtp)
    wrong = "000000" if code != "000000" else "111111"
    reasons = [
        (await refused(verify(stub, login_id, wrong))).reason for stub in (first, second, first)
    ]
    assert reasons == ["INVALID_CODE", "INVALID_CODE", "CODE_ATTEMPTS_LOCKED"]
    assert (await refused(verify(second, login_id, code))).reason == "CODE_ATTEMPTS_LOCKED"


async def test_sixty_parallel_wrong_codes_over_two_servers(
    two_servers: list[auth_pb2_grpc.AuthServiceAsyncStub], smtp: SmtpTestServer
) -> None:
    """60 wrong codes at once, spread over both servers: exactly 3 are evaluated; the others
    meet the lock, or are told to retry while the three are in flight."""
    login_id = await start_login(two_servers[0], nir(2))
    code = await send_code(two_servers[0], login_id, smtp)
    wrong = "000000" if code != "000000" else "111111"
    refusals = await asyncio.gather(
        *(refused(verify(two_servers[i % 2], login_id, wrong)) for i in range(60))
    )
    reasons = [refusal.reason for refusal in refusals]
    assert reasons.count("INVALID_CODE") == 2  # the third evaluated one set the lock
    assert reasons.count("CODE_ATTEMPTS_LOCKED") >= 1
    assert reasons.count("CODE_ATTEMPTS_LOCKED") + reasons.count("ATTEMPT_IN_PROGRESS") == 58
    status = await two_servers[1].GetLockStatus(
        auth_pb2.GetLockStatusRequest(nir=nir(2)), metadata=METADATA
    )
    assert status.code_failures == 3
    assert status.locked


async def test_sixty_parallel_code_requests_over_two_servers_send_five(
    two_servers: list[auth_pb2_grpc.AuthServiceAsyncStub], smtp: SmtpTestServer
) -> None:
    """60 RequestCode at once, spread over both servers: exactly 5 emails are sent."""
    login_id = await start_login(two_servers[1], nir(3))

    async def request(stub: auth_pb2_grpc.AuthServiceAsyncStub) -> grpc.StatusCode:
        try:
            await stub.RequestCode(
                auth_pb2.RequestCodeRequest(login_id=login_id), metadata=METADATA
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*(request(two_servers[i % 2]) for i in range(60)))
    assert codes.count(grpc.StatusCode.OK) == 5
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 55
    # RequestCode answers after the SMTP server accepted the email: all are counted.
    assert len(smtp.deliveries) == 5


async def test_workers_serve_one_port_and_drain_on_sigterm(
    shared_settings: dict[str, Any], smtp: SmtpTestServer
) -> None:
    """`serve --workers 2` answers on one port; SIGTERM lets a call under way finish."""
    async with (
        server_process(shared_settings, workers=2) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        login_id = await start_login(stub, nir(1))
        smtp.delay = 1.0
        slow = asyncio.ensure_future(
            stub.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id), metadata=METADATA)
        )
        await wait_for(lambda: smtp.receiving == 1, what="the email under way")
        server.terminate()
        sent = await slow
        assert sent.masked_email == "t***@t***.com"
        assert await server.wait() == 0
        output = server.output()
        assert output.count('"event": "serving"') == 2  # two worker processes on the port
        assert output.count('"event": "stopped"') == 2  # and both drained and stopped


async def test_workers_refuse_the_in_process_store(shared_settings: dict[str, Any]) -> None:
    """`--workers 2` without Redis refuses to start with a clear message."""
    settings = {**shared_settings, "redis_url": ""}
    with pytest.raises(AssertionError, match=r"exited with 2.*AMELI_REDIS_URL"):
        async with server_process(settings, workers=2):
            pass


async def test_two_servers_share_the_count_of_a_client_address(
    shared_settings: dict[str, Any],
) -> None:
    """Wrong passwords from one address, alternated between two servers over four NIRs,
    throttle that address on both at the limit; another address is served."""
    settings = {**shared_settings, "client_failure_limit": 4}
    sprayer = auth_pb2.ClientInfo(ip="2001:db8:7:7::1")
    async with servers_side_by_side(settings) as stubs:

        async def login(
            stub: auth_pb2_grpc.AuthServiceAsyncStub, nir_value: str, password: str, ip: str
        ) -> auth_pb2.CheckCredentialsResponse:
            request = auth_pb2.CheckCredentialsRequest(
                nir=nir_value, password=password, client=auth_pb2.ClientInfo(ip=ip)
            )
            return await stub.CheckCredentials(request, metadata=METADATA)

        reasons = [
            (await refused(login(stubs[n % 2], nir(20 + n), "faux", f"2001:db8:7:7::{n}"))).reason
            for n in range(4)
        ]
        throttled = [
            (await refused(login(stub, nir(1), PASSWORD, sprayer.ip))).reason for stub in stubs
        ]
        served = await login(stubs[1], nir(1), PASSWORD, "2001:db8:7:8::1")

    assert reasons == ["INVALID_CREDENTIALS"] * 4  # four addresses of one /64: one client
    assert throttled == ["CLIENT_THROTTLED"] * 2
    assert served.WhichOneof("result") == "code_required"


async def test_two_servers_share_the_ceiling_of_a_nir(shared_settings: dict[str, Any]) -> None:
    """Wrong passwords alternated between two servers reach one ceiling: suspended on both."""
    settings = {**shared_settings, "max_consecutive_failures": 3, "max_password_failures": 10}
    async with servers_side_by_side(settings) as stubs:
        reasons = [
            (
                await refused(
                    stubs[n % 2].CheckCredentials(
                        auth_pb2.CheckCredentialsRequest(nir=nir(2), password="faux"),
                        metadata=METADATA,
                    )
                )
            ).reason
            for n in range(3)
        ]
        after = [
            (
                await refused(
                    stub.CheckCredentials(
                        auth_pb2.CheckCredentialsRequest(nir=nir(2), password=PASSWORD),
                        metadata=METADATA,
                    )
                )
            ).reason
            for stub in stubs
        ]

    assert reasons == ["INVALID_CREDENTIALS", "INVALID_CREDENTIALS", "ACCOUNT_SUSPENDED"]
    assert after == ["ACCOUNT_SUSPENDED"] * 2
