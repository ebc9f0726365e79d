"""The one codec of AuthService's refusals (AIP-193 rich status), shared by server and clients.

Every refusal is a gRPC status carrying a ``google.rpc.ErrorInfo`` (reason =
the ``ErrorReason`` name without its prefix, domain ``auth.ameli.fr``,
lowerCamel metadata ``attemptsRemaining`` / ``lockExpireTime``), a
``google.rpc.LocalizedMessage`` in fr-FR and, per case, ``RetryInfo``,
``QuotaFailure`` and ``BadRequest``. The server builds its statuses with
``encode`` and the clients read them with ``decode`` / ``error_from_rpc_error``,
so the two sides cannot drift: the reason table, the metadata keys and the
locale live here only.

The exception family (reasons are ``ErrorInfo.reason``; a status without one
is classified by its gRPC code)::

    AuthServiceError                  any refusal, or a status of another origin
    ├── InvalidInput                  INVALID_NIR, INVALID_REQUEST (field_violations)
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
                                      UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED and
                                      RESOURCE_EXHAUSTED without ErrorInfo (the transport)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "ATTEMPTS_REMAINING_KEY",
    "CALLER_NOT_ALLOWED_MESSAGE",
    "ERROR_DOMAIN",
    "INTERNAL_MESSAGE",
    "LOCK_EXPIRE_TIME_KEY",
    "MESSAGE_LOCALE",
    "REASONS",
    "REQUEST_ID_KEY",
    "UNAVAILABLE_MESSAGE",
    "AccountNotFound",
    "AuthServiceError",
    "CallerNotAllowed",
    "FieldViolation",
    "InvalidInput",
    "Locked",
    "LoginRefused",
    "NotFound",
    "QuotaViolation",
    "ReasonEntry",
    "ServiceUnavailable",
    "WrongEntry",
    "decode",
    "encode",
    "encode_failure",
    "error_from_rpc_error",
    "rich_status",
]

ERROR_DOMAIN = "auth.ameli.fr"
"""``ErrorInfo.domain`` of the errors raised by AuthService."""
MESSAGE_LOCALE = "fr-FR"
"""``LocalizedMessage.locale`` of the texts to show to the insured person."""
ATTEMPTS_REMAINING_KEY = "attemptsRemaining"
"""``ErrorInfo.metadata`` key of the tries left after a wrong entry (decimal)."""
LOCK_EXPIRE_TIME_KEY = "lockExpireTime"
"""``ErrorInfo.metadata`` key of a lock's end (RFC 3339, UTC, rounded up to the second)."""
REQUEST_ID_KEY = "x-request-id"
"""Metadata key of the request id, which the server echoes in the initial metadata."""
STATUS_DETAILS_KEY = "grpc-status-details-bin"

UNAVAILABLE_MESSAGE = (
    "Le service est momentanément indisponible. Merci de réessayer dans quelques instants."
)
"""Shown when the service cannot be reached or did not answer in time."""
CALLER_NOT_ALLOWED_MESSAGE = "L'application appelante n'est pas autorisée à utiliser ce service."
"""Shown when a status refuses the calling application without saying more."""
INTERNAL_MESSAGE = "Une erreur technique est survenue. Merci de réessayer dans quelques instants."
"""Shown for any other failure that carries no French text."""

_Detail = TypeVar("_Detail", bound=Message)


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (a ``google.rpc.BadRequest`` entry)."""

    field: str
    description: str


@dataclass(frozen=True)
class QuotaViolation:
    """One exceeded quota (a ``google.rpc.QuotaFailure`` entry)."""

    subject: str
    description: str


class AuthServiceError(Exception):
    """A refusal of AuthService (or a failure to reach it).

    ``reason`` is the ``ErrorReason`` name without its prefix (``"INVALID_CODE"``),
    empty when the status carries no ErrorInfo of the ``auth.ameli.fr`` domain;
    ``message`` is the fr-FR text to show to the insured person; ``request_id``
    the ``x-request-id`` the server echoed (or the one the call sent), for the
    support; ``status`` the whole ``google.rpc.Status`` when there is one.
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
        request_id: str | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
        quota_violations: tuple[QuotaViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.attempts_remaining = attempts_remaining
        self.lock_expire_time = lock_expire_time
        self.retry_delay = retry_delay
        self.status = status
        self.request_id = request_id
        self.field_violations = field_violations
        self.quota_violations = quota_violations

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r}, "
            f"message={self.message!r}, attempts_remaining={self.attempts_remaining!r}, "
            f"lock_expire_time={self.lock_expire_time!r}, retry_delay={self.retry_delay!r}, "
            f"request_id={self.request_id!r})"
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
    """The service or one of its dependencies is down, or did not answer in time: retry later."""


