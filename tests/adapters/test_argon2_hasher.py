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

from ameli_grpc.adapters.argon2_hasher import (
    HASH_THREAD_NAME,
    HASH_THREAD_NICENESS,
    Argon2PasswordHasher,
)

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
