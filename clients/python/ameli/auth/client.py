"""Async client of ``ameli.auth.v1.AuthService`` with typed exceptions.

Every refusal of the service is a gRPC status carrying, AIP-193 style, a
``google.rpc.ErrorInfo`` (reason, domain ``auth.ameli.fr``, metadata
``attemptsRemaining`` / ``lockExpireTime``), a ``google.rpc.LocalizedMessage``
in fr-FR and, for locks and the quota, a ``google.rpc.RetryInfo``.
``AuthClient`` turns it into one ``AuthServiceError`` subclass per family, so a
portal can branch on the exception type and show ``error.message`` as is.

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

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeVar, cast

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

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
    "WrongEntry",
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


class AuthClient:
    """Async client of AuthService over a ``grpc.aio.Channel`` owned by the caller.

    Each method takes keyword arguments, returns the response message and
    raises an ``AuthServiceError`` subclass on any refusal. ``api_key`` is sent
    as ``authorization: Bearer <key>``; ``timeout`` (seconds) is the deadline of
    every call (``None``: no deadline).
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        api_key: str | None = None,
        timeout: float | None = 10.0,
    ) -> None:
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self._timeout = timeout

    async def check_credentials(
        self,
        *,
        nir: str,
        password: str,
        channel: auth_pb2.Channel.ValueType = auth_pb2.CHANNEL_WEB,
        device_token: str = "",
        client_ip: str = "",
        user_agent: str = "",
    ) -> auth_pb2.CheckCredentialsResponse:
        """First step: NIR + password (or provisional code); see ``result`` oneof."""
        request = auth_pb2.CheckCredentialsRequest(
            nir=nir,
            password=password,
            channel=channel,
            device_token=device_token,
            client=auth_pb2.ClientInfo(ip=client_ip, user_agent=user_agent),
        )
        return await self._call(
            self._stub.CheckCredentials, request, auth_pb2.CheckCredentialsResponse
        )

    async def request_code(
        self, *, login_id: str, client_ip: str = "", user_agent: str = ""
    ) -> auth_pb2.RequestCodeResponse:
        """Sends a new security code by email for the login (counted in the quota)."""
        request = auth_pb2.RequestCodeRequest(
            login_id=login_id, client=auth_pb2.ClientInfo(ip=client_ip, user_agent=user_agent)
        )
        return await self._call(self._stub.RequestCode, request, auth_pb2.RequestCodeResponse)

    async def verify_code(
        self,
        *,
        login_id: str,
        code: str,
        trust_device: bool = False,
        client_ip: str = "",
        user_agent: str = "",
    ) -> auth_pb2.VerifyCodeResponse:
        """Second step: the emailed code; ``trust_device`` asks for a device token."""
        request = auth_pb2.VerifyCodeRequest(
            login_id=login_id,
            code=code,
            trust_device=trust_device,
            client=auth_pb2.ClientInfo(ip=client_ip, user_agent=user_agent),
        )
        return await self._call(self._stub.VerifyCode, request, auth_pb2.VerifyCodeResponse)

    async def get_lock_status(self, *, nir: str) -> auth_pb2.GetLockStatusResponse:
        """The active locks and failure counters of a NIR."""
        request = auth_pb2.GetLockStatusRequest(nir=nir)
        return await self._call(self._stub.GetLockStatus, request, auth_pb2.GetLockStatusResponse)

    async def reset_account(
        self, *, nir: str, advisor_id: str, reason: str, send_provisional_code: bool = False
    ) -> auth_pb2.ResetAccountResponse:
        """Advisor only: deletes the account of the NIR, optionally texting a provisional code."""
        request = auth_pb2.ResetAccountRequest(
            nir=nir,
            advisor_id=advisor_id,
            reason=reason,
            send_provisional_code=send_provisional_code,
        )
        return await self._call(self._stub.ResetAccount, request, auth_pb2.ResetAccountResponse)

    async def unlock_account(
        self, *, nir: str, advisor_id: str, reason: str
    ) -> auth_pb2.UnlockAccountResponse:
        """Advisor only: lifts every lock, counter and the quota of the NIR; the account stays."""
        request = auth_pb2.UnlockAccountRequest(nir=nir, advisor_id=advisor_id, reason=reason)
        return await self._call(self._stub.UnlockAccount, request, auth_pb2.UnlockAccountResponse)

    async def get_account(self, *, nir: str) -> auth_pb2.GetAccountResponse:
        """Advisor only: the account of the NIR (masked contacts, RFI affiliation, trusted
        devices, locks, counters); ``AccountNotFound`` when the NIR has no account."""
        request = auth_pb2.GetAccountRequest(nir=nir)
        return await self._call(self._stub.GetAccount, request, auth_pb2.GetAccountResponse)

    async def revoke_trusted_devices(
        self, *, nir: str, advisor_id: str, reason: str
    ) -> auth_pb2.RevokeTrustedDevicesResponse:
        """Advisor only: every trusted device of the NIR's account asks for a code again;
        the account stays. ``AccountNotFound`` when the NIR has no account."""
        request = auth_pb2.RevokeTrustedDevicesRequest(
            nir=nir, advisor_id=advisor_id, reason=reason
        )
        return await self._call(
            self._stub.RevokeTrustedDevices, request, auth_pb2.RevokeTrustedDevicesResponse
        )

    async def _call(
        self,
        method: Callable[..., Awaitable[object]],
        request: Message,
        response_type: type[_Response],
    ) -> _Response:
        """Invoke one unary RPC with the key and deadline, translating refusals."""
        try:
            response = await method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc_error(error) from error
        if not isinstance(response, response_type):  # the stub deserialises response_type
            raise TypeError(f"expected {response_type.__name__}, got {type(response).__name__}")
        return response
