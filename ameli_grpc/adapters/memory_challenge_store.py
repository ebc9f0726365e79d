"""``MemoryChallengeStore``: the ``ChallengeStore`` of a single process.

Every method runs without an ``await`` between its reads and its writes, so
on one event loop each check-and-count step is atomic. It cannot be shared
between processes: several workers or replicas need ``RedisChallengeStore``.

A NIR's login generation is a counter, kept for the life of the process (one
integer per NIR an advisor reset): a login is alive while the counter has the
value it had when the login was created.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from ameli_grpc.domain.model import (
    AttemptClaim,
    AttemptKind,
    CodeReservation,
    FailureCount,
    Lock,
    LockKind,
    LockScope,
    Login,
    NirStatus,
)
from ameli_grpc.domain.policy import (
    CEILING_KEPT,
    DAY,
    PENDING_FOR,
    ClientRule,
    FailureRule,
    QuotaRule,
)

_NEVER = datetime.min.replace(tzinfo=UTC)
_SWEEP_EVERY = 1024  # operations between two sweeps of expired state

_Counted = tuple[AttemptKind, LockScope]  # failures are kept per kind and scope
_Entries = dict[str, datetime]  # ticket -> when, like a Redis sorted set


def _per_count() -> dict[_Counted, _Entries]:
    return defaultdict(dict)


@dataclass
class _NirState:
    failures: dict[_Counted, _Entries] = field(default_factory=_per_count)
    pending: dict[_Counted, _Entries] = field(default_factory=_per_count)
    daily: dict[_Counted, _Entries] = field(default_factory=_per_count)
    ceiling: dict[LockScope, tuple[int, datetime]] = field(default_factory=dict)  # count, end
    quota: _Entries = field(default_factory=dict)
    locks: dict[tuple[LockKind, LockScope], Lock] = field(default_factory=dict)
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
        self._generations: dict[str, int] = {}
        self._operations = 0

    async def active_locks(
        self, nir_ref: str, now: datetime, scopes: frozenset[LockScope]
    ) -> tuple[Lock, ...]:
        state = self._nirs.get(nir_ref)
        return _in_scopes(self._live_locks(state, now), scopes) if state else ()

    async def locks_and_generation(
        self, nir_ref: str, now: datetime
    ) -> tuple[tuple[Lock, ...], str]:
        state = self._nirs.get(nir_ref)
        return (self._live_locks(state, now) if state else ()), self._generation(nir_ref)

    async def generation(self, nir_ref: str) -> str:
        return self._generation(nir_ref)

    async def end_logins(self, nir_ref: str, login_ttl: timedelta) -> None:
        self._generations[nir_ref] = self._generations.get(nir_ref, 0) + 1

    async def claim_attempt(
        self, nir_ref: str, rule: FailureRule, scopes: frozenset[LockScope], now: datetime
    ) -> AttemptClaim:
        self._sweep(now)  # first: a sweep must not drop the state written below
        state = self._state(nir_ref)
        locks = _in_scopes(self._live_locks(state, now), scopes)
        if locks:
            return AttemptClaim(ticket=None, locks=locks)
        counted = (rule.kind, rule.scope)
        settled = len(_prune(state.failures[counted], now - rule.window))
        in_flight = _prune(state.pending[counted], now - PENDING_FOR)
        if settled < rule.limit <= settled + len(in_flight):
            return AttemptClaim(ticket=None, in_progress=True)
        ticket = secrets.token_hex(8)
        in_flight[ticket] = now
        state.keep_until(now + PENDING_FOR)
        return AttemptClaim(ticket=ticket)

    async def settle_failure(
        self, nir_ref: str, rule: FailureRule, ticket: str, now: datetime
    ) -> FailureCount:
        state = self._state(nir_ref)
        counted = (rule.kind, rule.scope)
        state.pending[counted].pop(ticket, None)
        failures = _prune(state.failures[counted], now - rule.window)
        failures[ticket] = now
        daily = _prune(state.daily[counted], now - DAY)
        daily[ticket] = now
        state.keep_until(now + max(rule.window, DAY))
        count, kept_until = state.ceiling.get(rule.ceiling_scope, (0, now))
        count = count + 1 if kept_until > now else 1  # like a counter with a 90-day TTL
        state.ceiling[rule.ceiling_scope] = (count, now + CEILING_KEPT)
        state.keep_until(now + CEILING_KEPT)
        if count >= rule.ceiling:
            suspension = Lock(LockKind.SUSPENDED, None, rule.ceiling_scope)
            state.locks[(LockKind.SUSPENDED, rule.ceiling_scope)] = suspension
            state.keep_until(datetime.max.replace(tzinfo=UTC))  # until an advisor lifts it
            return FailureCount(len(failures), suspension)
        ends = [
            *([now + rule.lock_for] if len(failures) >= rule.limit else []),
            *([now + rule.daily_lock] if len(daily) >= rule.daily_limit else []),
        ]
        if not ends:
            return FailureCount(len(failures))
        lock = Lock(rule.lock_kind, max(ends), rule.scope)
        state.locks[(rule.lock_kind, rule.scope)] = lock
        state.keep_until(max(ends))
        return FailureCount(len(failures), lock)

    async def settle_success(
        self, nir_ref: str, rule: FailureRule, ticket: str, *, login_complete: bool
    ) -> None:
        state = self._state(nir_ref)
        state.pending[(rule.kind, rule.scope)].pop(ticket, None)
        state.failures[(rule.kind, rule.scope)].clear()
        if login_complete:  # the person's own scope: the password and code failures
            state.failures[(AttemptKind.PASSWORD, rule.ceiling_scope)].clear()
            state.failures[(AttemptKind.CODE, LockScope.ALL)].clear()
            state.quota.clear()
            state.ceiling.pop(rule.ceiling_scope, None)

    async def release_attempt(self, nir_ref: str, rule: FailureRule, ticket: str) -> None:
        self._state(nir_ref).pending[(rule.kind, rule.scope)].pop(ticket, None)

    async def create_login(self, login: Login, ttl_seconds: int) -> str | None:
        if login.generation != self._generation(login.nir_ref):
            return None
        login_id = secrets.token_urlsafe(24)
        stored = replace(login, login_id=login_id)
        self._logins[login_id] = _StoredLogin(stored)  # lives until login.expire_time
        return login_id

    async def get_login(self, login_id: str, now: datetime) -> Login | None:
        stored = self._live_login(login_id)
        if stored is None or stored.login.expire_time <= now:
            return None
        return stored.login

    async def reserve_code(
        self, nir_ref: str, rule: QuotaRule, scopes: frozenset[LockScope], now: datetime
    ) -> CodeReservation:
        self._sweep(now)  # first: a sweep must not drop the state written below
        state = self._state(nir_ref)
        locks = _in_scopes(self._live_locks(state, now), scopes)
        if locks:
            sent = _count_after(state.quota, now - rule.window)
            return CodeReservation(ticket=None, codes_sent=sent, locks=locks)
        quota = _prune(state.quota, now - rule.window)
        if len(quota) >= rule.limit:
            lock = Lock(LockKind.CODE_QUOTA, now + rule.lock_for)
            state.locks[(LockKind.CODE_QUOTA, LockScope.ALL)] = lock
            state.keep_until(now + rule.lock_for)
            return CodeReservation(ticket=None, codes_sent=len(quota), locks=(lock,), lock_set=True)
        ticket = secrets.token_hex(8)
        quota[ticket] = now
        state.keep_until(now + rule.window)
        return CodeReservation(ticket=ticket, codes_sent=len(quota))

    async def set_code(self, login_id: str, code_digest: str, code_expire_time: datetime) -> bool:
        stored = self._live_login(login_id)
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
        stored = self._live_login(login_id)
        if stored is None or stored.login.code_digest != code_digest:
            return False
        del self._logins[login_id]
        return True

    async def status(
        self, nir_ref: str, now: datetime, failure_window: timedelta, quota_window: timedelta
    ) -> NirStatus:
        state = self._nirs.get(nir_ref) or _NirState()
        since = now - failure_window
        return NirStatus(
            locks=self._live_locks(state, now),
            password_failures=sum(
                _count_after(entries, since)
                for (kind, _), entries in state.failures.items()
                if kind is AttemptKind.PASSWORD
            ),
            code_failures=_count_after(state.failures[(AttemptKind.CODE, LockScope.ALL)], since),
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

    async def adopt(self, ref: str, previous_refs: Sequence[str], now: datetime) -> bool:
        found = False
        for previous in previous_refs:
            nir_state = self._nirs.pop(previous, None) if previous != ref else None
            if nir_state is not None:
                _merge_nir(self._state(ref), nir_state, now)
            client_state = self._clients.pop(previous, None) if previous != ref else None
            if client_state is not None:
                _merge_client(self._clients.setdefault(ref, _ClientState()), client_state)
            found = found or nir_state is not None or client_state is not None
        return found

    async def ping(self) -> None:
        return None

    def _state(self, nir_ref: str) -> _NirState:
        return self._nirs.setdefault(nir_ref, _NirState())

    def _generation(self, nir_ref: str) -> str:
        count = self._generations.get(nir_ref)
        return "" if count is None else str(count)  # "": never ended, as on Redis

    def _live_login(self, login_id: str) -> _StoredLogin | None:
        """The stored login unless its NIR's logins were ended since it was created."""
        stored = self._logins.get(login_id)
        if stored is None or stored.login.generation != self._generation(stored.login.nir_ref):
            return None
        return stored

    @staticmethod
    def _live_locks(state: _NirState, now: datetime) -> tuple[Lock, ...]:
        for key, lock in list(state.locks.items()):
            if lock.expire_time is not None and lock.expire_time <= now:
                del state.locks[key]
        return tuple(state.locks.values())

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


