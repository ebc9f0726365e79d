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

The exception family (reasons are ``ErrorInfo.reason``; a status without one
is classified by its gRPC code)::

    AuthServiceError                  any refusal, or a status of another origin
    ├── InvalidInput                  INVALID_NIR, INVALID_REQUEST
    ├── WrongEntry                    INVALID_CREDENTIALS, INVALID_CODE (attempts_remaining)
    ├── Locked                        PASSWORD_ATTEMPTS_LOCKED, CODE_ATTEMPTS_LOCKED,
    │                                 CODE_QUOTA_EXCEEDED, CLIENT_THROTTLED (lock_expire_time,
    │                                 retry_delay), ACCOUNT_SUSPENDED (no end: an advisor)
    ├── LoginRefused                  CODE_EXPIRED, CODE_NOT_REQUESTED, EMAIL_NOT_VALIDATED,
    │                                 NOT_COVERED, AFFILIATION_PENDING
    ├── NotFound                      LOGIN_NOT_FOUND
    │   └── AccountNotFound           ACCOUNT_NOT_FOUND (advisor RPCs: no account for the NIR)
    ├── CallerNotAllowed              CALLER_NOT_ALLOWED; UNAUTHENTICATED, PERMISSION_DENIED
    └── ServiceUnavailable            SERVICE_UNAVAILABLE, ATTEMPT_IN_PROGRESS (retry_delay);
                                      UNAVAILABLE, DEADLINE_EXCEEDED
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Generic, ParamSpec, Self, TypeVar, cast

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ameli.auth import channel as channels
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

ERROR_DOMAIN = "auth.ameli.fr"
"""``ErrorInfo.domain`` of the errors raised by AuthService."""

MESSAGE_LOCALE = "fr-FR"
UNAVAILABLE_MESSAGE = (
    "Le service est momentanément indisponible. Merci de réessayer dans quelques instants."
)
"""Shown when the service cannot be reached at all (no status from the server)."""

_Response = TypeVar("_Response", bound=Message)
_Detail = TypeVar("_Detail", bound=Message)


class AuthServiceError(Exception):
    """A refusal of AuthService (or a failure to reach it).

    ``reason`` is the ``ErrorReason`` name without its prefix (``"INVALID_CODE"``),
    empty when the status carries no ErrorInfo of the ``auth.ameli.fr`` domain;
    ``message`` is the fr-FR text to show to the insured person; ``status`` the
    whole ``google.rpc.Status`` (QuotaFailure, BadRequest...) when there is one.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        attempts_remaining: int | None = None,
        lock_expire_time: datetime | None = None,
        retry_delay: timedelta | None = None,
        *,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.attempts_remaining = attempts_remaining
        self.lock_expire_time = lock_expire_time
        self.retry_delay = retry_delay
        self.status = status
        self.request_id: str | None = None  # the x-request-id of the failed call (the clients)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r}, "
            f"message={self.message!r}, attempts_remaining={self.attempts_remaining!r}, "
            f"lock_expire_time={self.lock_expire_time!r}, retry_delay={self.retry_delay!r})"
        )


class InvalidInput(AuthServiceError):
    """The request is malformed: INVALID_NIR, INVALID_REQUEST."""


class WrongEntry(AuthServiceError):
    """Wrong password or code; ``attempts_remaining`` says how many tries are left."""


class Locked(AuthServiceError):
    """The NIR is locked until ``lock_expire_time`` (wrong entries or code quota)."""


class LoginRefused(AuthServiceError):
    """The login cannot go on: code expired or not requested, no email, not covered."""


class NotFound(AuthServiceError):
    """Unknown or expired login id; ``AccountNotFound`` for a NIR without an account."""


class AccountNotFound(NotFound):
    """No ameli account for the NIR (GetAccount, ResetAccount, RevokeTrustedDevices)."""


class CallerNotAllowed(AuthServiceError):
    """The calling application's key is missing, unknown, or may not call this RPC."""


class ServiceUnavailable(AuthServiceError):
    """The service or one of its dependencies is down: retry later."""


