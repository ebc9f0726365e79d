"""``MemoryChallengeStore``: the ``ChallengeStore`` of a single process.

Every method runs without an ``await`` between its reads and its writes, so
on one event loop each check-and-count step is atomic. It cannot be shared
between processes: several workers or replicas need ``RedisChallengeStore``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from ameli_grpc.domain.model import (
    AttemptClaim,
    AttemptKind,
    CodeReservation,
    Lock,
    LockKind,
    Login,
    NirStatus,
)
from ameli_grpc.domain.policy import ClientRule, FailureRule, QuotaRule

_NEVER = datetime.min.replace(tzinfo=UTC)
_SWEEP_EVERY = 1024  # operations between two sweeps of expired state


@dataclass
class _OwnedLock:
    lock: Lock
    owner: str


@dataclass
class _NirState:
    failures: dict[AttemptKind, dict[str, datetime]] = field(
        default_factory=lambda: {kind: {} for kind in AttemptKind}
    )
    quota: dict[str, datetime] = field(default_factory=dict)
    locks: dict[LockKind, _OwnedLock] = field(default_factory=dict)
    dies_at: datetime = _NEVER  # like a Redis key's TTL

    def keep_until(self, moment: datetime) -> None:
        self.dies_at = max(self.dies_at, moment)


@dataclass
class _ClientState:
    failures: list[datetime] = field(default_factory=list)
    throttled_until: datetime = _NEVER
    dies_at: datetime = _NEVER


@dataclass
class _StoredLogin:
    login: Login


class MemoryChallengeStore:
    def __init__(self) -> None:
        self._nirs: dict[str, _NirState] = {}
        self._logins: dict[str, _StoredLogin] = {}
        self._clients: dict[str, _ClientState] = {}
        self._operations = 0

    async def active_locks(self, nir_ref: str, now: datetime) -> tuple[Lock, ...]:
        state = self._nirs.get(nir_ref)
        return self._live_locks(state, now) if state else ()

    async def claim_attempt(
        self, nir_ref: str, kind: AttemptKind, rule: FailureRule, now: datetime
    ) -> AttemptClaim:
        state = self._state(nir_ref)
        locks = self._live_locks(state, now)
        if locks:
            return AttemptClaim(ticket=None, failures=0, locks=locks)
        self._sweep(now)
        failures = _prune(state.failures[kind], now - rule.window)
        ticket = secrets.token_hex(8)
        failures[ticket] = now
        state.keep_until(now + rule.window)
        lock = None
        if len(failures) >= rule.limit:
            lock = Lock(rule.lock_kind, now + rule.lock_for)
            state.locks[rule.lock_kind] = _OwnedLock(lock, ticket)
            state.keep_until(lock.expire_time)
        return AttemptClaim(ticket=ticket, failures=len(failures), lock=lock)

    async def settle_success(
        self, nir_ref: str, kind: AttemptKind, ticket: str, *, login_complete: bool
    ) -> None:
        state = self._state(nir_ref)
        for lock_kind, owned in list(state.locks.items()):
            if owned.owner == ticket:
                del state.locks[lock_kind]
        kinds = list(AttemptKind) if login_complete else [kind]
        for cleared in kinds:
            state.failures[cleared].clear()
        if login_complete:
            state.quota.clear()

    async def create_login(self, login: Login, ttl_seconds: int) -> str:
        login_id = secrets.token_urlsafe(24)
        stored = replace(login, login_id=login_id)
        self._logins[login_id] = _StoredLogin(stored)  # lives until login.expire_time
        return login_id

    async def get_login(self, login_id: str, now: datetime) -> Login | None:
        stored = self._logins.get(login_id)
        if stored is None or stored.login.expire_time <= now:
            return None
        return stored.login

    async def reserve_code(self, nir_ref: str, rule: QuotaRule, now: datetime) -> CodeReservation:
        state = self._state(nir_ref)
        locks = self._live_locks(state, now)
        if locks:
            sent = _count_after(state.quota, now - rule.window)
            return CodeReservation(ticket=None, codes_sent=sent, locks=locks)
        self._sweep(now)
        quota = _prune(state.quota, now - rule.window)
        if len(quota) >= rule.limit:
            lock = Lock(LockKind.CODE_QUOTA, now + rule.lock_for)
            state.locks[LockKind.CODE_QUOTA] = _OwnedLock(lock, "quota")
            state.keep_until(lock.expire_time)
            return CodeReservation(ticket=None, codes_sent=len(quota), locks=(lock,))
        ticket = secrets.token_hex(8)
        quota[ticket] = now
        state.keep_until(now + rule.window)
        return CodeReservation(ticket=ticket, codes_sent=len(quota))

    async def set_code(self, login_id: str, code_digest: str, code_expire_time: datetime) -> bool:
        stored = self._logins.get(login_id)
        if stored is None:
            return False
        stored.login = replace(
            stored.login, code_digest=code_digest, code_expire_time=code_expire_time
        )
        return True

    async def release_code(
        self, nir_ref: str, ticket: str, login_id: str, code_digest: str
    ) -> None:
        self._state(nir_ref).quota.pop(ticket, None)
        stored = self._logins.get(login_id)
        if stored is not None and stored.login.code_digest == code_digest:
            stored.login = replace(stored.login, code_digest=None, code_expire_time=None)

    async def consume_login(self, login_id: str, code_digest: str) -> bool:
        stored = self._logins.get(login_id)
        if stored is None or stored.login.code_digest != code_digest:
            return False
        del self._logins[login_id]
        return True

    async def status(
        self, nir_ref: str, now: datetime, failure_window: timedelta, quota_window: timedelta
    ) -> NirStatus:
        state = self._nirs.get(nir_ref) or _NirState()
        return NirStatus(
            locks=self._live_locks(state, now),
            password_failures=_count_after(
                state.failures[AttemptKind.PASSWORD], now - failure_window
            ),
            code_failures=_count_after(state.failures[AttemptKind.CODE], now - failure_window),
            codes_sent_in_window=_count_after(state.quota, now - quota_window),
        )

    async def reset(self, nir_ref: str) -> None:
        self._nirs.pop(nir_ref, None)

    async def client_throttle(self, client_ref: str, now: datetime) -> datetime | None:
        state = self._clients.get(client_ref)
        return state.throttled_until if state and state.throttled_until > now else None

    async def count_client_failure(
        self, client_ref: str, rule: ClientRule, now: datetime
    ) -> datetime | None:
        self._sweep(now)  # before taking the state: a sweep could drop it
        state = self._clients.setdefault(client_ref, _ClientState())
        if state.throttled_until > now:
            return None
        state.failures = [at for at in state.failures if at > now - rule.window]
        state.failures.append(now)
        state.dies_at = max(state.dies_at, now + rule.window)
        if len(state.failures) < rule.limit:
            return None
        state.throttled_until = now + rule.lock_for
        state.dies_at = max(state.dies_at, state.throttled_until)
        return state.throttled_until

    async def ping(self) -> None:
        return None

    def _state(self, nir_ref: str) -> _NirState:
        return self._nirs.setdefault(nir_ref, _NirState())

    @staticmethod
    def _live_locks(state: _NirState, now: datetime) -> tuple[Lock, ...]:
        for kind, owned in list(state.locks.items()):
            if owned.lock.expire_time <= now:
                del state.locks[kind]
        return tuple(owned.lock for owned in state.locks.values())

    def _sweep(self, now: datetime) -> None:
        """Now and then drop expired logins, dead NIR and client states: memory stays bounded."""
        self._operations += 1
        if self._operations % _SWEEP_EVERY:
            return
        for login_id in [k for k, v in self._logins.items() if v.login.expire_time <= now]:
            del self._logins[login_id]
        for nir_ref in [k for k, v in self._nirs.items() if v.dies_at <= now]:
            del self._nirs[nir_ref]
        for client_ref in [k for k, v in self._clients.items() if v.dies_at <= now]:
            del self._clients[client_ref]


def _prune(entries: dict[str, datetime], older_than: datetime) -> dict[str, datetime]:
    """Forget entries at or before ``older_than`` (in place) and return the dict."""
    for key in [k for k, at in entries.items() if at <= older_than]:
        del entries[key]
    return entries


def _count_after(entries: dict[str, datetime], since: datetime) -> int:
    return sum(1 for at in entries.values() if at > since)
