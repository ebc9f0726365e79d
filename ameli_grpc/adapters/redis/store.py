"""``RedisChallengeStore``: the ``ChallengeStore`` shared by every replica, on Redis.

It behaves like ``MemoryChallengeStore``; each check-and-count step is one Lua
script (``redis_scripts``). Times come from the caller's ``now`` (the replica's
clock), stored as integer microseconds since the epoch; Redis TTLs only
collect garbage, they never decide a rule.

Key layout — every key of one NIR shares the hash tag ``{<nir_ref>}``, and
every key of one client address the tag ``{<client_ref>}``, so a script only
touches one slot (Redis Cluster). Both refs are already HMACs; no NIR, IP
address, code or token is ever part of a key::

    <prefix>:{<nir_ref>}:failures:password  ZSET ticket -> time   TTL failure window
    <prefix>:{<nir_ref>}:failures:code      ZSET ticket -> time   TTL failure window
    <prefix>:{<nir_ref>}:quota              ZSET ticket -> time   TTL quota window
    <prefix>:{<nir_ref>}:lock:<kind>        HASH expire, owner    TTL until the lock ends
    <prefix>:{<nir_ref>}:login:<sha256>     HASH the login        TTL the login's ttl_seconds
    <prefix>:{<client_ref>}:client:failures ZSET random -> time   TTL client failure window
    <prefix>:{<client_ref>}:client:throttle STRING its end        TTL until the throttle ends

A login id is ``<nir_ref>.<32 random url-safe characters>``: the first part
finds the NIR's slot; the id is a bearer secret, so its key holds only a
SHA-256 of it.

The client comes from ``redis_connection.redis_client_from_url``: one server,
Sentinel's master, or a Redis Cluster, where each script runs on the node of
its first key's slot.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import secrets
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import RedisCluster

from ameli_grpc.adapters.outages import map_outages
from ameli_grpc.adapters.redis import scripts as lua
from ameli_grpc.adapters.redis.connection import RedisClient
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

_OUTAGES: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # also BusyLoadingError, AuthenticationError, no master
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a replica after a failover
    redis_errors.OutOfMemoryError,
    redis_errors.ClusterError,  # also ClusterDownError, MasterDownError, "TTL exhausted"
    redis_errors.TryAgainError,  # a slot still migrating
    redis_errors.RedisClusterException,  # no node reachable, slots not covered (SlotNotCovered)
    OSError,  # also TimeoutError, which is asyncio.TimeoutError
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_MILLI = timedelta(milliseconds=1)
_REF = r"[A-Za-z0-9_-]{1,64}"
_REF_SHAPE = re.compile(_REF, re.ASCII)
_LOGIN_ID_SHAPE = re.compile(rf"({_REF})\.[A-Za-z0-9_-]{{32}}", re.ASCII)
_LOCK_KINDS = tuple(LockKind)  # the order of KEYS[1..3] in the scripts
_FAILURES = {AttemptKind.PASSWORD: 3, AttemptKind.CODE: 4}  # their index in _nir_keys

_Store = TypeVar("_Store", bound="RedisChallengeStore")
_P = ParamSpec("_P")
_T = TypeVar("_T")


def _fail_closed(
    method: Callable[Concatenate[_Store, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_Store, _P], Coroutine[Any, Any, _T]]:
    """Turn every Redis outage into ``DependencyUnavailable`` (the service then fails closed)."""

    @functools.wraps(method)
    async def guarded(self: _Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with map_outages("redis", _OUTAGES):
            return await method(self, *args, **kwargs)

    return guarded


class RedisChallengeStore:
    def __init__(self, client: RedisClient, prefix: str = "ameli") -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("the Redis prefix must be non-empty, without braces")
        self._client = client
        self._prefix = prefix
        self._scripts = {name: (_sha1(text), text) for name, text in lua.SCRIPTS.items()}

    @_fail_closed
    async def active_locks(self, nir_ref: str, now: datetime) -> tuple[Lock, ...]:
        reply = await self._run("ACTIVE_LOCKS", self._nir_keys(nir_ref)[:3], _micros(now))
        return _locks(reply)

    @_fail_closed
    async def claim_attempt(
        self, nir_ref: str, kind: AttemptKind, rule: FailureRule, now: datetime
    ) -> AttemptClaim:
        ticket = secrets.token_hex(8)
        lock = Lock(rule.lock_kind, now + rule.lock_for)
        keys = self._nir_keys(nir_ref)
        keys = [*keys[:3], keys[_FAILURES[kind]], keys[_LOCK_KINDS.index(lock.kind)]]
        args = _count_args(now, rule.window, ticket, rule.limit, lock)
        allowed, failures, detail = await self._run("CLAIM_ATTEMPT", keys, *args)
        if not allowed:
            return AttemptClaim(ticket=None, failures=0, locks=_locks(detail))
        return AttemptClaim(ticket=ticket, failures=int(failures), lock=lock if detail else None)

    @_fail_closed
    async def settle_success(
        self, nir_ref: str, kind: AttemptKind, ticket: str, *, login_complete: bool
    ) -> None:
        complete = "1" if login_complete else "0"
        keys = self._nir_keys(nir_ref)
        await self._run("SETTLE_SUCCESS", keys, ticket, _FAILURES[kind] + 1, complete)

    @_fail_closed
    async def create_login(self, login: Login, ttl_seconds: int) -> str:
        login_id = f"{_checked_ref(login.nir_ref)}.{secrets.token_urlsafe(24)}"
        fields: dict[str, str | int | None] = {
            "nir_ref": login.nir_ref,
            "account_id": login.account_id,
            "masked_email": login.masked_email,
            "expire": _micros(login.expire_time),
            "code_digest": login.code_digest,
            "code_expire": _micros(login.code_expire_time)
            if login.code_expire_time is not None
            else None,
        }
        pairs = [
            item for name, value in fields.items() if value is not None for item in (name, value)
        ]
        ttl_ms = max(1, ttl_seconds) * 1000
        await self._run("CREATE_LOGIN", [self._login_key(login_id)], ttl_ms, *pairs)
        return login_id

    @_fail_closed
    async def get_login(self, login_id: str, now: datetime) -> Login | None:
        if not _valid_login_id(login_id):
            return None
        raw: Mapping[Any, Any] = await self._client.hgetall(self._login_key(login_id))
        stored = {_text(name): _text(value) for name, value in raw.items()}
        if not stored or int(stored["expire"]) <= _micros(now):
            return None
        code_expire = stored.get("code_expire")
        return Login(
            login_id=login_id,
            nir_ref=stored["nir_ref"],
            account_id=stored["account_id"],
            masked_email=stored["masked_email"],
            expire_time=_datetime(stored["expire"]),
            code_digest=stored.get("code_digest"),
            code_expire_time=_datetime(code_expire) if code_expire is not None else None,
        )

    @_fail_closed
    async def reserve_code(self, nir_ref: str, rule: QuotaRule, now: datetime) -> CodeReservation:
        ticket = secrets.token_hex(8)
        lock = Lock(LockKind.CODE_QUOTA, now + rule.lock_for)
        keys = self._nir_keys(nir_ref)
        keys = [*keys[:3], keys[5]]
        args = _count_args(now, rule.window, ticket, rule.limit, lock)
        outcome, sent, *locks = await self._run("RESERVE_CODE", keys, *args)
        if outcome == 0:
            return CodeReservation(ticket=None, codes_sent=int(sent), locks=_locks(locks[0]))
        if outcome == 2:
            return CodeReservation(ticket=None, codes_sent=int(sent), locks=(lock,))
        return CodeReservation(ticket=ticket, codes_sent=int(sent))

    @_fail_closed
    async def set_code(self, login_id: str, code_digest: str, code_expire_time: datetime) -> bool:
        if not _valid_login_id(login_id):
            return False
        key = self._login_key(login_id)
        return bool(await self._run("SET_CODE", [key], code_digest, _micros(code_expire_time)))

    @_fail_closed
    async def release_code(
        self, nir_ref: str, ticket: str, login_id: str, code_digest: str
    ) -> None:
        quota = [self._nir_keys(nir_ref)[5]] if ticket else []
        login = [self._login_key(login_id)] if _valid_login_id(login_id) else []
        if login and quota and login_id.partition(".")[0] != nir_ref:
            # Two slots: uncount, then drop the code (never happens with ids we minted).
            await self._run("RELEASE_CODE", quota, ticket, code_digest)
            quota, ticket = [], ""
        if quota or login:
            await self._run("RELEASE_CODE", [*quota, *login], ticket, code_digest)

    @_fail_closed
    async def consume_login(self, login_id: str, code_digest: str) -> bool:
        if not _valid_login_id(login_id):
            return False
        key = self._login_key(login_id)
        return bool(await self._run("CONSUME_LOGIN", [key], code_digest))

    @_fail_closed
    async def status(
        self, nir_ref: str, now: datetime, failure_window: timedelta, quota_window: timedelta
    ) -> NirStatus:
        keys = self._nir_keys(nir_ref)
        since_failure = f"({_micros(now - failure_window)}"  # "(": strictly after
        since_request = f"({_micros(now - quota_window)}"
        reply = await self._run("STATUS", keys, _micros(now), since_failure, since_request)
        locks, password_failures, code_failures, codes_sent = reply
        return NirStatus(
            locks=_locks(locks),
            password_failures=int(password_failures),
            code_failures=int(code_failures),
            codes_sent_in_window=int(codes_sent),
        )

    @_fail_closed
    async def reset(self, nir_ref: str) -> None:
        await self._client.delete(*self._nir_keys(nir_ref))  # one command: one atomic step

    @_fail_closed
    async def client_throttle(self, client_ref: str, now: datetime) -> datetime | None:
        ends = await self._client.get(self._client_keys(client_ref)[0])  # one command: atomic
        if ends is None:
            return None
        until = _datetime(_text(ends))
        return until if until > now else None

    @_fail_closed
    async def count_client_failure(
        self, client_ref: str, rule: ClientRule, now: datetime
    ) -> datetime | None:
        until = now + rule.lock_for
        args = (
            _micros(now),
            _micros(now - rule.window),
            secrets.token_hex(8),
            rule.limit,
            _millis(rule.window),
            _micros(until),
            _millis(rule.lock_for),
        )
        outcome = await self._run("COUNT_CLIENT_FAILURE", self._client_keys(client_ref), *args)
        return until if outcome == 2 else None

    @_fail_closed
    async def ping(self) -> None:
        if isinstance(self._client, RedisCluster):  # every primary; replicas serve no request
            await self._client.ping(target_nodes=RedisCluster.PRIMARIES)
        else:
            await self._client.ping()

    async def _run(self, script: str, keys: Sequence[str], *args: str | int) -> Any:
        """EVALSHA on the node of the keys' slot; EVAL there if that node lacks the script.

        Not redis-py's ``AsyncScript.__call__``: its fallback, SCRIPT LOAD, goes to every
        primary of a cluster, so one primary down would fail the NIRs of all the others.
        """
        sha, text = self._scripts[script]
        try:
            return await self._client.evalsha(sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:  # EVAL also caches the script on that node
            return await self._client.eval(text, len(keys), *keys, *args)

    def _base(self, nir_ref: str) -> str:
        return f"{self._prefix}:{{{_checked_ref(nir_ref)}}}"

    def _nir_keys(self, nir_ref: str) -> list[str]:
        """The 3 lock hashes (``LockKind`` order), the password and code failures, the quota."""
        base = self._base(nir_ref)
        return [
            *(f"{base}:lock:{kind.value}" for kind in _LOCK_KINDS),
            *(f"{base}:failures:{kind.value}" for kind in _FAILURES),
            f"{base}:quota",
        ]

    def _client_keys(self, client_ref: str) -> list[str]:
        """The client address's throttle, then its failures (``Keyring.client_ref``)."""
        base = self._base(client_ref)
        return [f"{base}:client:throttle", f"{base}:client:failures"]

    def _login_key(self, login_id: str) -> str:
        digest = hashlib.sha256(login_id.encode()).digest()
        # base64, not hex: hex digits could look like a NIR to a leak scanner
        name = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return f"{self._base(login_id.partition('.')[0])}:login:{name}"


