"""Fail closed, recover by itself: a dependency outage never lets anyone in."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from ameli.auth.v1 import auth_pb2
from grpc_health.v1 import health_pb2
from sqlalchemy.engine import make_url

from ameli_grpc.adapters.sql.database import Database
from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import ServiceUnderTest, nir, refused, running_service
from tests.support.databases import clear_tables, migrated_sqlite_database
from tests.support.grpc_stubs import health_stub
from tests.support.http_gateway import gateway_server
from tests.support.mail import SmtpTestServer
from tests.support.proxy import tcp_proxy
from tests.support.redis import throwaway_redis_server
from tests.support.rfi import rfi_server
from tests.support.waiting import wait_for

# Under CI the binary must be there: the test then runs (and fails without it).
needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None and os.environ.get("CI") != "true",
    reason="redis-server is not installed",
)


def named_dependencies(logs: Sequence[Mapping[str, Any]]) -> set[str]:
    """The dependencies named by the warnings of an outage (``dependency=``)."""
    warnings = [line for line in logs if line["log_level"] == "warning"]
    assert warnings, "the outage is logged"
    return {line.get("dependency", "?") for line in warnings}


async def health_status(service: ServiceUnderTest) -> int:
    stub = health_stub(service.channel())
    answer = await stub.Check(health_pb2.HealthCheckRequest(service="ameli.auth.v1.AuthService"))
    return int(answer.status)


async def wait_for_health(service: ServiceUnderTest, expected: int) -> None:
    async def reached() -> bool:
        return await health_status(service) == expected

    await wait_for(reached, what=f"health {expected}")


@needs_redis_server
async def test_redis_outage_answers_unavailable_then_recovers(
    smtp: SmtpTestServer, tmp_path: Path
) -> None:
    """Redis killed: UNAVAILABLE quickly and NOT_SERVING; restarted: service resumes alone."""
    async with (
        throwaway_redis_server() as redis_server,
        migrated_sqlite_database(tmp_path) as database_url,
        running_service(
            smtp,
            tmp_path,
            database_url=database_url,
            redis_url=redis_server.url,
            redis_timeout=0.5,
        ) as service,
    ):
        await service.add_account(nir(91))
        login_id = (await service.login(nir(91))).code_required.login_id
        code = await service.request_code(login_id)

        await redis_server.stop()
        started = time.monotonic()
        with structlog.testing.capture_logs() as logs:
            refusal = await refused(
                service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=code))
            )
        assert named_dependencies(logs) == {"redis"}
        assert refusal.code == grpc.StatusCode.UNAVAILABLE
        assert refusal.reason == "SERVICE_UNAVAILABLE"
        assert refusal.message == (
            "Le service est momentanément indisponible. Merci de réessayer dans quelques instants."
        )
        assert time.monotonic() - started < 3
        assert (await refused(service.login(nir(91)))).reason == "SERVICE_UNAVAILABLE"
        await wait_for_health(service, health_pb2.HealthCheckResponse.NOT_SERVING)

        await redis_server.start()
        await wait_for_health(service, health_pb2.HealthCheckResponse.SERVING)
        response = await service.login(nir(91))
        assert response.WhichOneof("result") == "code_required"


async def test_smtp_refusal_neither_counts_nor_leaves_a_code(
    service: ServiceUnderTest,
) -> None:
    """A refused email gives UNAVAILABLE, is not counted in the quota and leaves no usable code."""
    await service.add_account(nir(92))
    login_id = (await service.login(nir(92))).code_required.login_id
    service.smtp.refusing = True
    with structlog.testing.capture_logs() as logs:
        refusal = await refused(
            service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
        )
    assert named_dependencies(logs) == {"smtp"}
    assert refusal.code == grpc.StatusCode.UNAVAILABLE
    assert refusal.reason == "SERVICE_UNAVAILABLE"
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(92)))
    assert status.codes_sent_in_window == 0
    no_code = await refused(
        service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code="123456"))
    )
    assert no_code.reason == "CODE_NOT_REQUESTED"

    service.smtp.refusing = False
    sent = await service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
    assert sent.codes_remaining == 4


async def test_rfi_that_hangs_answers_unavailable_then_recovers(
    make_service: ServiceFactory,
) -> None:
    """An RFI that never answers gives UNAVAILABLE (never a login, never NOT_COVERED)."""
    async with rfi_server({nir(93, with_key=False): (200, '{"status": "affiliated"}')}) as rfi:
        service = await make_service(rfi_url=rfi.url, rfi_timeout=0.5, rfi_cache_ttl=0)
        await service.add_account(nir(93))
        response = await service.login(nir(93), channel=auth_pb2.CHANNEL_MOBILE_APP)
        assert response.WhichOneof("result") == "authenticated"

        rfi.hang = True
        started = time.monotonic()
        with structlog.testing.capture_logs() as logs:
            refusal = await refused(service.login(nir(93), channel=auth_pb2.CHANNEL_MOBILE_APP))
        assert named_dependencies(logs) == {"rfi"}
        assert refusal.code == grpc.StatusCode.UNAVAILABLE
        assert refusal.reason == "SERVICE_UNAVAILABLE"
        assert time.monotonic() - started < 2

        rfi.hang = False
        response = await service.login(nir(93), channel=auth_pb2.CHANNEL_MOBILE_APP)
        assert response.WhichOneof("result") == "authenticated"


async def test_rfi_unknown_nir_is_not_covered(make_service: ServiceFactory) -> None:
    """A NIR the RFI does not know (404) is refused as not covered (case 7)."""
    async with rfi_server({}) as rfi:
        service = await make_service(rfi_url=rfi.url, rfi_timeout=0.5)
        await service.add_account(nir(94))
        assert (await refused(service.login(nir(94)))).reason == "NOT_COVERED"


@pytest.mark.postgres
async def test_postgres_outage_answers_unavailable_then_recovers(
    postgres_url: str, smtp: SmtpTestServer, tmp_path: Path
) -> None:
    """PostgreSQL cut off: UNAVAILABLE quickly and NOT_SERVING; back: service resumes alone."""
    url = make_url(postgres_url)
    async with tcp_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        database = Database(proxied)
        await clear_tables(database)
        await database.dispose()
        async with running_service(
            smtp, tmp_path, database_url=proxied, database_timeout=1.0
        ) as service:
            await service.add_account(nir(95))
            assert (await service.login(nir(95))).WhichOneof("result") == "code_required"

            await proxy.cut()
            started = time.monotonic()
            with structlog.testing.capture_logs() as logs:
                refusal = await refused(service.login(nir(95)))
            assert named_dependencies(logs) == {"database"}
            assert refusal.code == grpc.StatusCode.UNAVAILABLE
            assert refusal.reason == "SERVICE_UNAVAILABLE"
            assert time.monotonic() - started < 3
            await wait_for_health(service, health_pb2.HealthCheckResponse.NOT_SERVING)
            status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(95)))
            assert status.password_failures == 0  # the outage counted nothing against the person

            await proxy.restore()
            await wait_for_health(service, health_pb2.HealthCheckResponse.SERVING)
            assert (await service.login(nir(95))).WhichOneof("result") == "code_required"


async def test_an_sms_gateway_outage_is_logged_by_name(make_service: ServiceFactory) -> None:
    """A gateway that answers 503: the reset goes through without its SMS, logged as `sms`."""
    async with gateway_server(503) as gateway:
        service = await make_service(sms_url=gateway.url, sms_timeout=1)
        await service.add_account(nir(96), mobile_phone="06 12 34 56 78")
        with structlog.testing.capture_logs() as logs:
            done = await service.advisor.ResetAccount(
                auth_pb2.ResetAccountRequest(
                    nir=nir(96), advisor_id="A", reason="r", send_provisional_code=True
                )
            )
    assert not done.provisional_code_sent
    assert named_dependencies(logs) == {"sms"}
