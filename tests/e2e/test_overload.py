"""SPEC §7.5: overload is refused fast, not queued; the caller key comes before the request."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import structlog
from ameli.auth.channel import aio_channel
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from google.rpc import error_details_pb2

from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import (
    ADVISOR_KEY,
    PASSWORD,
    PORTAL_KEY,
    Refusal,
    ServiceUnderTest,
    nir,
    refused,
)
from tests.support.channels import OWN_CONNECTION
from tests.support.mail import free_port

CHECK_CREDENTIALS = "/ameli.auth.v1.AuthService/CheckCredentials"
UNAVAILABLE_TEXT = (
    "Le service est momentanément indisponible. Merci de réessayer dans quelques instants."
)
# Not a CheckCredentialsRequest: field number 0 and a varint that never ends.
GARBAGE = b"\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"


@pytest.mark.parametrize(
    "shedding",
    [{"max_pending_hashes": 2}, {"max_pending_hashes": 1000, "max_hash_wait": 0.001}],
    ids=["a queue of 2", "a wait of 1 ms"],
)
async def test_a_burst_beyond_the_hash_queue_is_shed_before_anything_is_counted(
    make_service: ServiceFactory, shedding: dict[str, float]
) -> None:
    """60 wrong passwords at once behind a queue of 2, or a wait bound of 1 ms (the count far
    off): some are shed UNAVAILABLE with RetryInfo 1 s and count nothing; every failure
    counted is an answered INVALID_CREDENTIALS."""
    service = await make_service(**shedding)
    nirs = [nir(900 + i) for i in range(60)]
    for known in nirs[:6]:  # known and unknown NIRs are admitted alike
        await service.add_account(known)
    await refused(service.login(nir(899), password="faux"))  # one verify's duration measured

    refusals = await asyncio.gather(*(refused(service.login(n, password="faux")) for n in nirs))

    shed = [r for r in refusals if r.reason == "SERVICE_UNAVAILABLE"]
    answered = [r for r in refusals if r.reason == "INVALID_CREDENTIALS"]
    assert shed, "no request was shed"
    assert answered, "no request was admitted"
    assert len(shed) + len(answered) == len(nirs)
    for refusal in shed:
        assert refusal.code == grpc.StatusCode.UNAVAILABLE
        assert refusal.message == UNAVAILABLE_TEXT
        assert refusal.detail(error_details_pb2.RetryInfo).retry_delay.ToSeconds() == 1
    assert {r.code for r in answered} == {grpc.StatusCode.UNAUTHENTICATED}
    statuses = await asyncio.gather(
        *(service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=n)) for n in nirs)
    )
    assert sum(status.password_failures for status in statuses) == len(answered)
    assert not any(status.locked for status in statuses)
    response = await service.login(nirs[0])
    assert response.WhichOneof("result") == "code_required"


async def test_calls_beyond_the_concurrency_bound_are_refused_by_grpc(
    make_service: ServiceFactory,
) -> None:
    """With AMELI_MAX_CONCURRENT_RPCS=2, a burst of password checks meets RESOURCE_EXHAUSTED."""
    service = await make_service(max_concurrent_rpcs=2)

    async def code() -> grpc.StatusCode:
        try:
            await service.login(nir(950), password="faux")
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*(code() for _ in range(20)))

    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert set(codes) <= {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,  # wrong password
        grpc.StatusCode.FAILED_PRECONDITION,  # the lock after three
        grpc.StatusCode.ABORTED,  # attempts in flight make up the limit
    }


async def test_a_connection_has_its_calls_in_flight_bounded_the_caller_holds_the_rest(
    make_service: ServiceFactory,
) -> None:
    """AMELI_MAX_CONCURRENT_STREAMS=1, with any verification ahead shed: ten logins at once on
    one connection reach the service one after the other (the client holds the rest), so none
    is shed; the same ten on ten connections arrive together, and some are."""
    service = await make_service(max_concurrent_streams=1, max_pending_hashes=0, max_hash_wait=0)
    await refused(service.login(nir(899), password="faux"))  # the connection's settings known
    nirs = [nir(900 + i) for i in range(10)]

    one_connection = await asyncio.gather(
        *(refused(service.login(n, password="faux")) for n in nirs)
    )

    assert {r.reason for r in one_connection} == {"INVALID_CREDENTIALS"}
    key = (("authorization", f"Bearer {PORTAL_KEY}"),)
    stubs = []
    for _ in nirs:  # a subchannel pool of its own: a connection of its own
        channel = grpc.aio.insecure_channel(service.address, options=OWN_CONNECTION)
        service.channels.append(channel)
        await channel.channel_ready()
        stubs.append(auth_pb2_grpc.AuthServiceStub(channel))
    request = auth_pb2.CheckCredentialsRequest
    ten_connections = await asyncio.gather(
        *(
            refused(stub.CheckCredentials(request(nir=n, password="faux"), metadata=key))
            for stub, n in zip(stubs, nirs, strict=True)
        )
    )
    assert "SERVICE_UNAVAILABLE" in {r.reason for r in ten_connections}


async def _raw_call(service: ServiceUnderTest, key: str | None, payload: bytes) -> Refusal:
    """CheckCredentials with ``payload`` as the request's bytes, as they are, under ``key``."""
    call = service.channel().unary_unary(
        CHECK_CREDENTIALS,
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    metadata = (("authorization", f"Bearer {key}"),) if key else None
    return await refused(call(payload, metadata=metadata))


@pytest.mark.parametrize("key", [None, "not-a-key"], ids=["no key", "unknown key"])
async def test_an_unknown_caller_is_refused_before_its_bytes_are_parsed(
    service: ServiceUnderTest, key: str | None
) -> None:
    """Garbage from a caller without a valid key is UNAUTHENTICATED, never INVALID_ARGUMENT."""
    refusal = await _raw_call(service, key, GARBAGE)

    assert refusal.code == grpc.StatusCode.UNAUTHENTICATED
    assert refusal.reason == "CALLER_NOT_ALLOWED"


async def test_a_role_refused_is_refused_before_its_bytes_are_parsed(
    service: ServiceUnderTest,
) -> None:
    """Garbage from an advisor key to CheckCredentials is PERMISSION_DENIED, as a valid request."""
    refusal = await _raw_call(service, ADVISOR_KEY, GARBAGE)

    assert refusal.code == grpc.StatusCode.PERMISSION_DENIED
    assert refusal.reason == "CALLER_NOT_ALLOWED"


async def test_the_clients_channel_does_not_send_the_services_own_unavailable_again(
    make_service: ServiceFactory,
) -> None:
    """The client's channel retries UNAVAILABLE, for transport failures (SPEC §10). The
    service's own UNAVAILABLE (a dependency down, a shed login, a drain) is not sent
    again: every answer's initial metadata (the request id) goes first, and gRPC
    never retries a call whose response headers it has received. Under overload a
    retry would only add load; the caller has its RetryInfo."""
    service = await make_service(rfi_url=f"http://127.0.0.1:{free_port()}", rfi_timeout=0.5)
    await service.add_account(nir(960))
    request = auth_pb2.CheckCredentialsRequest(nir=nir(960), password=PASSWORD)
    async with aio_channel(service.address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        with structlog.testing.capture_logs() as logs:
            bearer = (("authorization", f"Bearer {PORTAL_KEY}"),)
            refusal = await refused(stub.CheckCredentials(request, metadata=bearer))
    assert refusal.reason == "SERVICE_UNAVAILABLE"
    assert [line["method"] for line in logs if line["event"] == "rpc"] == ["CheckCredentials"]
