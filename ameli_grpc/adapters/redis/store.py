"""``RedisChallengeStore``: the ``ChallengeStore`` shared by every replica, on Redis.

It behaves like ``MemoryChallengeStore``; each check-and-count step is one Lua
script (``scripts``). Times come from the caller's ``now`` — on Redis, every
replica's clock is ``RedisClock``, the Redis server's TIME, so replicas agree —
stored as integer microseconds since the epoch; Redis TTLs only collect
garbage, they never decide a rule.

Key layout — every key of one NIR shares the hash tag ``{<nir_ref>}``, and
every key of one client address the tag ``{<client_ref>}``, so a script only
touches one slot (Redis Cluster). Both refs are already HMACs; no NIR, IP
address, code or token is ever part of a key::

    <prefix>:{<nir_ref>}:failures:<kind>:<scope>  ZSET ticket -> time  TTL failure window
    <prefix>:{<nir_ref>}:pending:<kind>:<scope>   ZSET ticket -> time  TTL PENDING_FOR
    <prefix>:{<nir_ref>}:daily:<kind>:<scope>     ZSET ticket -> time  TTL a day
    <prefix>:{<nir_ref>}:ceiling:<scope>          INT  consecutive     TTL CEILING_KEPT
    <prefix>:{<nir_ref>}:quota                    ZSET ticket -> time  TTL quota window
    <prefix>:{<nir_ref>}:lock:<kind>:<scope>      HASH expire          TTL until it ends (none
                                                                       for a suspension)
    <prefix>:{<nir_ref>}:login:<sha256>           HASH the login       TTL the login's ttl_seconds
    <prefix>:{<nir_ref>}:generation               STRING random        TTL at least the longest
                                                                       login made before or under it

    <prefix>:{<client_ref>}:client:failures      ZSET random -> time  TTL client failure window
    <prefix>:{<client_ref>}:client:throttle      STRING its end       TTL until the throttle ends

(kind, scope) of failures: (password, untrusted), (password, trusted), (code, all).

A login id is ``<nir_ref>.<32 random url-safe characters>``: the first part
finds the NIR's slot; the id is a bearer secret, so its key holds only a
SHA-256 of it.

The login generation (``end_logins``) is a new random value each time, so that
it never comes back to an earlier one, even after its key expired; absent, it
reads ``''``. A login keeps the generation of its creation and is gone once
the NIR's differs. ``reset`` (an unlock) leaves it alone.

The client comes from ``redis_connection.redis_client_from_url``: one server,
Sentinel's master, or a Redis Cluster, where each script runs on the node of
its first key's slot.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import re
import secrets
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import RedisCluster

from ameli_grpc.adapters.outages import map_outages
from ameli_grpc.adapters.redis import scripts as lua
from ameli_grpc.adapters.redis.connection import REDIS_OUTAGES, RedisClient
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

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_MILLI = timedelta(milliseconds=1)
_REF = r"[A-Za-z0-9_-]{1,64}"
_REF_SHAPE = re.compile(_REF, re.ASCII)
_LOGIN_ID_SHAPE = re.compile(rf"({_REF})\.[A-Za-z0-9_-]{{32}}", re.ASCII)
_LOCKS = (  # every lock a NIR can have
    (LockKind.PASSWORD_ATTEMPTS, LockScope.UNTRUSTED),
    (LockKind.PASSWORD_ATTEMPTS, LockScope.TRUSTED),
    (LockKind.CODE_ATTEMPTS, LockScope.ALL),
    (LockKind.CODE_QUOTA, LockScope.ALL),
    (LockKind.SUSPENDED, LockScope.UNTRUSTED),
    (LockKind.SUSPENDED, LockScope.TRUSTED),
)
_CEILING_SCOPES = (LockScope.UNTRUSTED, LockScope.TRUSTED)
_COUNTED = (  # the (kind, scope) pairs whose failures are counted
    (AttemptKind.PASSWORD, LockScope.UNTRUSTED),
    (AttemptKind.PASSWORD, LockScope.TRUSTED),
    (AttemptKind.CODE, LockScope.ALL),
)

_Store = TypeVar("_Store", bound="RedisChallengeStore")
_P = ParamSpec("_P")
_T = TypeVar("_T")


def _fail_closed(
    method: Callable[Concatenate[_Store, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_Store, _P], Coroutine[Any, Any, _T]]:
    """Turn every Redis outage into ``DependencyUnavailable`` (the service then fails closed)."""

    @functools.wraps(method)
    async def guarded(self: _Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with map_outages("redis", REDIS_OUTAGES):
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
    async def active_locks(
        self, nir_ref: str, now: datetime, scopes: frozenset[LockScope]
    ) -> tuple[Lock, ...]:
        locks = _locks_in(scopes)
        reply = await self._run("ACTIVE_LOCKS", self._lock_keys(nir_ref, locks), _micros(now))
        return _locks(reply, locks)

    @_fail_closed
    async def locks_and_generation(
        self, nir_ref: str, now: datetime
    ) -> tuple[tuple[Lock, ...], str]:
        keys = [*self._lock_keys(nir_ref, _LOCKS), self._key(nir_ref, "generation")]
        locks, generation = await self._run("LOCKS_AND_GENERATION", keys, _micros(now))
        return _locks(locks, _LOCKS), _text(generation)

    @_fail_closed
    async def generation(self, nir_ref: str) -> str:
        value = await self._client.get(self._key(nir_ref, "generation"))  # one command: atomic
        return "" if value is None else _text(value)

    @_fail_closed
    async def end_logins(self, nir_ref: str, login_ttl: timedelta) -> None:
        key = self._key(nir_ref, "generation")
        await self._run("END_LOGINS", [key], secrets.token_urlsafe(12), _millis(login_ttl))

    @_fail_closed
    async def claim_attempt(
        self, nir_ref: str, rule: FailureRule, scopes: frozenset[LockScope], now: datetime
    ) -> AttemptClaim:
        ticket = secrets.token_hex(8)
        locks = _locks_in(scopes)
        counted = (rule.kind, rule.scope)
        keys = [
            *self._lock_keys(nir_ref, locks),
            self._key(nir_ref, "failures", *counted),
            self._key(nir_ref, "pending", *counted),
        ]
        args = (
            len(locks),
            _micros(now),
            _micros(now - rule.window),
            _micros(now - PENDING_FOR),
            ticket,
            rule.limit,
            _millis(PENDING_FOR),
        )
        outcome, *detail = await self._run("CLAIM_ATTEMPT", keys, *args)
        if outcome == 0:
            return AttemptClaim(ticket=None, locks=_locks(detail[0], locks))
        if outcome == 2:
            return AttemptClaim(ticket=None, in_progress=True)
        return AttemptClaim(ticket=ticket)

    @_fail_closed
    async def settle_failure(
        self, nir_ref: str, rule: FailureRule, ticket: str, now: datetime
    ) -> FailureCount:
        counted = (rule.kind, rule.scope)
        keys = [
            self._key(nir_ref, "failures", *counted),
            self._key(nir_ref, "pending", *counted),
            self._key(nir_ref, "daily", *counted),
            self._key(nir_ref, "ceiling", rule.ceiling_scope),
            self._key(nir_ref, "lock", rule.lock_kind, rule.scope),
            self._key(nir_ref, "lock", LockKind.SUSPENDED, rule.ceiling_scope),
        ]
        args = (
            _micros(now),
            ticket,
            _micros(now - rule.window),
            _millis(rule.window),
            rule.limit,
            _micros(now + rule.lock_for),
            _millis(rule.lock_for),
            _micros(now - DAY),
            rule.daily_limit,
            _micros(now + rule.daily_lock),
            _millis(max(rule.daily_lock, DAY)),
            rule.ceiling,
            _millis(CEILING_KEPT),
        )
        failures, expire = await self._run("SETTLE_FAILURE", keys, *args)
        expire = _text(expire)
        if expire == "never":
            return FailureCount(int(failures), Lock(LockKind.SUSPENDED, None, rule.ceiling_scope))
        if not expire:
            return FailureCount(int(failures))
        return FailureCount(int(failures), Lock(rule.lock_kind, _datetime(expire), rule.scope))

    @_fail_closed
    async def settle_success(
        self, nir_ref: str, rule: FailureRule, ticket: str, *, login_complete: bool
    ) -> None:
        counted = (rule.kind, rule.scope)
        keys = [self._key(nir_ref, "pending", *counted), self._key(nir_ref, "failures", *counted)]
        if login_complete:
            keys += [
                self._key(nir_ref, "failures", AttemptKind.PASSWORD, rule.ceiling_scope),
                self._key(nir_ref, "failures", AttemptKind.CODE, LockScope.ALL),
                self._key(nir_ref, "quota"),
                self._key(nir_ref, "ceiling", rule.ceiling_scope),
            ]
        await self._run("SETTLE_SUCCESS", keys, ticket, "1" if login_complete else "0")

    @_fail_closed
    async def release_attempt(self, nir_ref: str, rule: FailureRule, ticket: str) -> None:
        await self._client.zrem(self._key(nir_ref, "pending", rule.kind, rule.scope), ticket)

    @_fail_closed
    async def create_login(self, login: Login, ttl_seconds: int) -> str | None:
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
        keys = self._login_keys(login_id)
        created = await self._run("CREATE_LOGIN", keys, ttl_ms, login.generation, *pairs)
        return login_id if created else None

    @_fail_closed
    async def get_login(self, login_id: str, now: datetime) -> Login | None:
        if not _valid_login_id(login_id):
            return None
        raw: Sequence[Any] = await self._run("GET_LOGIN", self._login_keys(login_id))
        stored = {_text(raw[i]): _text(raw[i + 1]) for i in range(0, len(raw), 2)}
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
            generation=stored.get("generation", ""),
        )

    @_fail_closed
    async def reserve_code(
        self, nir_ref: str, rule: QuotaRule, scopes: frozenset[LockScope], now: datetime
    ) -> CodeReservation:
        ticket = secrets.token_hex(8)
        lock = Lock(LockKind.CODE_QUOTA, now + rule.lock_for)
        locks = _locks_in(scopes)
        keys = [
            *self._lock_keys(nir_ref, locks),
            self._key(nir_ref, "lock", LockKind.CODE_QUOTA, LockScope.ALL),
            self._key(nir_ref, "quota"),
        ]
        args = (
            len(locks),
            _micros(now),
            _micros(now - rule.window),
            ticket,
            rule.limit,
            _millis(rule.window),
            _micros(now + rule.lock_for),
            _millis(rule.lock_for),
        )
        outcome, sent, *found = await self._run("RESERVE_CODE", keys, *args)
        if outcome == 0:
            return CodeReservation(ticket=None, codes_sent=int(sent), locks=_locks(found[0], locks))
        if outcome == 2:
            return CodeReservation(ticket=None, codes_sent=int(sent), locks=(lock,), lock_set=True)
        return CodeReservation(ticket=ticket, codes_sent=int(sent))

    @_fail_closed
    async def set_code(self, login_id: str, code_digest: str, code_expire_time: datetime) -> bool:
        if not _valid_login_id(login_id):
            return False
        keys = self._login_keys(login_id)
        return bool(await self._run("SET_CODE", keys, code_digest, _micros(code_expire_time)))

    @_fail_closed
    async def release_code(
        self, nir_ref: str, ticket: str, login_id: str, code_digest: str
    ) -> None:
        quota = [self._key(nir_ref, "quota")] if ticket else []
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
        return bool(await self._run("CONSUME_LOGIN", self._login_keys(login_id), code_digest))

    @_fail_closed
    async def status(
        self, nir_ref: str, now: datetime, failure_window: timedelta, quota_window: timedelta
    ) -> NirStatus:
        keys = [
            *self._lock_keys(nir_ref, _LOCKS),
            *(self._key(nir_ref, "failures", *counted) for counted in _COUNTED),
            self._key(nir_ref, "quota"),
        ]
        since_failure = f"({_micros(now - failure_window)}"  # "(": strictly after
        since_request = f"({_micros(now - quota_window)}"
        args = (len(_LOCKS), _micros(now), since_failure, since_request)
        locks, password_failures, code_failures, codes_sent = await self._run("STATUS", keys, *args)
        return NirStatus(
            locks=_locks(locks, _LOCKS),
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
    async def adopt(self, ref: str, previous_refs: Sequence[str], now: datetime) -> bool:
        """Per previous ref: read its state (one script on its slot), merge it under ``ref``
        (one script on that slot), then delete it — three steps, as two refs live in two
        slots of a Cluster; the port's contract holds because the merge is idempotent and
        comes before the delete. A ref without state costs one read-only script."""
        found = False
        for previous in previous_refs:
            if previous == ref:
                continue
            source = self._carried_keys(previous)
            entries = await self._run("READ_STATE", source)
            if not entries:
                continue
            flat = [v if isinstance(v, int) else _text(v) for entry in entries for v in entry]
            await self._run("MERGE_STATE", self._carried_keys(ref), *flat)
            await self._client.delete(*source)  # one command on one slot
            found = True
        return found

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

    def _key(self, nir_ref: str, name: str, *parts: enum.Enum) -> str:
        return ":".join((self._base(nir_ref), name, *(part.value for part in parts)))

    def _lock_keys(self, nir_ref: str, locks: Sequence[tuple[LockKind, LockScope]]) -> list[str]:
        return [self._key(nir_ref, "lock", kind, scope) for kind, scope in locks]

    def _nir_keys(self, nir_ref: str) -> list[str]:
        """Every key of the NIR but its logins and their generation: what ``reset`` deletes.

        Never the generation: deleting it could bring ended logins back.
        """
        return [
            *self._lock_keys(nir_ref, _LOCKS),
            *(
                self._key(nir_ref, name, *counted)
                for name in ("failures", "pending", "daily")
                for counted in _COUNTED
            ),
            *(
                self._key(nir_ref, "ceiling", scope)
                for scope in (LockScope.UNTRUSTED, LockScope.TRUSTED)
            ),
            self._key(nir_ref, "quota"),
        ]

    def _carried_keys(self, ref: str) -> list[str]:
        """What ``adopt`` moves: a NIR's state but its attempts in flight and logins, and a
        client address's state (a ref is one or the other; the rest of the list is absent)."""
        in_flight = self._key(ref, "pending")
        return [
            *(key for key in self._nir_keys(ref) if not key.startswith(in_flight)),
            *self._client_keys(ref),
        ]

    def _client_keys(self, client_ref: str) -> list[str]:
        """The client address's throttle, then its failures (``Keyring.client_ref``)."""
        base = self._base(client_ref)
        return [f"{base}:client:throttle", f"{base}:client:failures"]

    def _login_keys(self, login_id: str) -> list[str]:
        """The login's hash, then its NIR's generation (both in the NIR's slot)."""
        return [self._login_key(login_id), self._key(login_id.partition(".")[0], "generation")]

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


def _locks_in(scopes: frozenset[LockScope]) -> tuple[tuple[LockKind, LockScope], ...]:
    return tuple(lock for lock in _LOCKS if lock[1] in scopes)


def _locks(
    reply: Sequence[Sequence[Any]], asked: Sequence[tuple[LockKind, LockScope]]
) -> tuple[Lock, ...]:
    """Locks from a script's ``{index in KEYS, expire}`` pairs; ``never``: a suspension."""
    found = []
    for index, raw in reply:
        kind, scope = asked[int(index) - 1]
        expire = _text(raw)
        found.append(Lock(kind, None if expire == "never" else _datetime(expire), scope))
    return tuple(found)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
