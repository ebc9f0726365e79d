"""The contract of the ``ChallengeStore`` port, on the memory store, on Redis and on Redis Cluster.

Times are explicit ``now`` values (microseconds included, to catch rounding)
rather than sleeps; only the tests of Redis TTLs sleep. The Redis cases need
``AMELI_TEST_REDIS_URL`` (default: the local server) and skip without it, or
fail under ``CI=true``; the outage tests also need ``redis-server`` on PATH, and
the cluster cases (one throw-away cluster for the module) ``redis-cli`` too.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import SSLConnection

from ameli_grpc.adapters.memory_challenge_store import MemoryChallengeStore
from ameli_grpc.adapters.redis.connection import redis_client_from_url
from ameli_grpc.adapters.redis.store import RedisChallengeStore
from ameli_grpc.domain.errors import DependencyUnavailable
from ameli_grpc.domain.model import (
    AttemptKind,
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
from ameli_grpc.domain.ports import ChallengeStore
from ameli_grpc.domain.tokens import Keyring
from tests.support.redis import (
    SENTINEL_SERVICE,
    ThrowawayRedisCluster,
    ThrowawayRedisServer,
    keys_of,
    new_test_prefix,
    redis_store,
    redis_test_url,
    throwaway_redis_cluster,
    throwaway_redis_server,
)

KEYRING = Keyring(b"contract-test-key-0123456789abcdef")
NIR = "1850775123456"
NIR_REF = KEYRING.nir_ref(NIR)
OTHER_REF = KEYRING.nir_ref("2690299876543")
T0 = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
PASSWORD, CODE = AttemptKind.PASSWORD, AttemptKind.CODE
UNTRUSTED, TRUSTED, ALL = LockScope.UNTRUSTED, LockScope.TRUSTED, LockScope.ALL
UNFAMILIAR, FAMILIAR = LockScope.stopping(familiar=False), LockScope.stopping(familiar=True)
WINDOW = timedelta(seconds=10)
LOCK_FOR = timedelta(seconds=30)
PASSWORD_RULE = FailureRule(PASSWORD, UNTRUSTED, UNTRUSTED, 3, WINDOW, LOCK_FOR)
TRUSTED_RULE = replace(PASSWORD_RULE, scope=TRUSTED, ceiling_scope=TRUSTED)
CODE_RULE = FailureRule(CODE, ALL, UNTRUSTED, 3, WINDOW, LOCK_FOR)
QUOTA = QuotaRule(limit=5, window=timedelta(seconds=60), lock_for=timedelta(seconds=60))
LOGIN = Login("", NIR_REF, "account-1", "t***@t***.com", T0 + timedelta(hours=1))
LOGIN_TTL = 3600
LOGIN_TTL_DELTA = timedelta(seconds=LOGIN_TTL)
CLIENT_REF = KEYRING.client_ref("203.0.113.7")
OTHER_CLIENT_REF = KEYRING.client_ref("2001:db8:1:2::/64")
CLIENT_RULE = ClientRule(limit=5, window=WINDOW, lock_for=timedelta(seconds=30))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def new_login(
    store: ChallengeStore, login: Login = LOGIN, ttl_seconds: int = LOGIN_TTL
) -> str:
    """A stored login's id (the NIR's generation is the one ``login`` carries)."""
    login_id = await store.create_login(login, ttl_seconds)
    assert login_id is not None
    return login_id


def ci_requires_everything() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unreachable(message: str) -> None:
    if ci_requires_everything():
        pytest.fail(message)
    pytest.skip(message)


def cluster_binaries_missing() -> bool:
    return shutil.which("redis-server") is None or shutil.which("redis-cli") is None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def redis_cluster() -> AsyncIterator[ThrowawayRedisCluster]:
    """One throw-away Redis Cluster (3 primaries) for the module; each test has its prefix."""
    if cluster_binaries_missing():
        unreachable("redis-server or redis-cli is not on PATH")
    async with throwaway_redis_cluster() as cluster:
        yield cluster


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
def backend(request: pytest.FixtureRequest) -> str | None:
    """The Redis URL of the store under test; None for the memory store."""
    if request.param == "memory":
        return None
    if request.param == "cluster":  # started only when a cluster case runs
        cluster: ThrowawayRedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    return redis_test_url()


@pytest.fixture
async def store(backend: str | None) -> AsyncIterator[ChallengeStore]:
    if backend is None:
        yield MemoryChallengeStore()
        return
    async with AsyncExitStack() as stack:
        try:
            redis_backed = await stack.enter_async_context(redis_store(backend))
        except DependencyUnavailable as error:
            unreachable(f"Redis unreachable at {backend} ({error.__cause__})")
        yield redis_backed


async def status(store: ChallengeStore, nir_ref: str, now: datetime) -> NirStatus:
    return await store.status(nir_ref, now, WINDOW, QUOTA.window)


async def wrong(
    store: ChallengeStore,
    when: datetime = T0,
    rule: FailureRule = PASSWORD_RULE,
    nir_ref: str = NIR_REF,
) -> FailureCount:
    """One wrong entry: claimed, then settled as a failure."""
    scopes = FAMILIAR if rule.scope is TRUSTED else UNFAMILIAR
    claim = await store.claim_attempt(nir_ref, rule, scopes, when)
    assert claim.ticket is not None, claim
    return await store.settle_failure(nir_ref, rule, claim.ticket, when)


async def lock_passwords(store: ChallengeStore, nir_ref: str = NIR_REF) -> Lock:
    """Three wrong passwords at T0, T0+1s, T0+2s; the lock of the third."""
    counts = [await wrong(store, at(second), nir_ref=nir_ref) for second in range(3)]
    assert counts[-1].lock is not None
    return counts[-1].lock


async def ticket(
    store: ChallengeStore, rule: FailureRule = PASSWORD_RULE, when: datetime = T0
) -> str:
    claim = await store.claim_attempt(NIR_REF, rule, UNFAMILIAR, when)
    assert claim.ticket is not None, claim
    return claim.ticket


# -- failure counters and their locks ------------------------------------------------


async def test_wrong_entries_count_and_the_limit_locks_its_scope(store: ChallengeStore) -> None:
    """Each settled failure counts; the third locks the unfamiliar requests, not the familiar."""
    counts = [await wrong(store, at(second)) for second in range(3)]

    assert [count.failures for count in counts] == [1, 2, 3]
    assert [count.lock for count in counts[:2]] == [None, None]
    lock = Lock(LockKind.PASSWORD_ATTEMPTS, at(2) + LOCK_FOR, UNTRUSTED)
    assert counts[2].lock == lock
    assert await store.active_locks(NIR_REF, at(3), UNFAMILIAR) == (lock,)
    assert await store.active_locks(NIR_REF, at(3), FAMILIAR) == ()
    familiar = await store.claim_attempt(NIR_REF, TRUSTED_RULE, FAMILIAR, at(3))
    assert familiar.ticket is not None


async def test_a_locked_nir_refuses_claims_without_counting(store: ChallengeStore) -> None:
    """While locked, claims of either kind get the lock and count nothing, until it ends."""
    lock = await lock_passwords(store)

    for rule in (PASSWORD_RULE, CODE_RULE):
        refused = await store.claim_attempt(NIR_REF, rule, UNFAMILIAR, at(5))
        assert (refused.ticket, refused.locks, refused.in_progress) == (None, (lock,), False)
    assert await status(store, NIR_REF, at(5)) == NirStatus((lock,), 3, 0, 0)
    assert lock.expire_time is not None
    assert await store.active_locks(NIR_REF, lock.expire_time, UNFAMILIAR) == ()
    after = await wrong(store, lock.expire_time, CODE_RULE)
    assert (after.failures, after.lock) == (1, None)


async def test_attempts_in_flight_that_make_up_the_limit_refuse_without_a_lock(
    store: ChallengeStore,
) -> None:
    """Two failures and one attempt in flight: the next claim is ``in_progress``, no lock set."""
    await wrong(store, at(0))
    await wrong(store, at(1))
    in_flight = await ticket(store, when=at(2))

    refused = await store.claim_attempt(NIR_REF, PASSWORD_RULE, UNFAMILIAR, at(2))

    assert (refused.ticket, refused.locks, refused.in_progress) == (None, (), True)
    assert await store.active_locks(NIR_REF, at(2), UNFAMILIAR) == ()
    assert (await status(store, NIR_REF, at(2))).password_failures == 2
    await store.settle_success(NIR_REF, PASSWORD_RULE, in_flight, login_complete=False)
    assert (await store.claim_attempt(NIR_REF, PASSWORD_RULE, UNFAMILIAR, at(3))).ticket


async def test_an_attempt_never_settled_stops_counting_after_pending_for(
    store: ChallengeStore,
) -> None:
    """Three attempts in flight hold the limit only for ``PENDING_FOR``; a release at once."""
    tickets = [await ticket(store, when=at(0)) for _ in range(3)]
    assert (await store.claim_attempt(NIR_REF, PASSWORD_RULE, UNFAMILIAR, at(1))).in_progress

    await store.release_attempt(NIR_REF, PASSWORD_RULE, tickets[0])
    assert (await store.claim_attempt(NIR_REF, PASSWORD_RULE, UNFAMILIAR, at(1))).ticket
    later = T0 + PENDING_FOR + timedelta(seconds=1)
    assert (await store.claim_attempt(NIR_REF, PASSWORD_RULE, UNFAMILIAR, later)).ticket
    assert (await status(store, NIR_REF, later)).password_failures == 0


async def test_failures_older_than_the_window_stop_counting(store: ChallengeStore) -> None:
    """A failure at or before ``now - window`` is forgotten, so the count slides."""
    await wrong(store, at(0))
    await wrong(store, at(5))

    third = await wrong(store, at(10))
    fourth = await wrong(store, at(15.5))

    assert (third.failures, third.lock) == (2, None)
    assert (fourth.failures, fourth.lock) == (2, None)


async def test_settle_success_clears_its_kind_and_scope_only(store: ChallengeStore) -> None:
    """Success clears its own failures, not the code failures, the quota or another scope's."""
    await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(0))
    await wrong(store, at(0), CODE_RULE)
    await wrong(store, at(0), TRUSTED_RULE)
    await wrong(store, at(1))
    await wrong(store, at(2))
    right = await ticket(store, when=at(3))

    await store.settle_success(NIR_REF, PASSWORD_RULE, right, login_complete=False)

    assert await status(store, NIR_REF, at(3)) == NirStatus((), 1, 1, 1)


