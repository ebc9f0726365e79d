"""Locks as the insured person meets them: which one applies, and its refusal."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from ameli_grpc.domain.errors import AuthError, ErrorReason
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.model import Lock, LockKind
from ameli_grpc.domain.outcomes import LockView
from ameli_grpc.domain.policy import QuotaRule

_REASONS = {
    LockKind.PASSWORD_ATTEMPTS: ErrorReason.PASSWORD_ATTEMPTS_LOCKED,
    LockKind.CODE_ATTEMPTS: ErrorReason.CODE_ATTEMPTS_LOCKED,
    LockKind.CODE_QUOTA: ErrorReason.CODE_QUOTA_EXCEEDED,
    LockKind.SUSPENDED: ErrorReason.ACCOUNT_SUSPENDED,
}
_TEXTS = {
    LockKind.PASSWORD_ATTEMPTS: Messages.password_attempts_locked,
    LockKind.CODE_ATTEMPTS: Messages.code_attempts_locked,
    LockKind.CODE_QUOTA: Messages.code_quota_exceeded,
}
# On equal end times, the more specific cause wins: the quota, then codes, then passwords.
_TIE_ORDER = {
    LockKind.PASSWORD_ATTEMPTS: 0,
    LockKind.CODE_ATTEMPTS: 1,
    LockKind.CODE_QUOTA: 2,
    LockKind.SUSPENDED: 3,
}
_ENDLESS = datetime.max.replace(tzinfo=UTC)


def governing_lock(locks: Iterable[Lock]) -> Lock | None:
    """Lock precedence: of several active locks, the one that ends last is the one shown.

    It is the one that really decides when the person can come back, so its
    date is the only truthful one to display; a suspension has no end and wins.
    """
    return max(
        locks,
        key=lambda lock: (lock.expire_time or _ENDLESS, _TIE_ORDER[lock.kind]),
        default=None,
    )


def lock_view(lock: Lock) -> LockView:
    if lock.expire_time is None:
        return LockView(_REASONS[lock.kind], None, Messages.ACCOUNT_SUSPENDED, lock.scope)
    message = _TEXTS[lock.kind](lock.expire_time)
    return LockView(_REASONS[lock.kind], lock.expire_time, message, lock.scope)


def lock_error(lock: Lock, quota: QuotaRule) -> AuthError:
    view = lock_view(lock)
    return AuthError(
        view.reason,
        view.message,
        lock_expire_time=lock.expire_time,
        quota_violation=(
            Messages.quota_rule(quota.limit, quota.window)
            if lock.kind is LockKind.CODE_QUOTA
            else None
        ),
    )


def raise_if_locked(locks: Iterable[Lock], quota: QuotaRule) -> None:
    lock = governing_lock(locks)
    if lock is not None:
        raise lock_error(lock, quota)
