"""Calling applications: named keys, roles, the channels they may claim, health, reflection."""

from __future__ import annotations

import grpc
import pytest
import structlog
from ameli.auth.v1 import auth_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from sqlalchemy import select

from ameli_grpc.adapters.sql.schema import audit_events
from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import (
    ADVISOR_KEY,
    MOBILE_KEY,
    PASSWORD,
    PORTAL_KEY,
    ServiceUnderTest,
    nir,
    refused,
)
from tests.support.databases import rows
from tests.support.grpc_stubs import health_stub, reflection_stub


async def test_no_key_or_unknown_key_is_unauthenticated(service: ServiceUnderTest) -> None:
    """Without a key, or with an unknown one, every AuthService call is refused."""
    for stub in (service.stub(None), service.stub("not-a-key")):
        refusal = await refused(stub.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(41))))
        assert refusal.code == grpc.StatusCode.UNAUTHENTICATED
        assert refusal.reason == "CALLER_NOT_ALLOWED"


async def test_portal_may_not_reset_accounts(service: ServiceUnderTest) -> None:
    """A portal key calling ResetAccount gets PERMISSION_DENIED, distinct from any user outcome."""
    refusal = await refused(
        service.portal.ResetAccount(
            auth_pb2.ResetAccountRequest(nir=nir(42), advisor_id="A1", reason="test")
        )
    )
    assert refusal.code == grpc.StatusCode.PERMISSION_DENIED
    assert refusal.reason == "CALLER_NOT_ALLOWED"


async def test_advisor_may_not_log_people_in(service: ServiceUnderTest) -> None:
    """An advisor key may read lock status but not call the login methods."""
    await service.add_account(nir(43))
    refusal = await refused(
        service.advisor.CheckCredentials(
            auth_pb2.CheckCredentialsRequest(nir=nir(43), password="x")
        )
    )
    assert refusal.code == grpc.StatusCode.PERMISSION_DENIED
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(43)))
    assert not status.locked


async def test_health_and_reflection_need_no_key(service: ServiceUnderTest) -> None:
    """Health says SERVING and reflection lists the AuthService, without any key."""
    channel = service.channel()
    health = health_stub(channel)
    for name in ("", "ameli.auth.v1.AuthService"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_stub(channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = [
        service.name
        async for response in responses
        for service in response.list_services_response.service
    ]
    assert "ameli.auth.v1.AuthService" in names


async def test_reflection_can_be_turned_off(make_service: ServiceFactory) -> None:
    """With AMELI_REFLECTION=false the reflection service is not there; health still is."""
    service = await make_service(reflection=False)
    channel = service.channel()
    # No request sent: a message written after the server answered UNIMPLEMENTED can fail
    # the client's send first (INTERNAL), a race of the transport, not of the service.
    responses = reflection_stub(channel).ServerReflectionInfo(
        iter(list[reflection_pb2.ServerReflectionRequest]())
    )
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        async for _response in responses:
            pass
    assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED
    answer = await health_stub(channel).Check(health_pb2.HealthCheckRequest())
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_portal_key_may_not_claim_the_mobile_channel(service: ServiceUnderTest) -> None:
    """A portal key claiming the mobile app (password only) is refused, and nothing is counted."""
    await service.add_account(nir(44))
    for password in (PASSWORD, "faux", "faux", "faux"):
        refusal = await refused(
            service.portal.CheckCredentials(
                auth_pb2.CheckCredentialsRequest(
                    nir=nir(44), password=password, channel=auth_pb2.CHANNEL_MOBILE_APP
                )
            )
        )
        assert refusal.code == grpc.StatusCode.PERMISSION_DENIED
        assert refusal.reason == "CALLER_NOT_ALLOWED"
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(44)))
    assert (status.locked, status.password_failures) == (False, 0)
    web = await service.portal.CheckCredentials(
        auth_pb2.CheckCredentialsRequest(nir=nir(44), password=PASSWORD)
    )
    assert web.WhichOneof("result") == "code_required"


async def test_the_mobile_key_may_claim_every_channel(service: ServiceUnderTest) -> None:
    """The mobile back end's key logs in without a code on the app, and may use the web's flow."""
    await service.add_account(nir(45))
    results = [
        (
            await service.mobile.CheckCredentials(
                auth_pb2.CheckCredentialsRequest(nir=nir(45), password=PASSWORD, channel=channel)
            )
        ).WhichOneof("result")
        for channel in (
            auth_pb2.CHANNEL_MOBILE_APP,
            auth_pb2.CHANNEL_WEB,
            auth_pb2.CHANNEL_FRANCECONNECT,
        )
    ]
    assert results == ["authenticated", "code_required", "code_required"]


async def test_each_call_logs_its_caller_by_name_never_by_key(service: ServiceUnderTest) -> None:
    """The per-call log line names the calling application (a bare key gets its role's name)."""
    request = auth_pb2.GetLockStatusRequest(nir=nir(46))
    with structlog.testing.capture_logs() as logs:
        await service.portal.GetLockStatus(request)
        await service.mobile.GetLockStatus(request)
        await service.advisor.GetLockStatus(request)
        await refused(service.stub("not-a-key").GetLockStatus(request))
    callers = [line["caller"] for line in logs if line["event"] == "rpc"]
    assert callers == ["test-portal", "test-mobile", "advisor-1", "unknown"]
    for key in (PORTAL_KEY, MOBILE_KEY, ADVISOR_KEY, "not-a-key"):
        assert key not in repr(logs)


async def test_each_audit_row_names_its_caller(service: ServiceUnderTest) -> None:
    """Audit rows carry the name of the application that made the call (never its key)."""
    await service.add_account(nir(47))
    for _ in range(3):
        await refused(service.login(nir(47), password="faux"))
    await service.advisor.UnlockAccount(
        auth_pb2.UnlockAccountRequest(nir=nir(47), advisor_id="conseiller-3646", reason="appel")
    )

    assert service.container is not None
    statement = select(audit_events.c.kind, audit_events.c.caller).order_by(audit_events.c.id)
    audit = await rows(service.container.database, statement)
    assert [tuple(row) for row in audit] == [
        *[("password_failed", "test-portal")] * 3,
        ("locked_password", "test-portal"),
        ("account_unlocked", "advisor-1"),
    ]