async def test_a_complete_login_clears_its_scope_the_codes_and_the_quota(
    store: ChallengeStore,
) -> None:
    """With ``login_complete``: password failures of its scope, code failures and the quota."""
    await wrong(store, at(0))
    await wrong(store, at(0), TRUSTED_RULE)
    await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(1))
    await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(2))
    right = await ticket(store, CODE_RULE, at(3))

    await store.settle_success(NIR_REF, CODE_RULE, right, login_complete=True)

    assert await status(store, NIR_REF, at(4)) == NirStatus((), 1, 0, 0)  # the trusted one


async def test_the_daily_limit_locks_for_the_daily_lock(store: ChallengeStore) -> None:
    """Failures spread beyond the window still count in the day; the one reaching it locks."""
    rule = replace(PASSWORD_RULE, daily_limit=4, daily_lock=timedelta(hours=24))
    counts = [await wrong(store, at(11 * n), rule) for n in range(4)]

    assert [count.failures for count in counts] == [1, 1, 1, 1]
    assert counts[3].lock == Lock(LockKind.PASSWORD_ATTEMPTS, at(33) + DAY, UNTRUSTED)
    assert await store.active_locks(NIR_REF, at(33) + DAY / 2, UNFAMILIAR) == (counts[3].lock,)
    assert await store.active_locks(NIR_REF, at(34), FAMILIAR) == ()


async def test_the_ceiling_suspends_its_scope_until_a_reset(store: ChallengeStore) -> None:
    """Passwords and codes together reach the ceiling: the scope is suspended, without end."""
    password = replace(PASSWORD_RULE, ceiling=4, limit=100, daily_limit=100)
    code = replace(CODE_RULE, ceiling=4, limit=100, daily_limit=100)
    counts = [
        await wrong(store, at(0), password),
        await wrong(store, at(1), code),
        await wrong(store, at(2), password),
        await wrong(store, at(3), code),
    ]

    suspension = Lock(LockKind.SUSPENDED, None, UNTRUSTED)
    assert [count.lock for count in counts] == [None, None, None, suspension]
    much_later = at(3) + timedelta(days=365)
    assert await store.active_locks(NIR_REF, much_later, UNFAMILIAR) == (suspension,)
    assert await store.active_locks(NIR_REF, much_later, FAMILIAR) == ()
    assert (await status(store, NIR_REF, much_later)).locks == (suspension,)
    await store.reset(NIR_REF)
    assert await store.active_locks(NIR_REF, much_later, UNFAMILIAR) == ()


