"""``Argon2PasswordHasher``: argon2id off the event loop, behind a bounded admission."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import argon2
import pytest
from structlog.testing import capture_logs

from ameli_grpc.adapters.argon2_hasher import (
    HASH_THREAD_NAME,
    HASH_THREAD_NICENESS,
    Argon2PasswordHasher,
)
from tests.support.clock import Seconds

# Cheap parameters: these tests are about admission and threading, not strength.
FAST = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=1,
    memory_cost=64,
    parallelism=1,
)


@pytest.fixture
def hasher() -> Iterator[Argon2PasswordHasher]:
    hasher = Argon2PasswordHasher(FAST, workers=1, max_pending=2)
    yield hasher
    hasher.close()


async def test_it_verifies_what_it_hashed(hasher: Argon2PasswordHasher) -> None:
    """A hash verifies its own password only; a malformed hash is a wrong password."""
    hashed = await hasher.hash("Bon-Mot-de-Passe-1")
    assert await hasher.verify(hashed, "Bon-Mot-de-Passe-1")
    assert not await hasher.verify(hashed, "faux")
    assert not await hasher.verify("not a hash", "faux")
    await hasher.verify_dummy("faux")


def test_admission_refuses_a_request_that_would_wait_behind_more_than_max_pending(
    hasher: Argon2PasswordHasher,
) -> None:
    """With two allowed ahead, the third waiting request is refused and holds no place."""
    with ExitStack() as stack:
        admitted = [stack.enter_context(hasher.admission()) for _ in range(3)]
        assert admitted == [True, True, True]  # behind 0, 1, then 2: not more than 2
        with hasher.admission() as fourth:
            assert not fourth
            assert hasher.pending == 3
    assert hasher.pending == 0


def test_each_change_of_the_pending_count_is_reported() -> None:
    """``on_pending`` hears every admission and release; a refused request changes nothing."""
    depths: list[int] = []
    hasher = Argon2PasswordHasher(FAST, workers=1, max_pending=1, on_pending=depths.append)
    try:
        with hasher.admission(), hasher.admission(), hasher.admission() as third:
            assert not third
    finally:
        hasher.close()
    assert depths == [1, 2, 1, 0]


def test_a_place_is_given_back_even_when_the_attempt_fails(
    hasher: Argon2PasswordHasher,
) -> None:
    """An error inside the admitted block (a lock, an outage) frees the place."""

    def attempt_that_fails() -> None:
        with hasher.admission():
            raise RuntimeError("store down")

    with pytest.raises(RuntimeError):
        attempt_that_fails()
    assert hasher.pending == 0


class SteppingTimer:
    """A job's timer that says each job took ``step`` seconds (two reads per job)."""

    def __init__(self, step: float) -> None:
        self.step = step
        self._now = 0.0
        self._reads = 0

    def __call__(self) -> float:
        self._reads += 1
        if self._reads % 2 == 0:
            self._now += self.step
        return self._now


async def test_admission_refuses_a_request_that_would_wait_longer_than_max_wait() -> None:
    """Jobs that take 0.4 s on 2 threads, a bound of 1 s: admitted behind 0 to 5 pending
    (at most 2 rounds, 0.8 s), refused behind 6 (1.2 s), though the count would allow it."""
    timer = SteppingTimer(0.4)
    hasher = Argon2PasswordHasher(FAST, workers=2, max_pending=32, max_wait=1.0, timer=timer)
    try:
        assert hasher.expected_wait == 0.0  # nothing measured yet: the count alone
        await hasher.verify_dummy("x")
        assert hasher.expected_wait == 0.0  # no one ahead
        with ExitStack() as stack:
            admitted = [stack.enter_context(hasher.admission()) for _ in range(6)]
            assert admitted == [True] * 6
            assert hasher.expected_wait == pytest.approx(1.2)
            with hasher.admission() as seventh:
                assert not seventh
                assert hasher.pending == 6
    finally:
        hasher.close()