def _sha1(script: str) -> str:
    """The name of a script in Redis' script cache (EVALSHA)."""
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


def _checked_ref(nir_ref: str) -> str:
    """``nir_ref`` goes into keys and login ids: a Keyring ref, never braces or dots."""
    if not isinstance(nir_ref, str) or not _REF_SHAPE.fullmatch(nir_ref):
        raise ValueError("nir_ref must be 1-64 URL-safe characters (Keyring.nir_ref)")
    return nir_ref


def _valid_login_id(login_id: object) -> bool:
    """Wrong type, shape, length (at most 97) or non-ASCII: not one of ours."""
    return isinstance(login_id, str) and _LOGIN_ID_SHAPE.fullmatch(login_id) is not None


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch; like the domain's clock, ``moment`` is timezone-aware."""
    return (moment - _EPOCH) // _MICRO


def _datetime(micros: str | int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def _millis(duration: timedelta) -> int:
    """A TTL for ``PEXPIRE``: rounded up, at least 1 ms (0 would delete the key)."""
    return max(1, -(-duration // _MILLI))


def _count_args(
    now: datetime, window: timedelta, ticket: str, limit: int, lock: Lock
) -> tuple[str | int, ...]:
    """ARGV of CLAIM_ATTEMPT and RESERVE_CODE; entries at or before ``now - window`` are gone."""
    since, expire = _micros(now - window), lock.expire_time
    return (
        _micros(now),
        since,
        ticket,
        limit,
        _millis(window),
        _micros(expire),
        _millis(expire - now),
    )


def _locks(reply: Sequence[Sequence[Any]]) -> tuple[Lock, ...]:
    return tuple(Lock(_LOCK_KINDS[int(i) - 1], _datetime(_text(e))) for i, e in reply)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
