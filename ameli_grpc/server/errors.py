"""A domain refusal as the plain values of the client package's codec (``ameli.auth.errors``).

The reason table, the ErrorInfo metadata keys, the locale and the packing of the
rich status (AIP-193) live once, in the codec that the clients decode with; this
module only says which values of an ``AuthError`` go where.
"""

from __future__ import annotations

from datetime import datetime

import grpc
from ameli.auth import errors as codec

from ameli_grpc.domain.errors import AuthError
from ameli_grpc.domain.messages import Messages

QUOTA_SUBJECT = "nir"


def refusal_status(
    error: AuthError, now: datetime, code: grpc.StatusCode | None = None
) -> grpc.Status:
    """The gRPC status of a refusal: ErrorInfo, LocalizedMessage, and per case RetryInfo,
    QuotaFailure or BadRequest. ``code`` overrides the table (CALLER_NOT_ALLOWED without a key).

    RetryInfo is the time left on the lock, or else the error's own ``retry_after``
    (a shed request).
    """
    wait = error.retry_after if error.lock_expire_time is None else error.lock_expire_time - now
    quota = (
        [codec.QuotaViolation(QUOTA_SUBJECT, error.quota_violation)]
        if error.quota_violation is not None
        else []
    )
    return codec.encode(
        error.reason.value,
        error.message,
        code=code,
        attempts_remaining=error.attempts_remaining,
        lock_expire_time=error.lock_expire_time,
        retry_delay=wait,
        quota_violations=quota,
        field_violations=[codec.FieldViolation(v.field, v.description) for v in error.violations],
    )


def internal_status() -> grpc.Status:
    """An unexpected failure: nothing of its cause reaches the caller."""
    return codec.encode_failure(grpc.StatusCode.INTERNAL, "internal error", Messages.INTERNAL)