@dataclass(frozen=True)
class ReasonEntry:
    """How one reason travels: its gRPC code, its client family, a summary for developers
    (``google.rpc.Status.message``; the person sees the fr-FR LocalizedMessage)."""

    code: grpc.StatusCode
    family: type[AuthServiceError]
    summary: str


_FAILED = grpc.StatusCode.FAILED_PRECONDITION

REASONS: Mapping[str, ReasonEntry] = {
    "INVALID_NIR": ReasonEntry(grpc.StatusCode.INVALID_ARGUMENT, InvalidInput, "malformed NIR"),
    "INVALID_REQUEST": ReasonEntry(
        grpc.StatusCode.INVALID_ARGUMENT, InvalidInput, "malformed request"
    ),
    "INVALID_CREDENTIALS": ReasonEntry(
        grpc.StatusCode.UNAUTHENTICATED, WrongEntry, "wrong credentials"
    ),
    "INVALID_CODE": ReasonEntry(grpc.StatusCode.UNAUTHENTICATED, WrongEntry, "wrong security code"),
    "PASSWORD_ATTEMPTS_LOCKED": ReasonEntry(_FAILED, Locked, "locked after wrong passwords"),
    "CODE_ATTEMPTS_LOCKED": ReasonEntry(_FAILED, Locked, "locked after wrong codes"),
    "CODE_QUOTA_EXCEEDED": ReasonEntry(
        grpc.StatusCode.RESOURCE_EXHAUSTED, Locked, "security code quota exceeded"
    ),
    "CODE_EXPIRED": ReasonEntry(_FAILED, LoginRefused, "code expired"),
    "CODE_NOT_REQUESTED": ReasonEntry(_FAILED, LoginRefused, "no code requested for this login"),
    "EMAIL_NOT_VALIDATED": ReasonEntry(_FAILED, LoginRefused, "no validated email on the account"),
    "NOT_COVERED": ReasonEntry(_FAILED, LoginRefused, "not covered (RFI)"),
    "AFFILIATION_PENDING": ReasonEntry(_FAILED, LoginRefused, "affiliation pending (RFI)"),
    "LOGIN_NOT_FOUND": ReasonEntry(grpc.StatusCode.NOT_FOUND, NotFound, "unknown or expired login"),
    "ACCOUNT_NOT_FOUND": ReasonEntry(
        grpc.StatusCode.NOT_FOUND, AccountNotFound, "no account for this NIR"
    ),
    "CALLER_NOT_ALLOWED": ReasonEntry(
        grpc.StatusCode.PERMISSION_DENIED, CallerNotAllowed, "caller role may not call this method"
    ),
    "SERVICE_UNAVAILABLE": ReasonEntry(
        grpc.StatusCode.UNAVAILABLE, ServiceUnavailable, "a dependency is unavailable"
    ),
    "ACCOUNT_SUSPENDED": ReasonEntry(_FAILED, Locked, "suspended until an advisor unlocks it"),
    "CLIENT_THROTTLED": ReasonEntry(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        Locked,
        "too many wrong entries from this client address",
    ),
    "ATTEMPT_IN_PROGRESS": ReasonEntry(
        grpc.StatusCode.ABORTED,
        ServiceUnavailable,
        "attempts in flight make up the limit: retry",
    ),
}
"""Every ``ErrorReason`` of the contract (without prefix) → how it travels."""