async def test_a_complete_login_of_the_scope_restarts_the_ceiling(store: ChallengeStore) -> None:
    """The ceiling counts failures since the last successful login of that scope."""
    rule = replace(PASSWORD_RULE, ceiling=3, limit=100, daily_limit=100)
    await wrong(store, at(0), rule)
    await wrong(store, at(1), rule)
    right = await ticket(store, rule, at(2))
    await store.settle_success(NIR_REF, rule, right, login_complete=True)

    counts = [await wrong(store, at(3 + n), rule) for n in range(3)]

    assert [count.lock is not None for count in counts] == [False, False, True]


# -- code quota ----------------------------------------------------------------------


async def test_reserve_code_counts_to_the_limit_then_the_next_request_locks(
    store: ChallengeStore,
) -> None:
    """Five requests get tickets; the sixth sets the quota lock (and says so, for the audit),
    later ones get that lock."""
    reservations = [await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(s)) for s in range(5)]
    sixth = await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(5))
    seventh = await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(6))

    assert [r.codes_sent for r in reservations] == [1, 2, 3, 4, 5]
    assert None not in {r.ticket for r in reservations}
    lock = Lock(LockKind.CODE_QUOTA, at(5) + QUOTA.lock_for)
    assert (sixth.ticket, sixth.codes_sent, sixth.locks) == (None, 5, (lock,))
    assert (seventh.ticket, seventh.locks) == (None, (lock,))
    assert [r.lock_set for r in [*reservations, sixth, seventh]] == [False] * 5 + [True, False]
    assert await status(store, NIR_REF, at(6)) == NirStatus((lock,), 0, 0, 5)
    claim = await store.claim_attempt(NIR_REF, TRUSTED_RULE, FAMILIAR, at(6))
    assert claim.locks == (lock,)


async def test_code_requests_older_than_the_window_stop_counting(store: ChallengeStore) -> None:
    """The quota window slides: a request at or before ``now - window`` frees its place."""
    for second in range(5):
        await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(second))

    freed = await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(60))
    full = await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(60.5))

    assert (freed.ticket is not None, freed.codes_sent) == (True, 5)
    assert (full.ticket, full.codes_sent) == (None, 5)


async def test_reserve_code_refuses_during_a_failure_lock(store: ChallengeStore) -> None:
    """A password lock also refuses code requests, without counting them."""
    lock = await lock_passwords(store)

    refused = await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(3))

    assert (refused.ticket, refused.codes_sent, refused.locks) == (None, 0, (lock,))
    assert not refused.lock_set  # the quota lock is not the one that stops it


async def test_a_refused_request_reports_only_requests_inside_the_window(
    store: ChallengeStore,
) -> None:
    """While the quota lock lasts longer than the window, ``codes_sent`` still slides."""
    rule = replace(QUOTA, lock_for=timedelta(seconds=120))
    for second in range(6):
        await store.reserve_code(NIR_REF, rule, UNFAMILIAR, at(second))

    refused = await store.reserve_code(NIR_REF, rule, UNFAMILIAR, at(62.5))

    assert (await status(store, NIR_REF, at(62.5))).codes_sent_in_window == 2
    assert (refused.ticket, refused.codes_sent) == (None, 2)


# -- logins and codes ----------------------------------------------------------------


async def test_only_the_latest_code_consumes_the_login_once(store: ChallengeStore) -> None:
    """set_code replaces the code; consume_login needs the current digest and works once."""
    login_id = await new_login(store)
    assert await store.get_login(login_id, at(0)) == replace(LOGIN, login_id=login_id)

    assert await store.set_code(login_id, "digest-1", at(900))
    assert await store.set_code(login_id, "digest-2", at(901))
    stored = await store.get_login(login_id, at(1))
    assert stored is not None
    assert (stored.code_digest, stored.code_expire_time) == ("digest-2", at(901))

    assert not await store.consume_login(login_id, "digest-1")
    assert await store.consume_login(login_id, "digest-2")
    assert not await store.consume_login(login_id, "digest-2")
    assert await store.get_login(login_id, at(2)) is None
    assert not await store.set_code(login_id, "digest-3", at(902))


async def test_release_code_uncounts_and_drops_only_that_code(store: ChallengeStore) -> None:
    """A failed send gives back its quota place and its code, never a newer code."""
    login_id = await new_login(store)
    first = await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(0))
    second = await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(1))
    assert first.ticket is not None
    assert second.ticket is not None
    await store.set_code(login_id, "digest-2", at(901))

    await store.release_code(NIR_REF, second.ticket, login_id, "digest-2")
    dropped = await store.get_login(login_id, at(2))
    await store.set_code(login_id, "digest-3", at(903))
    await store.release_code(NIR_REF, first.ticket, login_id, "digest-1")
    kept = await store.get_login(login_id, at(3))

    assert dropped is not None
    assert (dropped.code_digest, dropped.code_expire_time) == (None, None)
    assert kept is not None
    assert kept.code_digest == "digest-3"
    assert (await status(store, NIR_REF, at(3))).codes_sent_in_window == 0


async def test_a_login_ends_at_its_expire_time(store: ChallengeStore) -> None:
    """get_login answers until just before ``expire_time``, then None."""
    login_id = await new_login(store)
    just_before = LOGIN.expire_time - timedelta(microseconds=1)

    assert await store.get_login(login_id, just_before) is not None
    assert await store.get_login(login_id, LOGIN.expire_time) is None


async def test_malformed_or_unknown_login_ids_are_refused_quietly(store: ChallengeStore) -> None:
    """Wrong shape, too long, non-ASCII, forged or unknown login ids: None or False, no error."""
    login_id = await new_login(store)
    token = login_id.rpartition(".")[2]
    candidates = [
        "",
        ".",
        "x" * 100_000,
        "é" * 40,
        "\x00" * 40,
        f"{NIR_REF}.{'é' * 32}",
        f"{NIR_REF}.{token[:-1]}",
        f"{NIR_REF}.{token}x",
        f"{{{NIR_REF}}}.{token}",
        f"{NIR_REF}.{token}\n",
        f"{OTHER_REF}.{token}",
        f"{NIR_REF}.{'A' * 32}",
        NIR,
    ]
    for bad in candidates:
        assert await store.get_login(bad, at(0)) is None, bad
        assert await store.set_code(bad, "digest", at(900)) is False, bad
        assert await store.consume_login(bad, "digest") is False, bad
        await store.release_code(NIR_REF, "no-such-ticket", bad, "digest")
    assert await store.get_login(login_id, at(0)) is not None


# -- ended logins (an advisor's reset) -------------------------------------------------


