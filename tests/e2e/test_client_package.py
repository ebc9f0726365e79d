"""``AuthClient`` and ``SyncAuthClient`` from ``connect()`` / ``connect_sync()`` against the
real service: every RPC, every exception family, the request id, TLS with a CA file, and
the retry policy (a transport failure tried again, a wrong password never)."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from ameli import auth
from ameli.auth.channel import channel_options
from ameli.auth.v1 import auth_pb2

from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import ADVISOR_KEY, PORTAL_KEY, ServiceUnderTest, nir
from tests.support.mail import extract_code, self_signed_tls

KINDS = ["async", "sync"]
Client = auth.AuthClient | auth.SyncAuthClient
Call = Callable[..., Awaitable[Any]]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def opened() -> AsyncIterator[list[Client]]:
    """The clients a test opened, closed after it."""
    clients: list[Client] = []
    yield clients
    for client in clients:
        if isinstance(client, auth.SyncAuthClient):
            client.close()
        else:
            await client.close()


@pytest.fixture
def open_client(kind: str, opened: list[Client]) -> Callable[..., Client]:
    """``connect()`` or ``connect_sync()``, by the test's kind."""

    def factory(target: str, **options: Any) -> Client:
        client = (auth.connect if kind == "async" else auth.connect_sync)(target, **options)
        opened.append(client)
        return client

    return factory


def rpc(client: Client, name: str) -> Call:
    """The client's method as a coroutine function (a sync call runs in a thread, off the
    event loop that serves the service)."""
    method = getattr(client, name)
    if isinstance(client, auth.AuthClient):
        return method  # type: ignore[no-any-return]

    async def in_thread(**kwargs: Any) -> Any:
        return await asyncio.to_thread(method, **kwargs)

    return in_thread


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_every_rpc(service: ServiceUnderTest, open_client: Callable[..., Client]) -> None:
    """Each of the eight RPCs answers its response type through either client, with the
    client's request id on every call, or a new one per call."""
    portal = open_client(service.address, api_key=PORTAL_KEY, request_id="gw-login-1")
    advisor = open_client(service.address, api_key=ADVISOR_KEY)
    await service.add_account(nir(1), mobile_phone="06 12 34 56 78")

    checked = await rpc(portal, "check_credentials")(nir=nir(1), password="Bon-Mot-de-Passe-1")
    assert checked.WhichOneof("result") == "code_required"
    login_id = checked.code_required.login_id
    before = len(service.smtp.deliveries)
    sent = await rpc(portal, "request_code")(login_id=login_id)
    assert isinstance(sent, auth_pb2.RequestCodeResponse)
    assert sent.masked_email
    code = extract_code((await service.smtp.wait_for_messages(before + 1))[-1])
    verified = await rpc(portal, "verify_code")(login_id=login_id, code=code, trust_device=True)
    assert verified.device_token
    assert verified.authenticated.account_id

    status = await rpc(advisor, "get_lock_status")(nir=nir(1))
    assert isinstance(status, auth_pb2.GetLockStatusResponse)
    assert not status.locked
    account = await rpc(advisor, "get_account")(nir=nir(1))
    assert len(account.trusted_devices) == 1
    change = {"nir": nir(1), "advisor_id": "C3646-001", "reason": "appel"}
    revoked = await rpc(advisor, "revoke_trusted_devices")(**change)
    assert isinstance(revoked, auth_pb2.RevokeTrustedDevicesResponse)
    unlocked = await rpc(advisor, "unlock_account")(**change)
    assert isinstance(unlocked, auth_pb2.UnlockAccountResponse)
    reset = await rpc(advisor, "reset_account")(**change, send_provisional_code=True)
    assert isinstance(reset, auth_pb2.ResetAccountResponse)
    with pytest.raises(auth.AccountNotFound):
        await rpc(advisor, "get_account")(nir=nir(1))

    rows = await service.audit_request_ids()
    assert rows[:2] == [("authenticated", "gw-login-1"), ("device_trusted", "gw-login-1")]
    # without a request id of the client's, each call gets a new UUID
    advisor_ids = {str(uuid.UUID(str(request_id))) for _, request_id in rows[2:]}
    assert len(advisor_ids) == 3, rows  # revoke, unlock, reset (and its SMS)


