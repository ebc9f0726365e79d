"""The request id (SPEC §9): the caller's or a new UUID, on every log line, echoed, audited."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable

import grpc
import pytest
import structlog
from ameli.auth.v1 import auth_pb2

from ameli_grpc.server.interceptors import request_id
from tests.e2e.harness import ServiceUnderTest, nir, refused

REQUEST_ID = "gw-7f3a:login/42"


def with_id(value: str) -> tuple[tuple[str, str], ...]:
    return (("x-request-id", value),)


def echoed(metadata: grpc.aio.Metadata | None) -> str:
    assert metadata is not None
    values = [value for key, value in metadata if key == "x-request-id"]
    assert len(values) == 1, metadata
    return str(values[0])


async def test_the_callers_request_id_is_echoed(service: ServiceUnderTest) -> None:
    """A sane ``x-request-id`` comes back unchanged in the response's initial metadata."""
    call = service.portal.GetLockStatus(
        auth_pb2.GetLockStatusRequest(nir=nir(1)), metadata=with_id(REQUEST_ID)
    )
    await call

    assert echoed(await call.initial_metadata()) == REQUEST_ID


@pytest.mark.parametrize(
    "sent",
    [None, "", "x" * 129, " padded "],
    ids=["absent", "empty", "too long", "spaces around"],
)
async def test_a_missing_or_insane_request_id_is_replaced_by_a_uuid(
    service: ServiceUnderTest, sent: str | None
) -> None:
    """Without a usable ``x-request-id`` the server makes a new UUID4 and echoes it."""
    metadata = with_id(sent) if sent is not None else None
    call = service.portal.GetLockStatus(
        auth_pb2.GetLockStatusRequest(nir=nir(1)), metadata=metadata
    )
    await call

    generated = echoed(await call.initial_metadata())
    assert generated != sent
    assert uuid.UUID(generated).version == 4
    again = service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(1)))
    await again
    assert echoed(await again.initial_metadata()) != generated  # one per call


@pytest.mark.parametrize("sent", ["a\tb", "é-42", "x\x00", "x" * 129, "", " "], ids=repr)
def test_only_printable_ascii_is_kept(sent: str) -> None:
    """What a client library may let through (a control or non-ASCII character) is replaced."""
    kept = request_id((("x-request-id", sent),))
    assert kept != sent
    assert uuid.UUID(kept).version == 4
    assert request_id((("x-request-id", "x" * 128),)) == "x" * 128
    assert request_id((("x-request-id", b"bytes"),)) != "bytes"


async def test_refusals_echo_the_request_id_too(service: ServiceUnderTest) -> None:
    """A wrong password, an unknown caller and a bad request all carry the id back."""
    await service.add_account(nir(2))
    calls: list[Awaitable[object]] = [
        service.portal.CheckCredentials(
            auth_pb2.CheckCredentialsRequest(nir=nir(2), password="faux"),
            metadata=with_id("r-wrong"),
        ),
        service.stub("not-a-key").GetLockStatus(
            auth_pb2.GetLockStatusRequest(nir=nir(2)), metadata=with_id("r-caller")
        ),
        service.portal.GetLockStatus(
            auth_pb2.GetLockStatusRequest(nir="bad"), metadata=with_id("r-bad")
        ),
    ]
    for call, expected in zip(calls, ["r-wrong", "r-caller", "r-bad"], strict=True):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert echoed(raised.value.initial_metadata()) == expected


async def test_every_log_line_of_the_call_carries_the_request_id(
    service: ServiceUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line logged deep inside the call (an adapter's) and the call's own line both carry it."""
    await service.add_account(nir(3))
    assert service.container is not None
    hasher = service.container.ports.hasher
    real_verify = hasher.verify

    async def logging_verify(secret_hash: str, password: str) -> bool:
        structlog.get_logger("probe").info("adapter_line")
        return await real_verify(secret_hash, password)

    monkeypatch.setattr(hasher, "verify", logging_verify)
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        await service.portal.CheckCredentials(
            auth_pb2.CheckCredentialsRequest(nir=nir(3), password="Bon-Mot-de-Passe-1"),
            metadata=with_id(REQUEST_ID),
        )
    lines = {line["event"]: line for line in logs}
    assert lines["adapter_line"]["request_id"] == REQUEST_ID
    assert lines["rpc"]["request_id"] == REQUEST_ID
    assert lines["adapter_line"]["caller"] == "test-portal"


async def test_the_audit_row_carries_the_request_id(service: ServiceUnderTest) -> None:
    """Each audit row stores the id of the call that wrote it, given or generated."""
    await service.add_account(nir(4))
    await refused(
        service.portal.CheckCredentials(
            auth_pb2.CheckCredentialsRequest(nir=nir(4), password="faux"),
            metadata=with_id(REQUEST_ID),
        )
    )
    call = service.portal.CheckCredentials(
        auth_pb2.CheckCredentialsRequest(nir=nir(4), password="faux")
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    generated = echoed(raised.value.initial_metadata())

    assert await service.audit_request_ids() == [
        ("password_failed", REQUEST_ID),
        ("password_failed", generated),
    ]


async def test_concurrent_calls_keep_their_own_request_ids(service: ServiceUnderTest) -> None:
    """Calls in flight together each log and audit their own id, and their own caller's name
    (the interceptor sets both in the call's own context)."""
    await service.add_account(nir(5))
    ids = [f"parallel-{index}" for index in range(8)]

    async def wrong_password(value: str) -> None:
        await refused(
            service.portal.CheckCredentials(
                auth_pb2.CheckCredentialsRequest(nir=nir(5), password="faux"),
                metadata=with_id(value),
            )
        )

    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        await asyncio.gather(*(wrong_password(value) for value in ids[:2]))
        await asyncio.gather(
            *(
                service.portal.GetLockStatus(
                    auth_pb2.GetLockStatusRequest(nir=nir(5)), metadata=with_id(value)
                )
                for value in ids[2:]
            )
        )
    audited = [str(value) for _, value in await service.audit_request_ids()]
    assert sorted(audited[-2:]) == ids[:2]
    rpc_lines = sorted(line["request_id"] for line in logs if line["event"] == "rpc")
    assert rpc_lines == sorted(ids)
    assert {line["caller"] for line in logs if line["event"] == "rpc"} == {"test-portal"}
