"""The real server's refusals, read by the client package's codec over the wire."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime

import grpc
import pytest
from ameli.auth import client as auth
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc

from tests.e2e.harness import ADVISOR_KEY, PORTAL_KEY, ServiceUnderTest, nir, refused

REQUEST_ID = "gw-codec/7"


async def failed(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """Await a call that must fail; return the error the stub raised."""
    try:
        response = await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError(f"expected a refusal, got {response}")


def login(stub: auth_pb2_grpc.AuthServiceAsyncStub, nir_: str, password: str) -> Awaitable[object]:
    request = auth_pb2.CheckCredentialsRequest(nir=nir_, password=password)
    return stub.CheckCredentials(request, metadata=(("x-request-id", REQUEST_ID),))


async def test_wrong_passwords_and_the_lock_decode_to_the_values_on_the_wire(
    service: ServiceUnderTest,
) -> None:
    """WrongEntry then Locked carry the attempts, lock end, delay and the echoed request id."""
    await service.add_account(nir(61))

    wrong = auth.error_from_rpc_error(await failed(login(service.portal, nir(61), "faux")))
    second = await refused(service.login(nir(61), password="faux"))
    locking = await failed(login(service.portal, nir(61), "faux"))
    locked = auth.error_from_rpc_error(locking)

    assert type(wrong) is auth.WrongEntry
    assert (wrong.code, wrong.reason) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")
    assert wrong.attempts_remaining == 2
    assert second.metadata["attemptsRemaining"] == "1"  # the wire, read without the codec
    assert wrong.request_id == REQUEST_ID
    assert wrong.message.startswith("Les informations saisies sont erronées.")
    assert type(locked) is auth.Locked
    assert locked.reason == "PASSWORD_ATTEMPTS_LOCKED"
    assert locked.request_id == REQUEST_ID
    assert locked.lock_expire_time is not None
    assert locked.lock_expire_time > datetime.now(UTC)
    assert locked.retry_delay is not None
    assert locked.retry_delay.total_seconds() >= 899
    assert locked.attempts_remaining is None
    assert "(heure de Paris)" in locked.message


async def test_a_malformed_nir_decodes_to_invalid_input_naming_the_field(
    service: ServiceUnderTest,
) -> None:
    """INVALID_NIR from the server is InvalidInput with its BadRequest field violation."""
    error = auth.error_from_rpc_error(await failed(login(service.portal, "123", "x")))

    assert type(error) is auth.InvalidInput
    assert error.reason == "INVALID_NIR"
    assert [v.field for v in error.field_violations] == ["nir"]
    assert error.request_id == REQUEST_ID


@pytest.mark.parametrize(
    ("key", "code"),
    [(None, grpc.StatusCode.UNAUTHENTICATED), ("advisor", grpc.StatusCode.PERMISSION_DENIED)],
    ids=["no key", "role refused"],
)
async def test_a_refused_caller_decodes_to_caller_not_allowed(
    service: ServiceUnderTest, key: str | None, code: grpc.StatusCode
) -> None:
    """Without a key or with a role that may not call, the client raises CallerNotAllowed."""
    stub = service.stub(ADVISOR_KEY if key else None)
    error = auth.error_from_rpc_error(await failed(login(stub, nir(62), "x")))

    assert type(error) is auth.CallerNotAllowed
    assert (error.code, error.reason) == (code, "CALLER_NOT_ALLOWED")


async def test_the_client_carries_the_request_id_the_server_made(
    service: ServiceUnderTest,
) -> None:
    """AuthClient's exception holds the x-request-id the server echoed (a UUID when none sent)."""
    client = auth.AuthClient(service.channel(), api_key=PORTAL_KEY, timeout=5.0)

    with pytest.raises(auth.NotFound) as raised:
        await client.verify_code(login_id="inconnu", code="123456")

    assert raised.value.reason == "LOGIN_NOT_FOUND"
    assert raised.value.request_id is not None
    assert uuid.UUID(raised.value.request_id).version == 4
