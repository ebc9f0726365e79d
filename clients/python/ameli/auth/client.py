"""Clients of ``ameli.auth.v1.AuthService`` (async and sync) with typed exceptions.

Every refusal of the service is a gRPC status carrying, AIP-193 style, a
``google.rpc.ErrorInfo`` (reason, domain ``auth.ameli.fr``, metadata
``attemptsRemaining`` / ``lockExpireTime``), a ``google.rpc.LocalizedMessage``
in fr-FR and, for locks and the quota, a ``google.rpc.RetryInfo``.
``AuthClient`` (async) and ``SyncAuthClient`` turn it into one ``AuthServiceError``
subclass per family, so a portal can branch on the exception type and show
``error.message`` as is. ``connect()`` / ``connect_sync()`` open them on a channel
of their own (``ameli.auth.channel``: TLS, keepalive, round robin, retries of
transport failures only); both clients share one table of the RPCs (the
``_check_credentials``... request builders), so their methods cannot drift.

The exception family and the codec live in ``ameli.auth.errors`` (which the
server uses to build its statuses).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Generic, ParamSpec, Self, TypeVar

import grpc
from google.protobuf.message import Message

from ameli.auth import channel as channels
from ameli.auth.errors import (
    ERROR_DOMAIN,
    REQUEST_ID_KEY,
    UNAVAILABLE_MESSAGE,
    AccountNotFound,
    AuthServiceError,
    CallerNotAllowed,
    InvalidInput,
    Locked,
    LoginRefused,
    NotFound,
    ServiceUnavailable,
    WrongEntry,
    error_from_rpc_error,
)
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc

__all__ = [
    "ERROR_DOMAIN",
    "UNAVAILABLE_MESSAGE",
    "AccountNotFound",
    "AuthClient",
    "AuthServiceError",
    "CallerNotAllowed",
    "InvalidInput",
    "Locked",
    "LoginRefused",
    "NotFound",
    "ServiceUnavailable",
    "SyncAuthClient",
    "WrongEntry",
    "connect",
    "connect_sync",
    "error_from_rpc_error",
]

_Response = TypeVar("_Response", bound=Message)


_Params = ParamSpec("_Params")


@dataclass(frozen=True)
class _Call(Generic[_Response]):
    """One RPC ready to send: the stub's method, the request, what it answers."""

    method: str
    request: Message
    response_type: type[_Response]
    request_id: str | None


def _client_info(ip: str, user_agent: str) -> auth_pb2.ClientInfo:
    return auth_pb2.ClientInfo(ip=ip, user_agent=user_agent)


# The RPCs, once: each function builds the request from the method's keyword arguments.
# ``AuthClient`` awaits them and ``SyncAuthClient`` blocks on them (see ``_rpc``);
# ``request_id`` (every method) overrides the client's for this call.


def _check_credentials(
    *,
    nir: str,
    password: str,
    channel: auth_pb2.Channel.ValueType = auth_pb2.CHANNEL_WEB,
    device_token: str = "",
    client_ip: str = "",
    user_agent: str = "",
    request_id: str | None = None,
) -> _Call[auth_pb2.CheckCredentialsResponse]:
    """First step: NIR + password (or provisional code); see the ``result`` oneof."""
    request = auth_pb2.CheckCredentialsRequest(
        nir=nir,
        password=password,
        channel=channel,
        device_token=device_token,
        client=_client_info(client_ip, user_agent),
    )
    return _Call("CheckCredentials", request, auth_pb2.CheckCredentialsResponse, request_id)


def _request_code(
    *, login_id: str, client_ip: str = "", user_agent: str = "", request_id: str | None = None
) -> _Call[auth_pb2.RequestCodeResponse]:
    """Sends a new security code by email for the login (counted in the quota)."""
    request = auth_pb2.RequestCodeRequest(
        login_id=login_id, client=_client_info(client_ip, user_agent)
    )
    return _Call("RequestCode", request, auth_pb2.RequestCodeResponse, request_id)


def _verify_code(
    *,
    login_id: str,
    code: str,
    trust_device: bool = False,
    client_ip: str = "",
    user_agent: str = "",
    request_id: str | None = None,
) -> _Call[auth_pb2.VerifyCodeResponse]:
    """Second step: the emailed code; ``trust_device`` asks for a device token."""
    request = auth_pb2.VerifyCodeRequest(
        login_id=login_id,
        code=code,
        trust_device=trust_device,
        client=_client_info(client_ip, user_agent),
    )
    return _Call("VerifyCode", request, auth_pb2.VerifyCodeResponse, request_id)


def _get_lock_status(
    *, nir: str, request_id: str | None = None
) -> _Call[auth_pb2.GetLockStatusResponse]:
    """The active locks and failure counters of a NIR."""
    request = auth_pb2.GetLockStatusRequest(nir=nir)
    return _Call("GetLockStatus", request, auth_pb2.GetLockStatusResponse, request_id)


