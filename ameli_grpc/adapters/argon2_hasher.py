"""``Argon2PasswordHasher``: argon2id (argon2-cffi) off the event loop.

A verify takes tens of milliseconds of CPU; on the event loop it would stall
every other call, so each hash and verify runs in a thread pool sized to the
cores (argon2-cffi releases the GIL while it computes). Those threads run at a
lower scheduling priority than the event loop (``HASH_THREAD_NICENESS``): when
both want a core the kernel runs the loop, so cheap calls keep being answered
while the pool is saturated, and hashing takes whatever CPU is left.

The pool's queue is bounded by admission (SPEC §7.5): a request that would
wait behind more than ``max_pending`` admitted verifications is turned away
at once rather than queued, so a burst costs late callers a fast refusal
instead of costing every caller a long wait. The wait is bounded in time
too (``max_wait``): a count means a wait only at a given speed, and hashing
slows down when the cores are taken by other work (the refusals of a flood
that retries at once, a noisy neighbour), when 32 verifications can be
seconds. The expected wait is the verifications ahead, per thread, times a
verification's recent duration (measured, a moving average).

A burst and a flood look alike for a second; they differ in how long the
queue stands. Once the queue has not emptied for ``max_wait`` (demand above
what the threads do, for longer than any admitted request may wait), the
bound in time falls to ``overload_wait``, and it stays there while requests
keep being shed and for ``max_wait`` after the last one (the controlled
delay of "Fail at Scale", Facebook, 2015). A burst is absorbed up to
``max_wait``; under sustained overload the few requests admitted are
answered in about ``overload_wait`` and a verification, rather than after
the long bound, and the threads stay busy all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import argon2
import structlog
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ameli_grpc.adapters.threads import name_this_thread

_R = TypeVar("_R")
_log = structlog.get_logger(__name__)

# OWASP Password Storage Cheat Sheet, first argon2id option: m=19 MiB, t=2, p=1.
OWASP_PARAMETERS = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=2,
    memory_cost=19 * 1024,
    parallelism=1,
)


DEFAULT_MAX_PENDING = 32
DEFAULT_MAX_WAIT = 1.0  # seconds: beyond SPEC §7.5's count, no admitted call waits for seconds
# Seconds: the bound while the queue stands (see the module); shorter than a verification, so
# in effect only a request that finds a hashing thread free is admitted.
DEFAULT_OVERLOAD_WAIT = 0.02
# The weight of the latest job's duration in the moving average.
_DURATION_WEIGHT = 0.2

# Added to a hashing thread's nice value (Linux schedules each thread on its own).
HASH_THREAD_NICENESS = 10
# The name the hashing threads show in ``top -H`` and /proc (at most 15 bytes).
HASH_THREAD_NAME = b"argon2"


class Argon2PasswordHasher:
    def __init__(
        self,
        parameters: argon2.Parameters = OWASP_PARAMETERS,
        workers: int = 0,
        max_pending: int = DEFAULT_MAX_PENDING,
        on_pending: Callable[[int], None] | None = None,
        max_wait: float = DEFAULT_MAX_WAIT,
        timer: Callable[[], float] = time.perf_counter,
        on_duration: Callable[[float], None] | None = None,
        overload_wait: float = DEFAULT_OVERLOAD_WAIT,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        """``on_pending`` is told the number of pending verifications each time it changes
        (the metrics' ``ameli_hash_queue_depth``). ``max_wait`` (seconds, 0: no bound) bounds
        the expected wait of an admitted request, ``overload_wait`` (0: no other) while the
        queue stands; ``timer`` times each job in its thread, and ``on_duration`` is told
        each job's time (``ameli_hash_duration_seconds``); ``now`` tells how long the queue
        has stood."""
        self._hasher = argon2.PasswordHasher.from_parameters(parameters)
        self._workers = workers or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(
            max_workers=self._workers,
            thread_name_prefix="argon2",
            initializer=_lower_this_thread,
        )
        self._max_pending = max_pending
        self._max_wait = max_wait
        self._overload_wait = min(overload_wait or max_wait, max_wait)
        self._now = now
        # When the queue last had no request waiting for a thread, and until when the
        # bound of a standing queue holds (``_bound``); only touched on the event loop.
        self._short_at = now()
        self._overloaded_until = -math.inf
        self._overloaded = False  # as ``_bound`` last found it: the log lines, the shedding
        self._timer = timer
        self._on_duration = on_duration
        # A job's recent duration in seconds (None until one is done); set on the event loop.
        self._duration: float | None = None
        # A hash of a random password: what an unknown NIR is verified against.
        self._dummy_hash = self._hasher.hash(os.urandom(16).hex())
        # Admitted and not yet done, queued or running; only touched on the event loop.
        self._pending = 0
        self._on_pending = on_pending

    @property
    def pending(self) -> int:
        """Verifications admitted and not yet done, queued or running."""
        return self._pending

    @property
    def expected_wait(self) -> float:
        """Seconds a request admitted now would wait before its verification starts."""
        if self._duration is None:
            return 0.0
        return self._pending // self._workers * self._duration

    @contextmanager
    def admission(self) -> Iterator[bool]:
        """True while this request holds a place; False if it would wait behind too many.

        "Behind" counts the admitted verifications, queued or running alike:
        with more than ``max_pending`` of them ahead the request holds nothing
        and the caller refuses it (so ``max_pending + 1`` run or queue at most);
        nor does it when its expected wait is above the bound in time.
        """
        now = self._now()
        bound = self._bound(now)
        if self._pending > self._max_pending or (bound > 0 and self.expected_wait > bound):
            if self._overloaded:  # shed while the queue stands: it stands on
                self._overloaded_until = now + self._max_wait
            yield False
            return
        self._changed(+1)
        try:
            yield True
        finally:
            self._changed(-1)

    def _bound(self, now: float) -> float:
        """The expected wait allowed now: ``overload_wait`` once the queue has stood for
        ``max_wait`` and while it is shed, else ``max_wait`` (0: no bound)."""
        if self._overload_wait >= self._max_wait:  # no other bound (or none at all)
            return self._max_wait
        standing = self._pending > self._workers and now - self._short_at > self._max_wait
        overloaded = standing or now < self._overloaded_until
        if overloaded != self._overloaded:
            self._overloaded = overloaded
            if overloaded:
                _log.warning(
                    "hash_queue_standing",
                    pending=self._pending,
                    expected_wait_ms=round(self.expected_wait * 1000),
                    max_wait_ms=round(self._overload_wait * 1000),
                )
            else:
                _log.info("hash_queue_drained", max_wait_ms=round(self._max_wait * 1000))
        return self._overload_wait if overloaded else self._max_wait

    def _changed(self, by: int) -> None:
        self._pending += by
        if self._pending <= self._workers:  # no request waits for a thread
            self._short_at = self._now()
        if self._on_pending is not None:
            self._on_pending(self._pending)

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(self._verify_now, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        await self._run(self._verify_now, self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _verify_now(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def _run(self, function: Callable[..., _R], *args: str) -> _R:
        loop = asyncio.get_running_loop()
        result, seconds = await loop.run_in_executor(self._pool, self._timed, function, *args)
        if self._on_duration is not None:
            self._on_duration(seconds)
        previous = self._duration
        self._duration = (
            seconds
            if previous is None
            else _DURATION_WEIGHT * seconds + (1 - _DURATION_WEIGHT) * previous
        )
        return result

    def _timed(self, function: Callable[..., _R], *args: str) -> tuple[_R, float]:
        """In a hashing thread: ``function``'s result and how long it took there."""
        started = self._timer()
        result = function(*args)
        return result, self._timer() - started


def _lower_this_thread() -> None:
    """In a new hashing thread: lower its priority below the event loop's, and name it.

    On Linux ``setpriority(PRIO_PROCESS, tid)`` changes that one thread. Elsewhere, or
    where it is not permitted, the thread keeps the process's priority: a
    slower cheap call under load, never a failure.
    """
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(
            os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + HASH_THREAD_NICENESS
        )
    name_this_thread(HASH_THREAD_NAME)