async def test_ended_logins_are_gone_for_every_step(store: ChallengeStore) -> None:
    """After end_logins the NIR's logins are unknown to get, set_code and consume; another
    NIR's login lives on."""
    login_id = await new_login(store)
    assert await store.set_code(login_id, "digest-1", at(900))
    other_id = await new_login(store, replace(LOGIN, nir_ref=OTHER_REF))

    await store.end_logins(NIR_REF, LOGIN_TTL_DELTA)

    assert await store.get_login(login_id, at(1)) is None
    assert await store.set_code(login_id, "digest-2", at(901)) is False
    assert await store.consume_login(login_id, "digest-1") is False
    assert await store.get_login(other_id, at(1)) == replace(
        LOGIN, login_id=other_id, nir_ref=OTHER_REF
    )


async def test_a_login_read_before_end_logins_is_refused_at_creation(
    store: ChallengeStore,
) -> None:
    """create_login with the generation read before end_logins stores nothing; with the new one
    it stores a login that lives until the next end_logins."""
    before = (await store.locks_and_generation(NIR_REF, at(0)))[1]
    assert await store.generation(NIR_REF) == before

    await store.end_logins(NIR_REF, LOGIN_TTL_DELTA)

    assert await store.create_login(replace(LOGIN, generation=before), LOGIN_TTL) is None
    after = await store.generation(NIR_REF)
    assert after != before
    login_id = await new_login(store, replace(LOGIN, generation=after))
    stored = await store.get_login(login_id, at(1))
    assert stored is not None
    assert stored.generation == after
    assert await store.set_code(login_id, "digest", at(900))
    await store.end_logins(NIR_REF, LOGIN_TTL_DELTA)
    assert await store.consume_login(login_id, "digest") is False


async def test_the_generation_never_comes_back_to_an_earlier_value(store: ChallengeStore) -> None:
    """Each end_logins gives a new generation, different from all the earlier ones."""
    seen = [await store.generation(NIR_REF)]
    for _ in range(20):
        await store.end_logins(NIR_REF, LOGIN_TTL_DELTA)
        seen.append(await store.generation(NIR_REF))

    assert len(set(seen)) == len(seen)
    assert await store.generation(OTHER_REF) == seen[0]  # untouched: still the initial value


async def test_locks_and_generation_reads_the_locks_of_every_scope(store: ChallengeStore) -> None:
    """Both password scopes' locks come back together with the generation, expired ones not."""
    untrusted = await lock_passwords(store)
    trusted = [await wrong(store, at(second), TRUSTED_RULE) for second in range(3)][-1].lock

    locks, generation = await store.locks_and_generation(NIR_REF, at(3))

    assert set(locks) == {untrusted, trusted}
    assert generation == await store.generation(NIR_REF)
    assert (await store.locks_and_generation(NIR_REF, at(3) + LOCK_FOR))[0] == ()


async def test_unlock_leaves_the_logins_alone(store: ChallengeStore) -> None:
    """``reset`` (an advisor's unlock) keeps the NIR's logins and their generation."""
    login_id = await new_login(store)
    generation = await store.generation(NIR_REF)

    await store.reset(NIR_REF)

    assert await store.get_login(login_id, at(1)) is not None
    assert await store.generation(NIR_REF) == generation


# -- status and reset ----------------------------------------------------------------


async def test_status_counts_what_is_inside_the_windows(store: ChallengeStore) -> None:
    """status counts failures (every scope) and requests strictly after ``now - window``."""
    for second in (0, 1):
        await wrong(store, at(second))
    await wrong(store, at(1), TRUSTED_RULE)
    await wrong(store, at(2), CODE_RULE)
    for second in (0, 3, 4):
        await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(second))

    assert await status(store, NIR_REF, at(5)) == NirStatus((), 3, 1, 3)
    assert await status(store, NIR_REF, at(10.5)) == NirStatus((), 2, 1, 3)
    narrow = await store.status(NIR_REF, at(5), WINDOW, timedelta(seconds=2))
    assert narrow.codes_sent_in_window == 1
    assert await status(store, OTHER_REF, at(5)) == NirStatus((), 0, 0, 0)


async def test_reset_forgets_the_nir_and_nothing_else(store: ChallengeStore) -> None:
    """An advisor reset clears the NIR's locks, counters and quota; other NIRs keep theirs."""
    await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(0))
    await wrong(store, at(0), CODE_RULE)
    await wrong(store, at(0), TRUSTED_RULE)
    await ticket(store, CODE_RULE, at(0))
    await lock_passwords(store)
    await wrong(store, at(0), nir_ref=OTHER_REF)
    await store.reserve_code(OTHER_REF, QUOTA, UNFAMILIAR, at(0))

    await store.reset(NIR_REF)

    assert await status(store, NIR_REF, at(3)) == NirStatus((), 0, 0, 0)
    assert (await wrong(store, at(3))).failures == 1
    assert (await wrong(store, at(3), CODE_RULE)).failures == 1  # nothing left in flight
    assert await status(store, OTHER_REF, at(3)) == NirStatus((), 1, 0, 1)


# -- parallel requests ---------------------------------------------------------------


async def test_parallel_claims_evaluate_at_most_the_limit(store: ChallengeStore) -> None:
    """50 concurrent claims: exactly three tickets; the 47 others are told one is in flight."""
    claims = await asyncio.gather(
        *(store.claim_attempt(NIR_REF, CODE_RULE, UNFAMILIAR, T0) for _ in range(50))
    )

    tickets = [claim.ticket for claim in claims if claim.ticket is not None]
    assert len(set(tickets)) == 3
    assert all(claim.in_progress and not claim.locks for claim in claims if claim.ticket is None)
    counts = await asyncio.gather(
        *(store.settle_failure(NIR_REF, CODE_RULE, t, T0) for t in tickets)
    )
    assert sorted(count.failures for count in counts) == [1, 2, 3]
    assert {count.lock for count in counts} - {None} == {
        Lock(LockKind.CODE_ATTEMPTS, T0 + LOCK_FOR)
    }


async def test_parallel_code_requests_get_at_most_the_quota(store: ChallengeStore) -> None:
    """50 concurrent code requests: exactly five tickets, the others get the quota lock."""
    reservations = await asyncio.gather(
        *(store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, T0) for _ in range(50))
    )

    tickets = [r.ticket for r in reservations if r.ticket is not None]
    lock = Lock(LockKind.CODE_QUOTA, T0 + QUOTA.lock_for)
    assert len(set(tickets)) == 5
    assert all(r.locks == (lock,) for r in reservations if r.ticket is None)


# -- client addresses (SPEC §7.4) ----------------------------------------------------


async def test_client_failures_count_to_the_limit_which_sets_the_throttle(
    store: ChallengeStore,
) -> None:
    """Four failures set nothing; the fifth returns the throttle's end, active until then."""
    ends = [await store.count_client_failure(CLIENT_REF, CLIENT_RULE, at(s)) for s in range(5)]

    until = at(4) + CLIENT_RULE.lock_for
    assert ends == [None, None, None, None, until]
    assert await store.client_throttle(CLIENT_REF, at(4)) == until
    assert await store.client_throttle(CLIENT_REF, until - timedelta(microseconds=1)) == until
    assert await store.client_throttle(CLIENT_REF, until) is None