def _in_scopes(locks: tuple[Lock, ...], scopes: frozenset[LockScope]) -> tuple[Lock, ...]:
    return tuple(lock for lock in locks if lock.scope in scopes)


def _prune(entries: dict[str, datetime], older_than: datetime) -> dict[str, datetime]:
    """Forget entries at or before ``older_than`` (in place) and return the dict."""
    for key in [k for k, at in entries.items() if at <= older_than]:
        del entries[key]
    return entries


def _count_after(entries: dict[str, datetime], since: datetime) -> int:
    return sum(1 for at in entries.values() if at > since)


def _merge_nir(into: _NirState, moved: _NirState, now: datetime) -> None:
    """``adopt``: counts united, each lock at the later end (a suspension, None, wins)."""
    for name in ("failures", "daily"):
        target: dict[_Counted, _Entries] = getattr(into, name)
        for counted, entries in getattr(moved, name).items():
            target[counted].update(entries)
    into.quota.update(moved.quota)
    for scope, (count, until) in moved.ceiling.items():
        held = into.ceiling.get(scope)
        if until > now and (held is None or held[1] <= now or count > held[0]):
            into.ceiling[scope] = (count, max(until, held[1] if held else until))
    for key, lock in moved.locks.items():
        held_lock = into.locks.get(key)
        if held_lock is None or _ends_later(lock, held_lock):
            into.locks[key] = lock
    into.keep_until(moved.dies_at)


def _ends_later(lock: Lock, other: Lock) -> bool:
    if lock.expire_time is None or other.expire_time is None:
        return other.expire_time is not None
    return lock.expire_time > other.expire_time


def _merge_client(into: _ClientState, moved: _ClientState) -> None:
    into.failures = sorted([*into.failures, *moved.failures])
    into.throttled_until = max(into.throttled_until, moved.throttled_until)
    into.dies_at = max(into.dies_at, moved.dies_at)