async def test_exception_families(
    service: ServiceUnderTest, open_client: Callable[..., Client]
) -> None:
    """Every family of refusal is its typed exception with the French message and the
    call's request id (the client's, a call's own, or a new one)."""
    portal = open_client(service.address, api_key=PORTAL_KEY)
    advisor = open_client(service.address, api_key=ADVISOR_KEY)
    check = rpc(portal, "check_credentials")
    await service.add_account(nir(2))
    await service.add_account(nir(3), email_validated=False)

    with pytest.raises(auth.InvalidInput) as invalid:
        await check(nir="123", password="x", request_id="gw-invalid")
    assert invalid.value.reason == "INVALID_NIR"
    assert invalid.value.request_id == "gw-invalid"

    with pytest.raises(auth.WrongEntry) as wrong:
        await check(nir=nir(2), password="faux")
    assert wrong.value.attempts_remaining == 2
    assert wrong.value.message
    assert wrong.value.request_id  # a UUID made for the call
    with pytest.raises(auth.WrongEntry):
        await check(nir=nir(2), password="faux")
    with pytest.raises(auth.Locked) as locked:
        await check(nir=nir(2), password="faux")
    assert locked.value.reason == "PASSWORD_ATTEMPTS_LOCKED"
    assert locked.value.lock_expire_time
    assert "bloqué" in locked.value.message

    with pytest.raises(auth.LoginRefused) as refused:
        await check(nir=nir(3), password="Bon-Mot-de-Passe-1")
    assert refused.value.reason == "EMAIL_NOT_VALIDATED"

    with pytest.raises(auth.NotFound) as not_found:
        await rpc(portal, "request_code")(login_id="inconnu")
    assert not_found.value.reason == "LOGIN_NOT_FOUND"
    with pytest.raises(auth.AccountNotFound):
        await rpc(advisor, "get_account")(nir=nir(4))

    with pytest.raises(auth.CallerNotAllowed):
        await rpc(portal, "get_account")(nir=nir(2))
    anonymous = open_client(service.address)
    with pytest.raises(auth.CallerNotAllowed):
        await rpc(anonymous, "get_lock_status")(nir=nir(2))


async def test_unreachable_and_deadline(
    service: ServiceUnderTest, open_client: Callable[..., Client]
) -> None:
    """A closed port and a deadline that passes are ``ServiceUnavailable`` in French."""
    closed = open_client(f"127.0.0.1:{free_port()}", api_key=PORTAL_KEY, timeout=3.0)
    with pytest.raises(auth.ServiceUnavailable) as unreachable:
        await rpc(closed, "check_credentials")(nir=nir(5), password="x")
    assert unreachable.value.code == grpc.StatusCode.UNAVAILABLE
    assert unreachable.value.message == auth.UNAVAILABLE_MESSAGE
    assert unreachable.value.request_id

    hurried = open_client(service.address, api_key=PORTAL_KEY, timeout=0.000_001)
    with pytest.raises(auth.ServiceUnavailable) as late:
        await rpc(hurried, "check_credentials")(nir=nir(5), password="x")
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert late.value.message == auth.UNAVAILABLE_MESSAGE


async def test_wrong_password_not_retried(
    service: ServiceUnderTest, open_client: Callable[..., Client]
) -> None:
    """A wrong password is sent once: one failure counted, one audit row."""
    portal = open_client(service.address, api_key=PORTAL_KEY, request_id="gw-once")
    advisor = open_client(service.address, api_key=ADVISOR_KEY)
    await service.add_account(nir(6))
    with pytest.raises(auth.WrongEntry):
        await rpc(portal, "check_credentials")(nir=nir(6), password="faux")
    status = await rpc(advisor, "get_lock_status")(nir=nir(6))
    assert status.password_failures == 1
    assert [row for row in await service.audit_request_ids() if row[1] == "gw-once"] == [
        ("password_failed", "gw-once")
    ]


