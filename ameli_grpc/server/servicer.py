"""``AuthServicer``: proto ↔ domain translation only; every rule lives in the domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import grpc
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ameli_grpc.domain.advisor import AdvisorUseCases
from ameli_grpc.domain.errors import AuthError, ErrorReason, FieldViolation
from ameli_grpc.domain.login import LoginUseCases
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.model import Affiliation, AuthMethod, Channel, LockScope
from ameli_grpc.domain.outcomes import (
    AccountSetupRequired,
    Authenticated,
    ClientInfo,
    CodeRequired,
    CredentialsInput,
    LockStatus,
    TrustedDeviceView,
)
from ameli_grpc.server.callers import current_caller

_CHANNELS = {
    auth_pb2.CHANNEL_WEB: Channel.WEB,
    auth_pb2.CHANNEL_MOBILE_APP: Channel.MOBILE_APP,
    auth_pb2.CHANNEL_FRANCECONNECT: Channel.FRANCECONNECT,
}
_METHODS = {
    AuthMethod.PASSWORD: auth_pb2.AUTH_METHOD_PASSWORD,
    AuthMethod.EMAIL_CODE: auth_pb2.AUTH_METHOD_EMAIL_CODE,
    AuthMethod.TRUSTED_DEVICE: auth_pb2.AUTH_METHOD_TRUSTED_DEVICE,
    AuthMethod.PROVISIONAL_CODE: auth_pb2.AUTH_METHOD_PROVISIONAL_CODE,
}
_SCOPES = {
    LockScope.ALL: auth_pb2.LOCK_SCOPE_ALL,
    LockScope.UNTRUSTED: auth_pb2.LOCK_SCOPE_UNTRUSTED_DEVICES,
    LockScope.TRUSTED: auth_pb2.LOCK_SCOPE_TRUSTED_DEVICES,
}

_AFFILIATIONS = {
    Affiliation.AFFILIATED: auth_pb2.AFFILIATION_AFFILIATED,
    Affiliation.PENDING: auth_pb2.AFFILIATION_PENDING,
    Affiliation.NOT_COVERED: auth_pb2.AFFILIATION_NOT_COVERED,
}

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"  # generic in the stubs only


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """The portal's RPCs go to the login use cases, the advisor's to theirs."""

    def __init__(self, login: LoginUseCases, advisor: AdvisorUseCases) -> None:
        self._login = login
        self._advisor = advisor

    async def CheckCredentials(  # noqa: N802 - generated interface
        self, request: auth_pb2.CheckCredentialsRequest, context: Context
    ) -> auth_pb2.CheckCredentialsResponse:
        channel = _channel(request.channel)
        if not current_caller.get().may_claim(channel):  # before anything is counted
            raise AuthError(ErrorReason.CALLER_NOT_ALLOWED, Messages.CALLER_NOT_ALLOWED)
        outcome = await self._login.check_credentials(
            CredentialsInput(
                nir=request.nir,
                password=request.password,
                channel=channel,
                device_token=request.device_token,
                client_ip=request.client.ip,
                user_agent=request.client.user_agent,
            )
        )
        if isinstance(outcome, CodeRequired):
            return auth_pb2.CheckCredentialsResponse(
                code_required=auth_pb2.CodeRequired(
                    login_id=outcome.login_id,
                    masked_email=outcome.masked_email,
                    login_expire_time=_timestamp(outcome.login_expire_time),
                )
            )
        if isinstance(outcome, AccountSetupRequired):
            return auth_pb2.CheckCredentialsResponse(
                account_setup_required=auth_pb2.AccountSetupRequired(
                    setup_token=outcome.setup_token
                )
            )
        return auth_pb2.CheckCredentialsResponse(authenticated=_authenticated(outcome))

    async def RequestCode(  # noqa: N802 - generated interface
        self, request: auth_pb2.RequestCodeRequest, context: Context
    ) -> auth_pb2.RequestCodeResponse:
        sent = await self._login.request_code(request.login_id, _client(request.client))
        return auth_pb2.RequestCodeResponse(
            masked_email=sent.masked_email,
            code_expire_time=_timestamp(sent.code_expire_time),
            codes_remaining=sent.codes_remaining,
        )

    async def VerifyCode(  # noqa: N802 - generated interface
        self, request: auth_pb2.VerifyCodeRequest, context: Context
    ) -> auth_pb2.VerifyCodeResponse:
        verified = await self._login.verify_code(
            request.login_id, request.code, request.trust_device, _client(request.client)
        )
        response = auth_pb2.VerifyCodeResponse(authenticated=_authenticated(verified.authenticated))
        if verified.device_token and verified.device_trust_expire_time:
            response.device_token = verified.device_token
            response.device_trust_expire_time.CopyFrom(
                _timestamp(verified.device_trust_expire_time)
            )
        return response

    async def GetLockStatus(  # noqa: N802 - generated interface
        self, request: auth_pb2.GetLockStatusRequest, context: Context
    ) -> auth_pb2.GetLockStatusResponse:
        status = await self._advisor.get_lock_status(request.nir)
        return auth_pb2.GetLockStatusResponse(
            locked=status.locked,
            locks=_locks(status),
            password_failures=status.password_failures,
            code_failures=status.code_failures,
            codes_sent_in_window=status.codes_sent_in_window,
        )

    async def ResetAccount(  # noqa: N802 - generated interface
        self, request: auth_pb2.ResetAccountRequest, context: Context
    ) -> auth_pb2.ResetAccountResponse:
        reset = await self._advisor.reset_account(
            request.nir, request.advisor_id, request.reason, request.send_provisional_code
        )
        response = auth_pb2.ResetAccountResponse(
            reset_time=_timestamp(reset.reset_time),
            provisional_code_sent=reset.provisional_code_sent,
            masked_phone=reset.masked_phone,
        )
        if reset.provisional_code_expire_time is not None:
            response.provisional_code_expire_time.CopyFrom(
                _timestamp(reset.provisional_code_expire_time)
            )
        return response

    async def UnlockAccount(  # noqa: N802 - generated interface
        self, request: auth_pb2.UnlockAccountRequest, context: Context
    ) -> auth_pb2.UnlockAccountResponse:
        unlocked = await self._advisor.unlock_account(
            request.nir, request.advisor_id, request.reason
        )
        return auth_pb2.UnlockAccountResponse(
            unlock_time=_timestamp(unlocked.unlock_time), locks_cleared=unlocked.locks_cleared
        )

    async def GetAccount(  # noqa: N802 - generated interface
        self, request: auth_pb2.GetAccountRequest, context: Context
    ) -> auth_pb2.GetAccountResponse:
        details = await self._advisor.get_account(request.nir)
        status = details.lock_status
        return auth_pb2.GetAccountResponse(
            masked_email=details.masked_email,
            email_validated=details.email_validated,
            masked_phone=details.masked_phone,
            affiliation=_AFFILIATIONS[details.affiliation],
            trusted_devices=[_trusted_device(device) for device in details.trusted_devices],
            locks=_locks(status),
            suspended=status.suspended,
            password_failures=status.password_failures,
            code_failures=status.code_failures,
            codes_sent_in_window=status.codes_sent_in_window,
        )

    async def RevokeTrustedDevices(  # noqa: N802 - generated interface
        self, request: auth_pb2.RevokeTrustedDevicesRequest, context: Context
    ) -> auth_pb2.RevokeTrustedDevicesResponse:
        revoked = await self._advisor.revoke_trusted_devices(
            request.nir, request.advisor_id, request.reason
        )
        return auth_pb2.RevokeTrustedDevicesResponse(
            revoke_time=_timestamp(revoked.revoke_time), revoked_count=revoked.revoked_count
        )


def _client(client: auth_pb2.ClientInfo) -> ClientInfo:
    return ClientInfo(ip=client.ip, user_agent=client.user_agent)  # checked by the domain


def _channel(value: auth_pb2.Channel.ValueType) -> Channel:
    """Unspecified is the web (the strictest); a value the contract does not know is refused."""
    if value == auth_pb2.CHANNEL_UNSPECIFIED:
        return Channel.WEB
    if value not in _CHANNELS:
        raise AuthError(
            ErrorReason.INVALID_REQUEST,
            Messages.INVALID_REQUEST,
            violations=(FieldViolation("channel", Messages.CHANNEL_FORMAT),),
        )
    return _CHANNELS[value]


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _locks(status: LockStatus) -> list[auth_pb2.Lock]:
    """The locks of GetLockStatus and GetAccount alike, the one that governs first."""
    return [
        auth_pb2.Lock(
            reason=auth_pb2.ErrorReason.Value(f"ERROR_REASON_{view.reason.value}"),
            # a suspension has no end: the field stays unset
            expire_time=_timestamp(view.expire_time) if view.expire_time else None,
            message=view.message,
            scope=_SCOPES[view.scope],
        )
        for view in status.locks
    ]


def _trusted_device(device: TrustedDeviceView) -> auth_pb2.TrustedDevice:
    return auth_pb2.TrustedDevice(
        create_time=_timestamp(device.create_time),
        expire_time=_timestamp(device.expire_time),
        # never used yet: the field stays unset
        last_use_time=_timestamp(device.last_use_time) if device.last_use_time else None,
    )


def _authenticated(outcome: Authenticated) -> auth_pb2.Authenticated:
    return auth_pb2.Authenticated(
        account_id=outcome.account_id,
        methods=[_METHODS[method] for method in outcome.methods],
        authenticate_time=_timestamp(outcome.authenticate_time),
    )
