"""The one table from an error reason to its gRPC status and rich details (AIP-193)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ameli_grpc.domain.errors import AuthError, ErrorReason
from ameli_grpc.domain.messages import Messages

ERROR_DOMAIN = "auth.ameli.fr"
LOCALE = "fr-FR"


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    summary: str  # for developers (google.rpc.Status.message); the person sees the fr-FR text


REFUSALS: dict[ErrorReason, Refusal] = {
    ErrorReason.INVALID_NIR: Refusal(grpc.StatusCode.INVALID_ARGUMENT, "malformed NIR"),
    ErrorReason.INVALID_REQUEST: Refusal(grpc.StatusCode.INVALID_ARGUMENT, "malformed request"),
    ErrorReason.INVALID_CREDENTIALS: Refusal(grpc.StatusCode.UNAUTHENTICATED, "wrong credentials"),
    ErrorReason.INVALID_CODE: Refusal(grpc.StatusCode.UNAUTHENTICATED, "wrong security code"),
    ErrorReason.PASSWORD_ATTEMPTS_LOCKED: Refusal(
        grpc.StatusCode.FAILED_PRECONDITION, "locked after wrong passwords"
    ),
    ErrorReason.CODE_ATTEMPTS_LOCKED: Refusal(
        grpc.StatusCode.FAILED_PRECONDITION, "locked after wrong codes"
    ),
    ErrorReason.CODE_QUOTA_EXCEEDED: Refusal(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "security code quota exceeded"
    ),
    ErrorReason.CODE_EXPIRED: Refusal(grpc.StatusCode.FAILED_PRECONDITION, "code expired"),
    ErrorReason.CODE_NOT_REQUESTED: Refusal(
        grpc.StatusCode.FAILED_PRECONDITION, "no code requested for this login"
    ),
    ErrorReason.EMAIL_NOT_VALIDATED: Refusal(
        grpc.StatusCode.FAILED_PRECONDITION, "no validated email on the account"
    ),
    ErrorReason.NOT_COVERED: Refusal(grpc.StatusCode.FAILED_PRECONDITION, "not covered (RFI)"),
    ErrorReason.AFFILIATION_PENDING: Refusal(
        grpc.StatusCode.FAILED_PRECONDITION, "affiliation pending (RFI)"
    ),
    ErrorReason.LOGIN_NOT_FOUND: Refusal(grpc.StatusCode.NOT_FOUND, "unknown or expired login"),
    ErrorReason.ACCOUNT_NOT_FOUND: Refusal(grpc.StatusCode.NOT_FOUND, "no account for this NIR"),
    ErrorReason.CALLER_NOT_ALLOWED: Refusal(
        grpc.StatusCode.PERMISSION_DENIED, "caller role may not call this method"
    ),
    ErrorReason.SERVICE_UNAVAILABLE: Refusal(
        grpc.StatusCode.UNAVAILABLE, "a dependency is unavailable"
    ),
    ErrorReason.ACCOUNT_SUSPENDED: Refusal(
        grpc.StatusCode.FAILED_PRECONDITION, "suspended until an advisor unlocks it"
    ),
    ErrorReason.CLIENT_THROTTLED: Refusal(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "too many wrong entries from this client address"
    ),
    ErrorReason.ATTEMPT_IN_PROGRESS: Refusal(
        grpc.StatusCode.ABORTED, "attempts in flight make up the limit: retry"
    ),
}


def refusal_status(
    error: AuthError, now: datetime, code: grpc.StatusCode | None = None
) -> grpc.Status:
    """The gRPC status of a refusal: ErrorInfo, LocalizedMessage, and per case RetryInfo,
    QuotaFailure or BadRequest. ``code`` overrides the table (CALLER_NOT_ALLOWED without a key).

    RetryInfo is the time left on the lock, or else the error's own ``retry_after``
    (a shed request).
    """
    refusal = REFUSALS[error.reason]
    status_code = code or refusal.code
    details = [
        _error_info(error),
        error_details_pb2.LocalizedMessage(locale=LOCALE, message=error.message),
    ]
    wait = error.retry_after if error.lock_expire_time is None else error.lock_expire_time - now
    if wait is not None:
        details.append(error_details_pb2.RetryInfo(retry_delay=_delay(wait)))
    if error.quota_violation is not None:
        details.append(_quota_failure(error.quota_violation))
    if error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
    return _status(status_code, f"{error.reason.value}: {refusal.summary}", details)


def internal_status() -> grpc.Status:
    """An unexpected failure: nothing of its cause reaches the caller."""
    message = error_details_pb2.LocalizedMessage(locale=LOCALE, message=Messages.INTERNAL)
    return _status(grpc.StatusCode.INTERNAL, "internal error", [message])


def _error_info(error: AuthError) -> error_details_pb2.ErrorInfo:
    metadata: dict[str, str] = {}
    if error.attempts_remaining is not None:
        metadata["attemptsRemaining"] = str(error.attempts_remaining)
    if error.lock_expire_time is not None:
        # rounded up to the second, like RetryInfo: never before the lock really ends
        until = error.lock_expire_time.astimezone(UTC)
        if until.microsecond:
            until = until.replace(microsecond=0) + timedelta(seconds=1)
        metadata["lockExpireTime"] = until.isoformat().replace("+00:00", "Z")
    return error_details_pb2.ErrorInfo(
        reason=error.reason.value, domain=ERROR_DOMAIN, metadata=metadata
    )


def _quota_failure(description: str) -> error_details_pb2.QuotaFailure:
    violation = error_details_pb2.QuotaFailure.Violation(subject="nir", description=description)
    return error_details_pb2.QuotaFailure(violations=[violation])


def _delay(wait: timedelta) -> duration_pb2.Duration:
    """Whole seconds, rounded up: a client that waits that long never comes back too early."""
    return duration_pb2.Duration(seconds=max(0, math.ceil(wait.total_seconds())))


def _status(code: grpc.StatusCode, message: str, details: list[object]) -> grpc.Status:
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    for detail in details:
        status.details.add().Pack(detail)
    packed: grpc.Status = rpc_status.to_status(status)
    return packed