def _reset_account(
    *,
    nir: str,
    advisor_id: str,
    reason: str,
    send_provisional_code: bool = False,
    request_id: str | None = None,
) -> _Call[auth_pb2.ResetAccountResponse]:
    """Advisor only: deletes the account of the NIR, optionally texting a provisional code."""
    request = auth_pb2.ResetAccountRequest(
        nir=nir, advisor_id=advisor_id, reason=reason, send_provisional_code=send_provisional_code
    )
    return _Call("ResetAccount", request, auth_pb2.ResetAccountResponse, request_id)


def _unlock_account(
    *, nir: str, advisor_id: str, reason: str, request_id: str | None = None
) -> _Call[auth_pb2.UnlockAccountResponse]:
    """Advisor only: lifts every lock, counter and the quota of the NIR; the account stays."""
    request = auth_pb2.UnlockAccountRequest(nir=nir, advisor_id=advisor_id, reason=reason)
    return _Call("UnlockAccount", request, auth_pb2.UnlockAccountResponse, request_id)


def _get_account(*, nir: str, request_id: str | None = None) -> _Call[auth_pb2.GetAccountResponse]:
    """Advisor only: the account of the NIR (masked contacts, RFI affiliation, trusted
    devices, locks, counters); ``AccountNotFound`` when the NIR has no account."""
    request = auth_pb2.GetAccountRequest(nir=nir)
    return _Call("GetAccount", request, auth_pb2.GetAccountResponse, request_id)


def _revoke_trusted_devices(
    *, nir: str, advisor_id: str, reason: str, request_id: str | None = None
) -> _Call[auth_pb2.RevokeTrustedDevicesResponse]:
    """Advisor only: every trusted device of the NIR's account asks for a code again;
    the account stays. ``AccountNotFound`` when the NIR has no account."""
    request = auth_pb2.RevokeTrustedDevicesRequest(nir=nir, advisor_id=advisor_id, reason=reason)
    return _Call("RevokeTrustedDevices", request, auth_pb2.RevokeTrustedDevicesResponse, request_id)