_FAMILY_BY_REASON: dict[str, type[AuthServiceError]] = {
    "INVALID_NIR": InvalidInput,
    "INVALID_REQUEST": InvalidInput,
    "INVALID_CREDENTIALS": WrongEntry,
    "INVALID_CODE": WrongEntry,
    "PASSWORD_ATTEMPTS_LOCKED": Locked,
    "CODE_ATTEMPTS_LOCKED": Locked,
    "CODE_QUOTA_EXCEEDED": Locked,
    "CODE_EXPIRED": LoginRefused,
    "CODE_NOT_REQUESTED": LoginRefused,
    "EMAIL_NOT_VALIDATED": LoginRefused,
    "NOT_COVERED": LoginRefused,
    "AFFILIATION_PENDING": LoginRefused,
    "LOGIN_NOT_FOUND": NotFound,
    "ACCOUNT_NOT_FOUND": AccountNotFound,
    "CALLER_NOT_ALLOWED": CallerNotAllowed,
    "SERVICE_UNAVAILABLE": ServiceUnavailable,
    "ACCOUNT_SUSPENDED": Locked,
    "CLIENT_THROTTLED": Locked,
    "ATTEMPT_IN_PROGRESS": ServiceUnavailable,
}

# Every outcome of the insured person carries an auth.ameli.fr ErrorInfo; a status
# without one comes from the transport, a proxy or a deadline: classify it by code.
_FAMILY_BY_CODE: dict[grpc.StatusCode, type[AuthServiceError]] = {
    grpc.StatusCode.UNAVAILABLE: ServiceUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: ServiceUnavailable,
    grpc.StatusCode.UNAUTHENTICATED: CallerNotAllowed,
    grpc.StatusCode.PERMISSION_DENIED: CallerNotAllowed,
}


def error_from_rpc_error(error: grpc.aio.AioRpcError) -> AuthServiceError:
    """The typed exception for a failed call, read from its rich status."""
    code: grpc.StatusCode = error.code()
    status = _rich_status(error)
    info = _error_info(status)
    reason = info.reason if info is not None else ""
    family = _FAMILY_BY_REASON.get(reason) or _FAMILY_BY_CODE.get(code, AuthServiceError)
    metadata = dict(info.metadata) if info is not None else {}
    return family(
        code,
        reason,
        _message(status, error, family),
        attempts_remaining=_parse_int(metadata.get("attemptsRemaining")),
        lock_expire_time=_parse_time(metadata.get("lockExpireTime")),
        retry_delay=_retry_delay(status),
        status=status,
    )


def _rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The ``grpc-status-details-bin`` trailer, if present and consistent."""
    try:
        # from_call only reads code(), details() and trailing_metadata(), which the
        # AioRpcError exception has too (its stubs type it for grpc.Call).
        status = rpc_status.from_call(cast("grpc.Call", error))
    except ValueError:  # code or message disagree with the trailer: do not trust it
        return None
    return status if isinstance(status, status_pb2.Status) else None


def _details(status: status_pb2.Status | None, detail_type: type[_Detail]) -> Iterable[_Detail]:
    """Every detail of ``detail_type`` packed in the status, in order."""
    if status is None:
        return
    for packed in status.details:
        if packed.Is(detail_type.DESCRIPTOR):
            detail = detail_type()
            packed.Unpack(detail)
            yield detail


def _error_info(status: status_pb2.Status | None) -> error_details_pb2.ErrorInfo | None:
    infos = _details(status, error_details_pb2.ErrorInfo)
    return next((info for info in infos if info.domain == ERROR_DOMAIN), None)


def _message(
    status: status_pb2.Status | None,
    error: grpc.aio.AioRpcError,
    family: type[AuthServiceError],
) -> str:
    """The fr-FR LocalizedMessage, else a French default or the status details."""
    messages = list(_details(status, error_details_pb2.LocalizedMessage))
    french = [m for m in messages if m.locale == MESSAGE_LOCALE]
    if french or messages:
        text: str = (french or messages)[0].message
        return text
    if family is ServiceUnavailable:
        return UNAVAILABLE_MESSAGE
    details: str | None = error.details()
    return details or ""


def _retry_delay(status: status_pb2.Status | None) -> timedelta | None:
    retry = next(iter(_details(status, error_details_pb2.RetryInfo)), None)
    return retry.retry_delay.ToTimedelta() if retry is not None else None


def _parse_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp as an aware UTC datetime (None if absent or malformed)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


REQUEST_ID_KEY = "x-request-id"
"""Metadata key of the request id, echoed by the service and written in its logs and audit."""

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
        # A sync call's error is a grpc.Call too: code(), details(), trailing_metadata().
        refusal = error_from_rpc_error(cast("grpc.aio.AioRpcError", error))
        refusal.request_id = request_id
        return refusal

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