async def fake_service(
    answer: Callable[[int], Awaitable[auth_pb2.CheckCredentialsResponse | None]],
    seen: list[str],
) -> tuple[grpc.aio.Server, int]:
    """A bare gRPC server whose CheckCredentials records each call's request id in ``seen``
    and answers ``answer(n)`` for the n-th call (``None``: UNAVAILABLE, as a proxy would)."""

    async def check_credentials(
        request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        metadata = dict(context.invocation_metadata() or ())
        seen.append(str(metadata.get("x-request-id")))
        response = await answer(len(seen))
        if response is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "upstream connect error")
        assert response is not None
        return response.SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        "ameli.auth.v1.AuthService",
        {"CheckCredentials": grpc.unary_unary_rpc_method_handler(check_credentials)},
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def code_required(login_id: str) -> auth_pb2.CheckCredentialsResponse:
    return auth_pb2.CheckCredentialsResponse(code_required=auth_pb2.CodeRequired(login_id=login_id))


async def test_transport_failure_retried(open_client: Callable[..., Client]) -> None:
    """An ``UNAVAILABLE`` without an answer of the service (a proxy's, a dropped connection)
    is tried again by the channel: the call succeeds on the second attempt."""
    attempts: list[str] = []

    async def first_unavailable(n: int) -> auth_pb2.CheckCredentialsResponse | None:
        return None if n == 1 else code_required("L1")

    server, port = await fake_service(first_unavailable, attempts)
    try:
        client = open_client(f"127.0.0.1:{port}", request_id="gw-retry")
        checked = await rpc(client, "check_credentials")(nir=nir(7), password="x")
    finally:
        await server.stop(None)
    assert checked.code_required.login_id == "L1"
    assert attempts == ["gw-retry", "gw-retry"]


async def test_round_robin(open_client: Callable[..., Client]) -> None:
    """Calls are spread over every address of the target, not all sent to the first."""
    seen: list[list[str]] = [[], []]
    servers = []
    for index, calls in enumerate(seen):

        async def answer(n: int, index: int = index) -> auth_pb2.CheckCredentialsResponse:
            return code_required(f"server-{index}")

        servers.append(await fake_service(answer, calls))
    try:
        target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for _, port in servers)
        check = rpc(open_client(target), "check_credentials")
        answers = {(await check(nir=nir(7), password="x")).code_required.login_id for _ in range(6)}
    finally:
        for server, _ in servers:
            await server.stop(None)
    assert answers == {"server-0", "server-1"}
    assert all(calls for calls in seen)


async def test_tls_with_a_ca_file(
    make_service: ServiceFactory, open_client: Callable[..., Client], tmp_path: Path
) -> None:
    """Over TLS, the service's certificate is trusted through ``ca_file``; without it the
    handshake fails as ``ServiceUnavailable``."""
    self_signed_tls(tmp_path)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    service = await make_service(tls_cert_file=cert, tls_key_file=key)
    client = open_client(service.address, api_key=ADVISOR_KEY, ca_file=cert)
    status = await rpc(client, "get_lock_status")(nir=nir(8))
    assert not status.locked
    untrusted = open_client(service.address, api_key=ADVISOR_KEY, tls=True, timeout=2.0)
    with pytest.raises(auth.ServiceUnavailable):
        await rpc(untrusted, "get_lock_status")(nir=nir(8))


def test_only_unavailable_is_retried() -> None:
    """The channel's service config retries ``UNAVAILABLE`` alone, 3 attempts at most, and
    balances by round robin; keepalive pings stay above the service's 10 s minimum."""
    options = dict(channel_options())
    config = json.loads(str(options["grpc.service_config"]))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method,) = config["methodConfig"]
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert method["retryPolicy"]["maxAttempts"] == 3
    assert int(options["grpc.keepalive_time_ms"]) >= 10_000