async def test_the_expected_wait_follows_the_recent_durations() -> None:
    """A moving average: slower jobs raise the expected wait, faster ones bring it down; with
    ``max_wait`` 0 there is no bound in time."""
    timer = SteppingTimer(0.1)
    hasher = Argon2PasswordHasher(FAST, workers=1, max_pending=1000, max_wait=0, timer=timer)
    try:
        await hasher.verify_dummy("x")
        with hasher.admission(), hasher.admission():
            assert hasher.expected_wait == pytest.approx(0.2)
            timer.step = 10.0
            await hasher.verify_dummy("x")
            slowed = hasher.expected_wait
            assert slowed > 0.2
            with hasher.admission() as admitted:  # no bound in time: admitted all the same
                assert admitted
            timer.step = 0.1
            for _ in range(30):
                await hasher.verify_dummy("x")
            assert hasher.expected_wait < slowed / 10
    finally:
        hasher.close()


async def test_concurrent_admitted_verifications_complete_and_give_their_places_back(
    hasher: Argon2PasswordHasher,
) -> None:
    """Three verifies admitted at once all complete on the one worker, then hold nothing."""
    hashed = await hasher.hash("x")

    async def admitted_verify() -> bool:
        with hasher.admission() as admitted:
            return admitted and await hasher.verify(hashed, "x")

    results = await asyncio.gather(*(admitted_verify() for _ in range(3)))

    assert results == [True, True, True]
    assert hasher.pending == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority: Linux")
async def test_hashing_threads_run_below_the_event_loop_and_are_named(
    hasher: Argon2PasswordHasher,
) -> None:
    """A hashing thread is niced below the event loop's thread, and named for ``top -H``."""

    def seen_from_the_hashing_thread() -> tuple[int, str]:
        tid = threading.get_native_id()
        name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        return os.getpriority(os.PRIO_PROCESS, tid), name

    loop_priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    priority, name = await hasher._run(seen_from_the_hashing_thread)

    assert priority == min(19, loop_priority + HASH_THREAD_NICENESS)
    assert name == HASH_THREAD_NAME.decode()


async def test_a_queue_that_stands_has_its_bound_in_time_lowered_until_no_longer_shed() -> None:
    """Jobs of 0.1 s on one thread, bounds of 1 s and 0.25 s: a fourth request (0.3 s ahead)
    is admitted while the queue is young, refused once it has stood for over 1 s, refused
    again after it emptied as long as requests are shed, admitted 1 s after the last."""
    clock = Seconds()
    hasher = Argon2PasswordHasher(
        FAST, workers=1, max_pending=32, max_wait=1.0, overload_wait=0.25,
        timer=SteppingTimer(0.1), now=clock,
    )  # fmt: skip

    def fourth_admitted() -> bool:
        """With three admitted (the queue short when the first came), whether a fourth is."""
        with ExitStack() as stack:
            assert all(stack.enter_context(hasher.admission()) for _ in range(3))
            assert hasher.expected_wait == pytest.approx(0.3)
            clock.now += 0.5
            with hasher.admission() as young:
                assert young  # the burst absorbed: 0.3 s ahead, within 1 s
            clock.now += 0.6
            with hasher.admission() as admitted:
                return admitted

    try:
        await hasher.verify_dummy("x")
        with capture_logs() as standing:
            assert not fourth_admitted()  # 1.1 s without the queue emptying
        assert [line["event"] for line in standing] == ["hash_queue_standing"]
        clock.now += 0.5  # emptied meanwhile, but shed 0.5 s ago: it still stands
        with ExitStack() as stack:
            assert all(stack.enter_context(hasher.admission()) for _ in range(3))
            with hasher.admission() as admitted:
                assert not admitted
        clock.now += 1.1  # nothing shed for over a second: the long bound again
        with capture_logs() as drained, ExitStack() as stack:
            assert all(stack.enter_context(hasher.admission()) for _ in range(3))
            with hasher.admission() as admitted:
                assert admitted
        assert [line["event"] for line in drained] == ["hash_queue_drained"]
    finally:
        hasher.close()


async def test_without_an_overload_bound_a_standing_queue_keeps_the_long_one() -> None:
    """``overload_wait`` 0: a queue that has stood for seconds still admits up to ``max_wait``."""
    clock = Seconds()
    hasher = Argon2PasswordHasher(
        FAST, workers=1, max_pending=32, max_wait=1.0, overload_wait=0,
        timer=SteppingTimer(0.1), now=clock,
    )  # fmt: skip
    try:
        await hasher.verify_dummy("x")
        with ExitStack() as stack:
            assert all(stack.enter_context(hasher.admission()) for _ in range(3))
            clock.now += 5
            with hasher.admission() as admitted:
                assert admitted
    finally:
        hasher.close()