async def test_a_throttled_client_counts_nothing(store: ChallengeStore) -> None:
    """Failures during the throttle are not counted: the count after it holds only older ones."""
    rule = ClientRule(limit=3, window=WINDOW, lock_for=timedelta(seconds=1))
    for second in (0, 0.5):
        assert await store.count_client_failure(CLIENT_REF, rule, at(second)) is None
    assert await store.count_client_failure(CLIENT_REF, rule, at(1)) == at(2)

    assert await store.count_client_failure(CLIENT_REF, rule, at(1.5)) is None  # throttled

    # counted now: 1 and 10.8 (0 and 0.5 left the window; 1.5 was never counted)
    assert await store.count_client_failure(CLIENT_REF, rule, at(10.8)) is None
    # 1, 10.8 and 10.9: the limit
    assert await store.count_client_failure(CLIENT_REF, rule, at(10.9)) == at(11.9)


async def test_client_failures_older_than_the_window_stop_counting(store: ChallengeStore) -> None:
    """A failure at or before ``now - window`` is forgotten, so the count slides."""
    for second in range(4):
        await store.count_client_failure(CLIENT_REF, CLIENT_RULE, at(second))

    fifth = await store.count_client_failure(CLIENT_REF, CLIENT_RULE, at(10))
    sixth = await store.count_client_failure(CLIENT_REF, CLIENT_RULE, at(10.5))

    assert (fifth, sixth) == (None, at(10.5) + CLIENT_RULE.lock_for)


async def test_clients_are_counted_apart_from_each_other_and_from_nirs(
    store: ChallengeStore,
) -> None:
    """One client's throttle leaves other clients, and every NIR, as they were; a NIR reset
    does not lift it."""
    for second in range(5):
        await store.count_client_failure(CLIENT_REF, CLIENT_RULE, at(second))
    await wrong(store, at(5))

    await store.reset(NIR_REF)

    assert await store.client_throttle(CLIENT_REF, at(6)) == at(4) + CLIENT_RULE.lock_for
    assert await store.client_throttle(OTHER_CLIENT_REF, at(6)) is None
    assert await store.count_client_failure(OTHER_CLIENT_REF, CLIENT_RULE, at(6)) is None
    assert await status(store, NIR_REF, at(6)) == NirStatus((), 0, 0, 0)
    assert await store.active_locks(OTHER_REF, at(6), UNFAMILIAR) == ()


async def test_parallel_client_failures_set_the_throttle_exactly_once(
    store: ChallengeStore,
) -> None:
    """50 concurrent failures of one client: exactly one of them sets the throttle."""
    ends = await asyncio.gather(
        *(store.count_client_failure(CLIENT_REF, CLIENT_RULE, T0) for _ in range(50))
    )

    assert [end for end in ends if end is not None] == [T0 + CLIENT_RULE.lock_for]
    assert await store.client_throttle(CLIENT_REF, T0) == T0 + CLIENT_RULE.lock_for


# -- a rotation of the secret key (adopt) --------------------------------------------

ROTATED = Keyring(b"contract-test-key-after-rotation!", [b"contract-test-key-0123456789abcdef"])
NEW_REF = ROTATED.nir_ref(NIR)
NEW_CLIENT_REF = ROTATED.client_ref("203.0.113.7")


async def test_adopt_moves_locks_counters_and_quota_under_the_new_ref(
    store: ChallengeStore,
) -> None:
    """What a NIR had under the previous key — a lock, failures, codes sent, the ceiling's
    count — is all under the new ref after ``adopt``, and nothing is left under the old."""
    assert ROTATED.previous_nir_refs(NIR) == (NIR_REF,)
    await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(0))
    await wrong(store, at(0), CODE_RULE)
    lock = await lock_passwords(store)
    before = await status(store, NIR_REF, at(3))
    assert before == NirStatus((lock,), 3, 1, 1)

    assert await store.adopt(NEW_REF, (NIR_REF,), at(3))

    assert await status(store, NEW_REF, at(3)) == before
    assert await store.active_locks(NEW_REF, at(3), UNFAMILIAR) == (lock,)
    assert await status(store, NIR_REF, at(3)) == NirStatus((), 0, 0, 0)
    assert not await store.adopt(NEW_REF, (NIR_REF,), at(3))  # moved once, found no more
    # the ceiling's count came along: 1 code + 3 passwords, so the fifth failure suspends
    fifth = await store.settle_failure(NEW_REF, replace(CODE_RULE, ceiling=5), "fifth", at(4))
    assert fifth.lock == Lock(LockKind.SUSPENDED, None, UNTRUSTED)


async def test_adopt_merges_with_what_the_new_ref_already_has(store: ChallengeStore) -> None:
    """Both refs' failures count together, and both refs' locks stand: here a suspension
    from before the rotation and a code lock set after it."""
    await wrong(store, at(0), CODE_RULE)
    ceiling = replace(PASSWORD_RULE, ceiling=2)
    suspension = (await wrong(store, at(1), ceiling)).lock  # under the old ref
    for second in range(2):
        await wrong(store, at(second), nir_ref=NEW_REF)
    code_lock = None
    for second in range(3):
        code_lock = (await wrong(store, at(second), CODE_RULE, nir_ref=NEW_REF)).lock

    assert await store.adopt(NEW_REF, (NIR_REF,), at(2))

    assert suspension == Lock(LockKind.SUSPENDED, None, UNTRUSTED)
    assert code_lock == Lock(LockKind.CODE_ATTEMPTS, at(2) + LOCK_FOR)
    merged = await status(store, NEW_REF, at(2))
    assert (merged.password_failures, merged.code_failures) == (3, 4)
    assert set(merged.locks) == {suspension, code_lock}
    much_later = at(2) + timedelta(days=365)
    assert await store.active_locks(NEW_REF, much_later, UNFAMILIAR) == (suspension,)


async def test_adopt_never_shortens_a_lock(store: ChallengeStore) -> None:
    """Of the two refs' locks of one kind, the one that ends later is kept."""
    for second in range(3):
        await wrong(store, at(second), nir_ref=NEW_REF)  # ends at 32
    later: Lock | None = None
    for second in range(3):
        later = (await wrong(store, at(10 + second))).lock  # ends at 42
    assert later == Lock(LockKind.PASSWORD_ATTEMPTS, at(12) + LOCK_FOR, UNTRUSTED)

    await store.adopt(NEW_REF, (NIR_REF,), at(13))

    assert await store.active_locks(NEW_REF, at(35), UNFAMILIAR) == (later,)
    assert await store.active_locks(NEW_REF, at(42), UNFAMILIAR) == ()