# A status without an auth.ameli.fr ErrorInfo comes from the transport, a proxy, the
# client's own deadline or cancellation: it is classified by its code.
_FAMILY_BY_CODE: Mapping[grpc.StatusCode, type[AuthServiceError]] = {
    grpc.StatusCode.UNAVAILABLE: ServiceUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: ServiceUnavailable,
    grpc.StatusCode.CANCELLED: ServiceUnavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ServiceUnavailable,  # message too large, max streams
    grpc.StatusCode.UNAUTHENTICATED: CallerNotAllowed,
    grpc.StatusCode.PERMISSION_DENIED: CallerNotAllowed,
}

_DEFAULT_MESSAGES: Mapping[type[AuthServiceError], str] = {
    ServiceUnavailable: UNAVAILABLE_MESSAGE,
    CallerNotAllowed: CALLER_NOT_ALLOWED_MESSAGE,
}


# --- encode (the server) --------------------------------------------------------


def rich_status(
    reason: str,
    message: str,
    *,
    code: grpc.StatusCode | None = None,
    attempts_remaining: int | None = None,
    lock_expire_time: datetime | None = None,
    retry_delay: timedelta | None = None,
    quota_violations: Sequence[QuotaViolation] = (),
    field_violations: Sequence[FieldViolation] = (),
) -> status_pb2.Status:
    """The ``google.rpc.Status`` of a refusal, from plain values.

    ``code`` overrides the table (CALLER_NOT_ALLOWED without a key is UNAUTHENTICATED);
    ``lock_expire_time`` and ``retry_delay`` are rounded up to the second, so a client
    that waits that long never comes back before the lock ends.
    """
    entry = REASONS[reason]
    metadata: dict[str, str] = {}
    if attempts_remaining is not None:
        metadata[ATTEMPTS_REMAINING_KEY] = str(attempts_remaining)
    if lock_expire_time is not None:
        metadata[LOCK_EXPIRE_TIME_KEY] = _rfc3339(lock_expire_time)
    details: list[Message] = [
        error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata),
        error_details_pb2.LocalizedMessage(locale=MESSAGE_LOCALE, message=message),
    ]
    if retry_delay is not None:
        seconds = max(0, math.ceil(retry_delay.total_seconds()))
        details.append(
            error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds))
        )
    if quota_violations:
        violations = [
            error_details_pb2.QuotaFailure.Violation(subject=v.subject, description=v.description)
            for v in quota_violations
        ]
        details.append(error_details_pb2.QuotaFailure(violations=violations))
    if field_violations:
        fields = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in field_violations
        ]
        details.append(error_details_pb2.BadRequest(field_violations=fields))
    return _packed(code or entry.code, f"{reason}: {entry.summary}", details)


def encode(
    reason: str,
    message: str,
    *,
    code: grpc.StatusCode | None = None,
    attempts_remaining: int | None = None,
    lock_expire_time: datetime | None = None,
    retry_delay: timedelta | None = None,
    quota_violations: Sequence[QuotaViolation] = (),
    field_violations: Sequence[FieldViolation] = (),
) -> grpc.Status:
    """``rich_status`` as the ``grpc.Status`` that ``context.abort`` sends."""
    status = rich_status(
        reason,
        message,
        code=code,
        attempts_remaining=attempts_remaining,
        lock_expire_time=lock_expire_time,
        retry_delay=retry_delay,
        quota_violations=quota_violations,
        field_violations=field_violations,
    )
    sent: grpc.Status = rpc_status.to_status(status)
    return sent


def encode_failure(code: grpc.StatusCode, summary: str, message: str) -> grpc.Status:
    """A failure that is no refusal (an unexpected error): no ErrorInfo, the fr-FR text only."""
    localized = error_details_pb2.LocalizedMessage(locale=MESSAGE_LOCALE, message=message)
    sent: grpc.Status = rpc_status.to_status(_packed(code, summary, [localized]))
    return sent


def _packed(code: grpc.StatusCode, summary: str, details: Iterable[Message]) -> status_pb2.Status:
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=summary)
    for detail in details:
        status.details.add().Pack(detail)
    return status


def _rfc3339(moment: datetime) -> str:
    until = moment.astimezone(UTC)
    if until.microsecond:
        until = until.replace(microsecond=0) + timedelta(seconds=1)
    return until.isoformat().replace("+00:00", "Z")


