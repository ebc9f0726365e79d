"""Counting passwords and codes: the claim before an evaluation, the settling after it.

One collaborator of the login use cases, so that every entry is counted the
same way: a claim puts the attempt in flight (or refuses it: a lock, or the
attempts in flight already make up the limit), then the attempt is settled as
right or wrong. A wrong one is audited (``password_failed``, ``code_failed``),
and so is the lock or suspension it may set (also counted: ``Events.lock_set``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ameli_grpc.domain.audit import AuditKind, AuditTrail
from ameli_grpc.domain.errors import AuthError, ErrorReason
from ameli_grpc.domain.locks import lock_error, raise_if_locked
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.model import AttemptKind, Lock, LockKind, LockScope
from ameli_grpc.domain.outcomes import ClientInfo
from ameli_grpc.domain.policy import FailureRule, QuotaRule
from ameli_grpc.domain.ports import ChallengeStore, Events

IN_PROGRESS_RETRY = timedelta(seconds=1)

_WRONG = {
    AttemptKind.PASSWORD: ErrorReason.INVALID_CREDENTIALS,
    AttemptKind.CODE: ErrorReason.INVALID_CODE,
}
_FAILED = {AttemptKind.PASSWORD: AuditKind.PASSWORD_FAILED, AttemptKind.CODE: AuditKind.CODE_FAILED}
_LOCKED = {
    LockKind.PASSWORD_ATTEMPTS: AuditKind.LOCKED_PASSWORD,
    LockKind.CODE_ATTEMPTS: AuditKind.LOCKED_CODE,
    LockKind.CODE_QUOTA: AuditKind.LOCKED_QUOTA,
    LockKind.SUSPENDED: AuditKind.SUSPENDED,
}


class Attempts:
    def __init__(
        self, store: ChallengeStore, audit: AuditTrail, quota: QuotaRule, events: Events
    ) -> None:
        self._store = store
        self._audit = audit
        self._quota = quota
        self._events = events

    async def claim(
        self, nir_ref: str, rule: FailureRule, scopes: frozenset[LockScope], now: datetime
    ) -> str:
        """A ticket for one evaluation; the lock's error, or ATTEMPT_IN_PROGRESS, otherwise."""
        claim = await self._store.claim_attempt(nir_ref, rule, scopes, now)
        raise_if_locked(claim.locks, self._quota)
        if claim.ticket is None:  # in flight: no lock exists, none may be shown (SPEC §7.3)
            raise AuthError(
                ErrorReason.ATTEMPT_IN_PROGRESS,
                Messages.ATTEMPT_IN_PROGRESS,
                retry_after=IN_PROGRESS_RETRY,
            )
        return claim.ticket

    async def wrong(
        self,
        nir_ref: str,
        rule: FailureRule,
        ticket: str,
        now: datetime,
        *,
        account_id: str | None = None,
        client: ClientInfo | None = None,
    ) -> AuthError:
        """Case 4 with the attempts left, or — on the entry that reaches a limit — its lock.

        Audited: the failure, then the lock or suspension it set, if any.
        """
        count = await self._store.settle_failure(nir_ref, rule, ticket, now)
        await self._audit.record(
            _FAILED[rule.kind],
            nir_ref,
            now,
            account_id,
            detail=f"scope={rule.scope.value} failures={count.failures}",
            client=client,
        )
        if count.lock is not None:
            self._events.lock_set(count.lock.kind.value)
            await self._audit.record(
                _LOCKED[count.lock.kind],
                nir_ref,
                now,
                account_id,
                detail=_lock_detail(count.lock),
                client=client,
            )
            return lock_error(count.lock, self._quota)
        remaining = max(0, rule.limit - count.failures)
        return AuthError(
            _WRONG[rule.kind], Messages.wrong_entry(rule.limit), attempts_remaining=remaining
        )

    async def right(
        self, nir_ref: str, rule: FailureRule, ticket: str, *, login_complete: bool
    ) -> None:
        await self._store.settle_success(nir_ref, rule, ticket, login_complete=login_complete)

    async def release(self, nir_ref: str, rule: FailureRule, ticket: str) -> None:
        """The evaluation failed (an outage): the attempt is forgotten, nothing counted."""
        await self._store.release_attempt(nir_ref, rule, ticket)


def _lock_detail(lock: Lock) -> str:
    """The lock's scope and end (a suspension has none: an advisor lifts it)."""
    if lock.expire_time is None:
        return f"scope={lock.scope.value}"
    return f"scope={lock.scope.value} until={lock.expire_time.isoformat()}"
