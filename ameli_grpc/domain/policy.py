"""The numbers of the rules (SPEC §2). Every one is configuration; defaults follow the guide."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network

from ameli_grpc.domain.model import AttemptKind, LockKind


@dataclass(frozen=True)
class FailureRule:
    """``limit`` failures within ``window`` lock the NIR for ``lock_for``."""

    limit: int
    window: timedelta
    lock_for: timedelta
    lock_kind: LockKind


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
    client_failure_limit: int = 50
    client_failure_window: timedelta = timedelta(minutes=10)
    client_lock: timedelta = timedelta(minutes=15)
    client_allowlist: tuple[ClientNetwork, ...] = ()  # known NATs: never regulated

    def failure_rule(self, kind: AttemptKind) -> FailureRule:
        if kind is AttemptKind.PASSWORD:
            return FailureRule(
                self.max_password_failures,
                self.failure_window,
                self.failure_lock,
                LockKind.PASSWORD_ATTEMPTS,
            )
        return FailureRule(
            self.max_code_failures, self.failure_window, self.failure_lock, LockKind.CODE_ATTEMPTS
        )

    @property
    def quota_rule(self) -> QuotaRule:
        return QuotaRule(self.code_quota, self.code_quota_window, self.code_quota_lock)

    @property
    def client_rule(self) -> ClientRule:
        return ClientRule(self.client_failure_limit, self.client_failure_window, self.client_lock)
