"""Why a request is refused: one reason per refusal, with what the caller needs to show it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta


class ErrorReason(enum.Enum):
    """The refusal reasons of the contract (``ameli.auth.v1.ErrorReason`` without prefix)."""

    INVALID_NIR = "INVALID_NIR"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    INVALID_CODE = "INVALID_CODE"
    PASSWORD_ATTEMPTS_LOCKED = "PASSWORD_ATTEMPTS_LOCKED"
    CODE_ATTEMPTS_LOCKED = "CODE_ATTEMPTS_LOCKED"
    CODE_QUOTA_EXCEEDED = "CODE_QUOTA_EXCEEDED"
    CODE_EXPIRED = "CODE_EXPIRED"
    CODE_NOT_REQUESTED = "CODE_NOT_REQUESTED"
    EMAIL_NOT_VALIDATED = "EMAIL_NOT_VALIDATED"
    NOT_COVERED = "NOT_COVERED"
    AFFILIATION_PENDING = "AFFILIATION_PENDING"
    LOGIN_NOT_FOUND = "LOGIN_NOT_FOUND"
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    CALLER_NOT_ALLOWED = "CALLER_NOT_ALLOWED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INVALID_REQUEST = "INVALID_REQUEST"
    ACCOUNT_SUSPENDED = "ACCOUNT_SUSPENDED"
    CLIENT_THROTTLED = "CLIENT_THROTTLED"
    ATTEMPT_IN_PROGRESS = "ATTEMPT_IN_PROGRESS"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (becomes a ``google.rpc.BadRequest`` entry)."""

    field: str
    description: str


class AuthError(Exception):
    """A refusal of the login rules.

    ``message`` is the French text shown to the insured person;
    ``attempts_remaining`` is set on wrong entries, ``lock_expire_time`` on
    locks and the quota, ``quota_violation`` (the rule, in French) on the
    quota, ``violations`` on malformed input, ``retry_after`` where trying again
    soon may succeed and no lock tells when (an attempt in flight, a shed request).
    """

    def __init__(
        self,
        reason: ErrorReason,
        message: str,
        *,
        attempts_remaining: int | None = None,
        lock_expire_time: datetime | None = None,
        violations: tuple[FieldViolation, ...] = (),
        quota_violation: str | None = None,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.message = message
        self.attempts_remaining = attempts_remaining
        self.lock_expire_time = lock_expire_time
        self.violations = violations
        self.quota_violation = quota_violation
        self.retry_after = retry_after


class DependencyUnavailable(Exception):
    """An adapter could not reach its backing service (store, database, mail, SMS, registry).

    Adapters raise it instead of their driver's exceptions (see
    ``ameli_grpc.adapters.outages.map_outages``) so that the service fails
    closed with ``SERVICE_UNAVAILABLE``. ``dependency`` names the service
    (``"redis"``, ``"database"``, ``"smtp"``, ``"outbox"``, ``"rfi"``, ``"sms"``);
    ``detail`` is our own short label of what went wrong, never a driver's
    text (which could quote a NIR or an address).
    """

    def __init__(self, dependency: str, detail: str = "unavailable") -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.detail = detail