async def test_adopt_moves_a_client_address_throttle_and_its_failures(
    store: ChallengeStore,
) -> None:
    """A client address throttled under the previous key stays throttled under the new one,
    and its failures keep counting after the throttle."""
    for second in range(5):
        await store.count_client_failure(CLIENT_REF, CLIENT_RULE, at(second))
    await store.count_client_failure(NEW_CLIENT_REF, CLIENT_RULE, at(3))

    assert await store.adopt(NEW_CLIENT_REF, ROTATED.previous_client_refs("203.0.113.7"), at(5))

    until = at(4) + CLIENT_RULE.lock_for
    assert await store.client_throttle(NEW_CLIENT_REF, at(5)) == until
    assert await store.client_throttle(CLIENT_REF, at(5)) is None
    rule = replace(CLIENT_RULE, limit=7, window=timedelta(seconds=60))
    assert await store.count_client_failure(NEW_CLIENT_REF, rule, until) == until + rule.lock_for


async def test_adopt_without_previous_state_changes_nothing(store: ChallengeStore) -> None:
    """A NIR with nothing under the previous key: ``adopt`` finds nothing and leaves the
    new ref's state as it was; adopting a ref from itself is a no-op."""
    await wrong(store, at(0), nir_ref=NEW_REF)

    assert not await store.adopt(NEW_REF, (NIR_REF, OTHER_REF), at(1))
    assert not await store.adopt(NEW_REF, (NEW_REF,), at(1))

    assert await status(store, NEW_REF, at(1)) == NirStatus((), 1, 0, 0)
    assert await status(store, OTHER_REF, at(1)) == NirStatus((), 0, 0, 0)


async def test_parallel_adopts_move_the_state_once_and_lose_nothing(
    store: ChallengeStore,
) -> None:
    """Ten requests adopt the same NIR at once: its lock and counts end up under the new ref
    exactly once (a merge repeated in parallel adds nothing)."""
    await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(0))
    lock = await lock_passwords(store)

    await asyncio.gather(*(store.adopt(NEW_REF, (NIR_REF,), at(3)) for _ in range(10)))

    assert await status(store, NEW_REF, at(3)) == NirStatus((lock,), 3, 0, 1)
    assert await status(store, NIR_REF, at(3)) == NirStatus((), 0, 0, 0)


# -- Redis only: key layout, TTLs, client factory, outages -----------------------------


RedisWithKeys = tuple[RedisChallengeStore, Callable[[], Awaitable[dict[str, int]]]]


@pytest.fixture
async def redis_keys() -> AsyncIterator[RedisWithKeys]:
    """A Redis store, and a function listing its keys with their PTTL."""
    prefix = new_test_prefix()
    async with AsyncExitStack() as stack:
        try:
            store = await stack.enter_async_context(redis_store(prefix=prefix))
        except DependencyUnavailable as error:
            unreachable(f"Redis unreachable at {redis_test_url()} ({error.__cause__})")
        client = Redis.from_url(redis_test_url(), decode_responses=True)
        stack.push_async_callback(client.aclose)

        async def listing() -> dict[str, int]:
            return {key: await client.pttl(key) for key in await keys_of(client, prefix)}

        yield store, listing


async def fill(store: ChallengeStore) -> str:
    """Many keys of NIR_REF (counters, day, ceiling, in flight, quota, a lock, the login
    generation, a login)."""
    await wrong(store, at(0), CODE_RULE)
    await store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, at(0))
    await ticket(store, CODE_RULE, at(0))
    await lock_passwords(store)
    await store.end_logins(NIR_REF, LOGIN_TTL_DELTA)
    login_id = await new_login(store, replace(LOGIN, generation=await store.generation(NIR_REF)))
    await store.set_code(login_id, "d" * 64, at(900))
    return login_id


@pytest.mark.redis
async def test_redis_keys_hold_no_secret_and_all_expire(redis_keys: RedisWithKeys) -> None:
    """No NIR, 13-digit run, login id or digest in a key; each key's TTL fits its rule."""
    store, listing = redis_keys
    login_id = await fill(store)

    ttls = await listing()

    assert len(ttls) == 10
    for key, ttl in ttls.items():
        assert not re.search(r"\d{13}", key), key
        assert login_id.rpartition(".")[2] not in key
        assert "d" * 64 not in key
        limit = {
            "failures": WINDOW,
            "quota": QUOTA.window,
            "lock": LOCK_FOR,
            "pending": PENDING_FOR,
            "daily": DAY,
            "ceiling": CEILING_KEPT,
        }
        kind = key.split(":")[2]
        longest = limit.get(kind, timedelta(seconds=LOGIN_TTL))
        assert 0 < ttl <= longest // timedelta(milliseconds=1), (key, ttl)


@pytest.mark.redis
async def test_redis_adopted_keys_keep_their_expiry(redis_keys: RedisWithKeys) -> None:
    """Keys moved by ``adopt`` still expire within their rule (a suspension never); the old
    ref keeps only its attempt in flight, its login and the generation that login needs."""
    store, listing = redis_keys
    await fill(store)
    await store.settle_failure(NIR_REF, replace(CODE_RULE, ceiling=5), "fifth", at(3))

    await store.adopt(NEW_REF, (NIR_REF,), at(3))

    ttls = await listing()
    old = sorted(key.split(":")[2] for key in ttls if NIR_REF in key)
    assert old == ["generation", "login", "pending"]
    moved = {key.split(":", 2)[2]: ttl for key, ttl in ttls.items() if NEW_REF in key}
    assert len(moved) == 8
    assert moved.pop("lock:suspended:untrusted") == -1
    for key, ttl in moved.items():
        longest = {"failures": WINDOW, "quota": QUOTA.window, "lock": LOCK_FOR, "daily": DAY}
        limit = longest.get(key.split(":")[0], CEILING_KEPT)
        assert 0 < ttl <= limit // timedelta(milliseconds=1), (key, ttl)