# --- decode (the clients) -------------------------------------------------------


def error_from_rpc_error(error: grpc.RpcError, request_id: str | None = None) -> AuthServiceError:
    """The typed exception for a failed call (``grpc.aio.AioRpcError`` or a synchronous
    ``grpc.RpcError``), read from its rich status.

    The exception's ``request_id`` is the ``x-request-id`` the server echoed in the
    call's initial metadata, else the ``request_id`` given (what the call sent), else None.
    """
    call: Any = error  # both kinds of error are also the call, with these methods
    code = _called(call, "code") or grpc.StatusCode.UNKNOWN
    details = _called(call, "details")
    trailing = _called(call, "trailing_metadata") or ()
    echoed = _metadata_value(_called(call, "initial_metadata") or (), REQUEST_ID_KEY)
    return decode(code, details, trailing, request_id=echoed or request_id)


def decode(
    code: grpc.StatusCode,
    details: str | None,
    trailing_metadata: Iterable[tuple[str, str | bytes]] = (),
    *,
    request_id: str | None = None,
) -> AuthServiceError:
    """The typed exception for a status (its code, details and trailing metadata)."""
    status = _rich_status(code, details, trailing_metadata)
    info = next(
        (i for i in _details(status, error_details_pb2.ErrorInfo) if i.domain == ERROR_DOMAIN),
        None,
    )
    reason = info.reason if info is not None else ""
    entry = REASONS.get(reason)
    family = entry.family if entry else _FAMILY_BY_CODE.get(code, AuthServiceError)
    metadata = dict(info.metadata) if info is not None else {}
    retry = next(iter(_details(status, error_details_pb2.RetryInfo)), None)
    return family(
        code,
        reason,
        _message(status, family),
        attempts_remaining=_parse_int(metadata.get(ATTEMPTS_REMAINING_KEY)),
        lock_expire_time=_parse_time(metadata.get(LOCK_EXPIRE_TIME_KEY)),
        retry_delay=retry.retry_delay.ToTimedelta() if retry is not None else None,
        status=status,
        request_id=request_id,
        field_violations=tuple(
            FieldViolation(v.field, v.description)
            for bad in _details(status, error_details_pb2.BadRequest)
            for v in bad.field_violations
        ),
        quota_violations=tuple(
            QuotaViolation(v.subject, v.description)
            for quota in _details(status, error_details_pb2.QuotaFailure)
            for v in quota.violations
        ),
    )


def _called(call: Any, name: str) -> Any:
    """``call.<name>()``, or None when this error does not have it."""
    method = getattr(call, name, None)
    return method() if callable(method) else None


def _metadata_value(metadata: Iterable[tuple[str, str | bytes]], key: str) -> str | None:
    for name, value in metadata:
        if name == key and isinstance(value, str) and value:
            return value
    return None


def _rich_status(
    code: grpc.StatusCode, details: str | None, trailing_metadata: Iterable[tuple[str, str | bytes]]
) -> status_pb2.Status | None:
    """The ``grpc-status-details-bin`` trailer, if present and consistent with the call
    (as ``rpc_status.from_call`` checks: a status that disagrees is not trusted)."""
    for key, value in trailing_metadata:
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:  # a garbled trailer is no status
            return None
        if status.code != code.value[0] or status.message != (details or ""):
            return None
        return status
    return None


def _details(status: status_pb2.Status | None, detail_type: type[_Detail]) -> Iterator[_Detail]:
    """Every detail of ``detail_type`` packed in the status, in order."""
    if status is None:
        return
    for packed in status.details:
        if packed.Is(detail_type.DESCRIPTOR):
            detail = detail_type()
            packed.Unpack(detail)
            yield detail


def _message(status: status_pb2.Status | None, family: type[AuthServiceError]) -> str:
    """The fr-FR LocalizedMessage, else the family's French default."""
    for localized in _details(status, error_details_pb2.LocalizedMessage):
        if localized.locale == MESSAGE_LOCALE:
            text: str = localized.message
            return text
    return _DEFAULT_MESSAGES.get(family, INTERNAL_MESSAGE)


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