class _AsyncRpc(Generic[_Params, _Response]):
    """An ``AuthClient`` method: the request from ``build``, awaited through ``_invoke``."""

    def __init__(self, build: Callable[_Params, _Call[_Response]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__

    def __get__(
        self, client: AuthClient, owner: type[AuthClient] | None = None
    ) -> Callable[_Params, Awaitable[_Response]]:
        build = self._build

        async def method(*args: _Params.args, **kwargs: _Params.kwargs) -> _Response:
            return await client._invoke(build(*args, **kwargs))

        method.__doc__ = build.__doc__
        method.__name__ = build.__name__.lstrip("_")
        return method


class _SyncRpc(Generic[_Params, _Response]):
    """A ``SyncAuthClient`` method: the request from ``build``, sent through ``_invoke``."""

    def __init__(self, build: Callable[_Params, _Call[_Response]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__

    def __get__(
        self, client: SyncAuthClient, owner: type[SyncAuthClient] | None = None
    ) -> Callable[_Params, _Response]:
        build = self._build

        def method(*args: _Params.args, **kwargs: _Params.kwargs) -> _Response:
            return client._invoke(build(*args, **kwargs))

        method.__doc__ = build.__doc__
        method.__name__ = build.__name__.lstrip("_")
        return method


class _ClientBase:
    """What both clients share: the key, the deadline, the request id of each call."""

    def __init__(
        self, *, api_key: str | None, timeout: float | None, request_id: str | None
    ) -> None:
        self._key: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self._timeout = timeout
        self._request_id = request_id

    def _prepare(self, call: _Call[_Response]) -> tuple[str, tuple[tuple[str, str], ...]]:
        """The call's request id (its own, the client's, or a new UUID) and its metadata."""
        request_id = call.request_id or self._request_id or str(uuid.uuid4())
        return request_id, (*self._key, (REQUEST_ID_KEY, request_id))

    @staticmethod
    def _refusal(error: grpc.RpcError, request_id: str) -> AuthServiceError:
        """The typed exception of a failed call, carrying the call's request id."""
        # The id echoed by the server wins (the codec reads it); else the one this call sent.
        return error_from_rpc_error(error, request_id)

    @staticmethod
    def _checked(response: object, response_type: type[_Response]) -> _Response:
        if not isinstance(response, response_type):  # the stub deserialises response_type
            raise TypeError(f"expected {response_type.__name__}, got {type(response).__name__}")
        return response


class AuthClient(_ClientBase):
    """Async client of AuthService over a ``grpc.aio.Channel``.

    Each method takes keyword arguments, returns the response message and
    raises an ``AuthServiceError`` subclass on any refusal. ``api_key`` is sent
    as ``authorization: Bearer <key>``; ``timeout`` (seconds) is the deadline of
    every call, retries included (``None``: no deadline); ``request_id`` is sent
    as ``x-request-id`` on every call (a new UUID per call when ``None``; each
    method's ``request_id=`` overrides it). The channel is the caller's, unless
    the client comes from ``connect()``: then ``close()`` (or ``async with``)
    closes it.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        api_key: str | None = None,
        timeout: float | None = 10.0,
        request_id: str | None = None,
        owns_channel: bool = False,
    ) -> None:
        super().__init__(api_key=api_key, timeout=timeout, request_id=request_id)
        self._channel = channel
        self._owns_channel = owns_channel
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)

    check_credentials = _AsyncRpc(_check_credentials)
    request_code = _AsyncRpc(_request_code)
    verify_code = _AsyncRpc(_verify_code)
    get_lock_status = _AsyncRpc(_get_lock_status)
    reset_account = _AsyncRpc(_reset_account)
    unlock_account = _AsyncRpc(_unlock_account)
    get_account = _AsyncRpc(_get_account)
    revoke_trusted_devices = _AsyncRpc(_revoke_trusted_devices)

    async def close(self) -> None:
        """Closes the channel if the client opened it (``connect()``)."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _invoke(self, call: _Call[_Response]) -> _Response:
        """One unary call with the key, deadline and request id, translating refusals."""
        request_id, metadata = self._prepare(call)
        method = getattr(self._stub, call.method)
        try:
            response = await method(call.request, metadata=metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise self._refusal(error, request_id) from error
        return self._checked(response, call.response_type)


class SyncAuthClient(_ClientBase):
    """Synchronous client of AuthService (Django, Flask...) over a ``grpc.Channel``.

    The same methods as ``AuthClient``, with the same arguments, responses and
    exceptions, blocking until the answer. Thread-safe: share one client (and
    its channel) between a gateway's threads. ``close()`` (or ``with``) closes
    the channel if the client opened it (``connect_sync()``).
    """

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        api_key: str | None = None,
        timeout: float | None = 10.0,
        request_id: str | None = None,
        owns_channel: bool = False,
    ) -> None:
        super().__init__(api_key=api_key, timeout=timeout, request_id=request_id)
        self._channel = channel
        self._owns_channel = owns_channel
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)

    check_credentials = _SyncRpc(_check_credentials)
    request_code = _SyncRpc(_request_code)
    verify_code = _SyncRpc(_verify_code)
    get_lock_status = _SyncRpc(_get_lock_status)
    reset_account = _SyncRpc(_reset_account)
    unlock_account = _SyncRpc(_unlock_account)
    get_account = _SyncRpc(_get_account)
    revoke_trusted_devices = _SyncRpc(_revoke_trusted_devices)

    def close(self) -> None:
        """Closes the channel if the client opened it (``connect_sync()``)."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _invoke(self, call: _Call[_Response]) -> _Response:
        """One unary call with the key, deadline and request id, translating refusals."""
        request_id, metadata = self._prepare(call)
        method = getattr(self._stub, call.method)
        try:
            response = method(call.request, metadata=metadata, timeout=self._timeout)
        except grpc.RpcError as error:
            raise self._refusal(error, request_id) from error
        return self._checked(response, call.response_type)


def connect(
    target: str,
    *,
    api_key: str | None = None,
    tls: bool = False,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    timeout: float | None = 5.0,
    request_id: str | None = None,
) -> AuthClient:
    """An ``AuthClient`` on a channel of its own to ``target`` (``host:port``, or
    ``dns:///name:port`` for every address of a name): TLS with ``tls`` or any of the
    files (``ca_file`` the authority to trust instead of the system's, ``cert_file`` and
    ``key_file`` a client certificate), keepalive, round robin and transport retries
    (``ameli.auth.channel``). ``async with connect(...) as client:`` closes it."""
    channel = channels.aio_channel(
        target, tls=tls, ca_file=ca_file, cert_file=cert_file, key_file=key_file
    )
    return AuthClient(
        channel, api_key=api_key, timeout=timeout, request_id=request_id, owns_channel=True
    )


def connect_sync(
    target: str,
    *,
    api_key: str | None = None,
    tls: bool = False,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    timeout: float | None = 5.0,
    request_id: str | None = None,
) -> SyncAuthClient:
    """A ``SyncAuthClient`` on a channel of its own, built as by ``connect()``;
    ``with connect_sync(...) as client:`` closes it."""
    channel = channels.sync_channel(
        target, tls=tls, ca_file=ca_file, cert_file=cert_file, key_file=key_file
    )
    return SyncAuthClient(
        channel, api_key=api_key, timeout=timeout, request_id=request_id, owns_channel=True
    )