def key_slot(key: str) -> int:
    """Redis Cluster's slot of a key: CRC16 (XMODEM) of its hash tag, modulo 16384."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start != -1 and end > start + 1:
        key = key[start + 1 : end]
    crc = 0
    for byte in key.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


@pytest.mark.redis
async def test_redis_keys_of_one_nir_share_one_cluster_slot(redis_keys: RedisWithKeys) -> None:
    """Every key of a NIR carries the same hash tag, so each script stays on one slot."""
    store, listing = redis_keys
    await fill(store)
    await wrong(store, at(0), nir_ref=OTHER_REF)

    keys = list(await listing())

    tags = {re.findall(r"\{[^}]*\}", key)[0] for key in keys}
    assert tags == {f"{{{NIR_REF}}}", f"{{{OTHER_REF}}}"}
    slots = {key_slot(key) for key in keys if NIR_REF in key}
    assert slots == {key_slot(f"{{{NIR_REF}}}")}
    assert key_slot("123456789") == 12739  # the reference check value of CRC16/XMODEM


@pytest.mark.redis
async def test_redis_client_keys_hide_the_address_share_a_slot_and_expire(
    redis_keys: RedisWithKeys,
) -> None:
    """A client's two keys carry its ref as hash tag, never the address, and expire with
    their rule."""
    store, listing = redis_keys
    for second in range(5):
        await store.count_client_failure(CLIENT_REF, CLIENT_RULE, at(second))

    ttls = await listing()

    assert sorted(key.split(":", 1)[1] for key in ttls) == [
        f"{{{CLIENT_REF}}}:client:failures",
        f"{{{CLIENT_REF}}}:client:throttle",
    ]
    for key, ttl in ttls.items():
        assert "203.0.113" not in key
        longest = CLIENT_RULE.window if key.endswith("failures") else CLIENT_RULE.lock_for
        assert 0 < ttl <= longest // timedelta(milliseconds=1), (key, ttl)


@pytest.mark.redis
async def test_redis_generation_outlives_every_login_made_before_or_under_it(
    redis_keys: RedisWithKeys,
) -> None:
    """end_logins keeps the generation at least ``login_ttl``; a longer login made under it
    extends it; a later end_logins never shortens it (else ended logins could come back)."""
    store, listing = redis_keys

    def generation_ttl(ttls: dict[str, int]) -> int:
        (ttl,) = [ttl for key, ttl in ttls.items() if key.endswith(":generation")]
        return ttl

    await store.end_logins(NIR_REF, timedelta(seconds=30))
    assert 29_000 < generation_ttl(await listing()) <= 30_000
    generation = await store.generation(NIR_REF)
    await new_login(store, replace(LOGIN, generation=generation), ttl_seconds=120)
    assert 119_000 < generation_ttl(await listing()) <= 120_000
    await store.end_logins(NIR_REF, timedelta(seconds=30))
    assert 119_000 < generation_ttl(await listing()) <= 120_000


@pytest.mark.redis
async def test_redis_login_key_disappears_after_its_ttl(redis_keys: RedisWithKeys) -> None:
    """The login key carries ``ttl_seconds``: Redis drops it even if nobody reads it."""
    store, listing = redis_keys
    login_id = await new_login(store, ttl_seconds=1)
    assert len(await listing()) == 1

    await asyncio.sleep(1.2)

    assert await listing() == {}
    assert await store.get_login(login_id, at(0)) is None


def test_client_from_url_reads_sentinel_urls() -> None:
    """The Sentinel URL gives the sentinels, the service, the master's password and the db."""
    url = "redis+sentinel://s%40cret@10.0.0.1:26380,[::1],sentinel-3:26379/main-service/2"

    client = redis_client_from_url(url, 0.5)

    assert isinstance(client, Redis)
    pool: Any = client.connection_pool
    sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
    assert [(s["host"], s["port"]) for s in sentinels] == [
        ("10.0.0.1", 26380),
        ("::1", 26379),
        ("sentinel-3", 26379),
    ]
    assert pool.service_name == "main-service"
    assert (pool.connection_kwargs["password"], pool.connection_kwargs["db"]) == ("s@cret", 2)
    assert sentinels[0]["password"] is None  # the password is the master's
    assert pool.connection_kwargs["socket_timeout"] == 0.5


def test_client_from_url_reads_cluster_urls() -> None:
    """The cluster URL gives the startup nodes, the credentials, TLS and the query's options."""
    url = "rediss+cluster://ops:s%40cret@10.0.0.1:7000,[::1],node-3:7002/?ssl_cert_reqs=none"

    client = redis_client_from_url(url, 0.5)

    assert isinstance(client, RedisCluster)
    assert [(node.host, node.port) for node in client.startup_nodes] == [
        ("10.0.0.1", 7000),
        ("::1", 6379),
        ("node-3", 7002),
    ]
    options = client.connection_kwargs
    assert (options["username"], options["password"]) == ("ops", "s@cret")
    assert options["connection_class"] is SSLConnection
    assert options["ssl_cert_reqs"] == "none"
    assert options["socket_timeout"] == options["socket_connect_timeout"] == 0.5
    assert options["decode_responses"] is True
    assert options["health_check_interval"] > 0
    assert client.retry.get_retries() == 0  # MOVED/ASK are still followed, within the call
    plain = redis_client_from_url("redis+cluster://h:7000", 0.5)
    assert isinstance(plain, RedisCluster)
    assert plain.connection_kwargs["connection_class"] is not SSLConnection
    assert plain.connection_kwargs["password"] is None


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("redis+cluster://", "expected redis"),
        ("redis+cluster://pw@/", "expected redis"),
        ("redis+cluster://h:1/3", "expected redis"),
        ("redis+cluster://h:1/?db=2", "only database 0"),
        ("redis+cluster://h:1,,h:2", "host is missing"),
        ("redis+cluster://h:x", "invalid literal"),
    ],
)
def test_client_from_url_refuses_bad_cluster_urls(url: str, error: str) -> None:
    """No node, a database other than 0, an empty host or a bad port: refused at startup."""
    with pytest.raises(ValueError, match=error):
        redis_client_from_url(url, 0.5)


@pytest.mark.parametrize("url", ["redis://h:1/3", "rediss://h:1/0", "unix:///run/redis.sock"])
def test_client_from_url_answers_outages_fast(url: str) -> None:
    """Every URL scheme gets the timeout, a health check and no retry."""
    client = redis_client_from_url(url, 0.5)

    assert isinstance(client, Redis)
    options = client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == options["socket_connect_timeout"] == 0.5
    assert options["health_check_interval"] > 0
    assert options["retry"].get_retries() == 0


@pytest.fixture
async def redis_server() -> AsyncIterator[ThrowawayRedisServer]:
    if shutil.which("redis-server") is None:
        unreachable("redis-server is not on PATH")
    async with throwaway_redis_server() as server:
        yield server


