"""SPEC §7.5: overload is refused fast, not queued."""

from __future__ import annotations

import asyncio

import grpc
from ameli.auth.v1 import auth_pb2
from google.rpc import error_details_pb2

from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import nir, refused

UNAVAILABLE_TEXT = (
    "Le service est momentanément indisponible. Merci de réessayer dans quelques instants."
)


async def test_a_burst_beyond_the_hash_queue_is_shed_before_anything_is_counted(
    make_service: ServiceFactory,
) -> None:
    """60 wrong passwords at once behind a queue of 2: some are shed UNAVAILABLE with RetryInfo
    1 s and count nothing; every failure counted is an answered INVALID_CREDENTIALS."""
    service = await make_service(max_pending_hashes=2)
    nirs = [nir(900 + i) for i in range(60)]
    for known in nirs[:6]:  # known and unknown NIRs are admitted alike
        await service.add_account(known)

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
