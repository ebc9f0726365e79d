"""Async client of ``ameli.auth.v1.AuthService`` with typed exceptions.

Every refusal of the service is a gRPC status carrying, AIP-193 style, a
``google.rpc.ErrorInfo``, a ``google.rpc.LocalizedMessage`` in fr-FR and, per
case, RetryInfo, QuotaFailure or BadRequest; ``AuthClient`` turns it into one
``AuthServiceError`` subclass per family (``InvalidInput``, ``WrongEntry``,
``Locked``, ``LoginRefused``, ``NotFound`` / ``AccountNotFound``,
``CallerNotAllowed``, ``ServiceUnavailable``), so a portal can branch on the
exception type and show ``error.message`` as is. The codec and the family tree
live in ``ameli.auth.errors``, which the server uses to build its statuses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from ameli.auth.errors import (
    ERROR_DOMAIN,
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
    "WrongEntry",
    "error_from_rpc_error",
]

_Response = TypeVar("_Response", bound=Message)


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