def every_method(store: ChallengeStore, login_id: str) -> list[Callable[[], Awaitable[object]]]:
    return [
        lambda: store.active_locks(NIR_REF, T0, UNFAMILIAR),
        lambda: store.locks_and_generation(NIR_REF, T0),
        lambda: store.generation(NIR_REF),
        lambda: store.end_logins(NIR_REF, LOGIN_TTL_DELTA),
        lambda: store.claim_attempt(NIR_REF, PASSWORD_RULE, UNFAMILIAR, T0),
        lambda: store.settle_failure(NIR_REF, PASSWORD_RULE, "ticket", T0),
        lambda: store.settle_success(NIR_REF, PASSWORD_RULE, "ticket", login_complete=True),
        lambda: store.release_attempt(NIR_REF, PASSWORD_RULE, "ticket"),
        lambda: store.create_login(LOGIN, LOGIN_TTL),
        lambda: store.get_login(login_id, T0),
        lambda: store.reserve_code(NIR_REF, QUOTA, UNFAMILIAR, T0),
        lambda: store.set_code(login_id, "digest", at(900)),
        lambda: store.release_code(NIR_REF, "ticket", login_id, "digest"),
        lambda: store.consume_login(login_id, "digest"),
        lambda: status(store, NIR_REF, T0),
        lambda: store.reset(NIR_REF),
        # NIR_REF as a client ref: on the NIR's slot, which the cluster test keeps up
        lambda: store.client_throttle(NIR_REF, T0),
        lambda: store.count_client_failure(NIR_REF, CLIENT_RULE, T0),
        store.ping,
    ]


async def assert_all_unavailable(store: ChallengeStore, login_id: str, seconds: float) -> None:
    """Every method raises DependencyUnavailable, each within twice ``seconds``."""
    for call in every_method(store, login_id):
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable):
            await call()
        assert time.monotonic() - started < 2 * seconds


@pytest.mark.redis
async def test_a_crashed_redis_fails_closed_then_recovers(
    redis_server: ThrowawayRedisServer,
) -> None:
    """Killed: each method raises DependencyUnavailable at once; restarted: the same store works."""
    async with redis_store(redis_server.url, client_timeout=0.5) as store:
        login_id = await new_login(store)
        await redis_server.stop()

        await assert_all_unavailable(store, login_id, 0.5)
        await redis_server.start()

        await store.ping()
        assert (await wrong(store, T0, CODE_RULE)).failures == 1
        assert await store.get_login(login_id, T0) is None  # no persistence: the login is gone


@pytest.mark.redis
async def test_a_frozen_redis_fails_closed_within_the_timeout(
    redis_server: ThrowawayRedisServer,
) -> None:
    """Frozen (no answer at all): every method gives up after the socket timeout."""
    async with redis_store(redis_server.url, client_timeout=0.5) as store:
        login_id = await new_login(store)
        redis_server.pause()
        try:
            await assert_all_unavailable(store, login_id, 0.5)
        finally:
            redis_server.resume()

        assert await store.get_login(login_id, T0) is not None


@pytest.mark.redis
async def test_a_sentinel_url_reaches_the_master(redis_server: ThrowawayRedisServer) -> None:
    """Through a real Sentinel, the store finds the master it names and works."""
    async with throwaway_redis_server(monitor=redis_server) as sentinel:
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{SENTINEL_SERVICE}/0"
        async with redis_store(url) as store:
            lock = await lock_passwords(store)

            assert await store.active_locks(NIR_REF, at(3), UNFAMILIAR) == (lock,)


# -- Redis Cluster only: slots, nodes, outages ---------------------------------------


@pytest.fixture
async def cluster_store(
    redis_cluster: ThrowawayRedisCluster,
) -> AsyncIterator[tuple[RedisChallengeStore, str]]:
    prefix = new_test_prefix()
    async with redis_store(redis_cluster.url, prefix=prefix) as store:
        yield store, prefix


@pytest.mark.redis
async def test_cluster_keeps_each_nir_on_one_slot_and_spreads_nirs_over_nodes(
    redis_cluster: ThrowawayRedisCluster, cluster_store: tuple[RedisChallengeStore, str]
) -> None:
    """30 NIRs: each one's keys (login included) sit on its hash tag's slot, on one node."""
    store, prefix = cluster_store
    refs = [KEYRING.nir_ref(f"1{index:012d}") for index in range(30)]
    for ref in refs:
        await wrong(store, at(0), nir_ref=ref)
        await store.reserve_code(ref, QUOTA, UNFAMILIAR, at(0))
        await store.end_logins(ref, timedelta(hours=1))
        generation = await store.generation(ref)
        await new_login(store, replace(LOGIN, nir_ref=ref, generation=generation))

    homes: dict[str, set[tuple[int, int]]] = {ref: set() for ref in refs}  # ref -> (port, slot)
    async with AsyncExitStack() as stack:
        for node in redis_cluster.nodes:
            client = Redis(port=node.port, decode_responses=True)
            stack.push_async_callback(client.aclose)
            for key in await keys_of(client, prefix):  # this node's keys only
                slot = int(await client.cluster("KEYSLOT", key))
                homes[re.findall(r"\{([^}]*)\}", key)[0]].add((node.port, slot))
                assert slot == key_slot(key)

    assert all(len(home) == 1 for home in homes.values()), homes
    assert {ref: next(iter(home))[1] for ref, home in homes.items()} == {
        ref: key_slot(f"{{{ref}}}") for ref in refs
    }
    assert {port for home in homes.values() for port, _ in home} == {
        node.port for node in redis_cluster.nodes
    }
    whole = redis_client_from_url(redis_cluster.url, 2.0)
    try:
        # failures, daily, ceiling, quota, generation and login of each: SCAN on every primary
        assert len(await keys_of(whole, prefix)) == 6 * len(refs)
    finally:
        await whole.aclose()


@pytest.mark.redis
async def test_a_cluster_node_down_fails_closed_only_its_own_nirs() -> None:
    """One primary killed: other NIRs still work, even with their scripts flushed from their
    node (nothing goes to every primary), and ``ping`` fails; all killed: every method fails
    closed within the timeout."""
    if cluster_binaries_missing():
        unreachable("redis-server or redis-cli is not on PATH")
    prefix = new_test_prefix()
    async with (
        throwaway_redis_cluster() as cluster,
        redis_store(cluster.url, prefix=prefix, client_timeout=0.5) as store,
    ):
        login_id = await new_login(store)
        holders = []
        for node in cluster.nodes:
            client = Redis(port=node.port)
            try:
                await client.script_flush()
                if await keys_of(client, prefix):
                    holders.append(node)
            finally:
                await client.aclose()
        assert len(holders) == 1
        await next(node for node in cluster.nodes if node not in holders).stop()

        for call in every_method(store, login_id)[:-1]:
            await call()
        with pytest.raises(DependencyUnavailable):
            await store.ping()  # ready only when every primary answers
        await cluster.stop()
        await assert_all_unavailable(store, login_id, 0.5)
