"""The numbers of the rules (SPEC §2). Every one is configuration; defaults follow the guide."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network

from ameli_grpc.domain.model import AttemptKind, LockKind, LockScope

PENDING_FOR = timedelta(seconds=30)  # an attempt not settled by then is no longer in flight
DAY = timedelta(hours=24)
CEILING_KEPT = timedelta(days=90)


@dataclass(frozen=True)
class FailureRule:
    """How wrong entries of one ``kind`` and ``scope`` are counted and what they lock.

    ``limit`` failures within ``window`` lock for ``lock_for``; ``daily_limit``
    within a sliding day lock for ``daily_lock`` (the same lock, ending later);
    ``ceiling`` failures of ``ceiling_scope``, passwords and codes together,
    since the last successful login (kept ``CEILING_KEPT``) suspend that scope.
    """

    kind: AttemptKind
    scope: LockScope
    ceiling_scope: LockScope
    limit: int
    window: timedelta
    lock_for: timedelta
    daily_limit: int = 20
    daily_lock: timedelta = DAY
    ceiling: int = 100

    @property
    def lock_kind(self) -> LockKind:
        return (
            LockKind.PASSWORD_ATTEMPTS
            if self.kind is AttemptKind.PASSWORD
            else LockKind.CODE_ATTEMPTS
        )


@dataclass(frozen=True)
class QuotaRule:
    """``limit`` codes per sliding ``window``; one more request locks for ``lock_for``."""

    limit: int
    window: timedelta
    lock_for: timedelta


@dataclass(frozen=True)
class ClientRule:
    """``limit`` wrong entries from one client address within ``window`` throttle it for
    ``lock_for`` (SPEC §7.4)."""

    limit: int
    window: timedelta
    lock_for: timedelta


ClientNetwork = IPv4Network | IPv6Network


@dataclass(frozen=True)
class Policy:
    code_ttl: timedelta = timedelta(minutes=15)
    login_ttl: timedelta = timedelta(hours=1)
    code_quota: int = 5
    code_quota_window: timedelta = timedelta(hours=1)
    code_quota_lock: timedelta = timedelta(hours=1)
    max_password_failures: int = 3
    max_code_failures: int = 3
    failure_window: timedelta = timedelta(minutes=15)
    failure_lock: timedelta = timedelta(minutes=15)
    trusted_device_months: int = 6
    provisional_code_ttl: timedelta = timedelta(hours=1)
    franceconnect_requires_code: bool = True
    daily_failure_limit: int = 20
    daily_lock: timedelta = DAY
    max_consecutive_failures: int = 100
    client_failure_limit: int = 50
    client_failure_window: timedelta = timedelta(minutes=10)
    client_lock: timedelta = timedelta(minutes=15)
    client_allowlist: tuple[ClientNetwork, ...] = ()  # known NATs: never regulated

    def failure_rule(self, kind: AttemptKind, familiar: bool = False) -> FailureRule:
        """Passwords count in the request's own scope; codes in scope ALL (a familiar
        request never reaches the code step), toward the unfamiliar ceiling."""
        password = kind is AttemptKind.PASSWORD
        return FailureRule(
            kind=kind,
            scope=LockScope.of(familiar) if password else LockScope.ALL,
            ceiling_scope=LockScope.of(familiar),
            limit=self.max_password_failures if password else self.max_code_failures,
            window=self.failure_window,
            lock_for=self.failure_lock,
            daily_limit=self.daily_failure_limit,
            daily_lock=self.daily_lock,
            ceiling=self.max_consecutive_failures,
        )

    @property
    def quota_rule(self) -> QuotaRule:
        return QuotaRule(self.code_quota, self.code_quota_window, self.code_quota_lock)

    @property
    def client_rule(self) -> ClientRule:
        return ClientRule(self.client_failure_limit, self.client_failure_window, self.client_lock)
