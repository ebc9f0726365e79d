"""The rows of the report: what each measures, against which anchor, and the issue's target.

A row's ``measure`` runs one repetition: the service, then its anchor, back to back.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bench.load import Measurement, Stream

EMBEDDED, REDIS = "embedded", "redis_postgres"
BOTH = (EMBEDDED, REDIS)
MIB = 1024 * 1024


class Runner(Protocol):
    """What a row needs of the run: measure streams on a target by name."""

    memory_calls: int

    async def measure(
        self, target: str, streams: list[Stream], *, channels: int = 1, seconds: float = 0.0
    ) -> Measurement: ...

    async def rss(self, target: str) -> int: ...


@dataclass(frozen=True)
class Sample:
    """One repetition: the service's value and CPU per call beside the anchor's, and the ratio."""

    service: float
    service_cpu: float  # seconds per call; NaN where it means nothing
    anchor: float
    anchor_cpu: float
    ratio: float


@dataclass(frozen=True)
class Row:
    key: str  # for --only
    title: str
    anchor: str  # what the service is compared with
    unit: str
    target: str  # as the issue states it
    passes: Callable[[float], bool]
    backends: tuple[str, ...]
    measure: Callable[[Runner], Awaitable[Sample]]
    once: bool = False  # not repeated (the memory row is long)


def _versus(
    streams: list[Stream],
    anchor: str,
    anchor_streams: list[Stream] | None = None,
    service: str = "service",
    channels: int = 1,
) -> Callable[[Runner], Awaitable[Sample]]:
    async def measure(run: Runner) -> Sample:
        ours = await run.measure(service, streams, channels=channels)
        theirs = await run.measure(anchor, anchor_streams or streams, channels=channels)
        ratio = ours.rate() / theirs.rate() if theirs.rate() else math.nan
        return Sample(ours.rate(), ours.cpu_per_call(), theirs.rate(), theirs.cpu_per_call(), ratio)

    return measure


async def _p99_under_logins(run: Runner) -> Sample:
    idle = await run.measure("service", [Stream("lock_status", 1)])
    busy = await run.measure("service", [Stream("lock_status", 1), Stream("login_mobile", 32)])
    loaded, alone = busy.streams[0].percentile(99) * 1000, idle.streams[0].percentile(99) * 1000
    return Sample(loaded, math.nan, alone, math.nan, loaded / alone if alone else math.nan)


MEMORY_MIX = [
    Stream("lock_status", 16),
    Stream("login_mobile", 8),
    Stream("login_web", 4, first_account=8),  # accounts of their own
]


async def _memory(run: Runner) -> Sample:
    await run.measure("service", MEMORY_MIX)  # warm-up: pools, caches, first connections
    start, calls = await run.rss("service"), 0
    while calls < run.memory_calls:
        done = await run.measure("service", MEMORY_MIX, seconds=10.0)
        calls += sum(stream.calls for stream in done.streams)
        if not calls:
            break
    end = await run.rss("service")
    return Sample(end / MIB, math.nan, start / MIB, math.nan, end / start)


def _login(in_flight: int) -> list[Stream]:
    return [Stream("login_mobile", in_flight)]


def _lock(in_flight: int) -> list[Stream]:
    return [Stream("lock_status", in_flight)]


def _at_least(bound: float) -> Callable[[float], bool]:
    return lambda ratio: ratio >= bound


ARGON2 = "argon2id verify in a grpc.aio handler, one thread per core"
ROWS = [
    Row("login16", "CheckCredentials mobile, 16 in flight", ARGON2, "logins/s", "≥ 0.92 ×",
        _at_least(0.92), BOTH, _versus(_login(16), "argon2")),
    Row("login64", "CheckCredentials mobile, 64 in flight", ARGON2, "logins/s", "≥ 0.92 ×",
        _at_least(0.92), BOTH, _versus(_login(64), "argon2")),
    Row("login1", "CheckCredentials mobile, 1 in flight", ARGON2, "logins/s", "(none)",
        lambda _: True, BOTH, _versus(_login(1), "argon2")),
    Row("web16", "full web login (password, email, code), 16 in flight", ARGON2, "logins/s",
        "≥ 0.85 ×", _at_least(0.85), BOTH,
        _versus([Stream("login_web", 16)], "argon2", anchor_streams=_login(16))),
    Row("lock16", "GetLockStatus, 16 in flight", "bare grpc.aio echo", "calls/s", "≥ 0.8 ×",
        _at_least(0.8), (EMBEDDED,), _versus(_lock(16), "echo")),
    Row("lock64", "GetLockStatus, 64 in flight", "bare grpc.aio echo", "calls/s", "≥ 0.7 ×",
        _at_least(0.7), (EMBEDDED,), _versus(_lock(64), "echo")),
    Row("lockredis16", "GetLockStatus, 16 in flight", "echo + one Redis GET", "calls/s",
        "≥ 0.9 ×", _at_least(0.9), (REDIS,), _versus(_lock(16), "redis")),
    Row("p99", "GetLockStatus p99, 1 in flight, 32 logins in flight", "the same call idle",
        "ms", "≤ 3 × idle", lambda ratio: ratio <= 3, BOTH, _p99_under_logins),
    Row("memory", "service RSS after the mixed calls", "RSS after warm-up", "MiB",
        "1 ± 0.05", lambda ratio: abs(ratio - 1) <= 0.05, BOTH, _memory, once=True),
    Row("workers_lock", "GetLockStatus, 16 in flight, --workers 2", "one process", "calls/s",
        "≥ 1 ×", _at_least(1.0), (REDIS,),
        _versus(_lock(16), "service", service="service2", channels=4)),
    Row("workers_login", "CheckCredentials mobile, 16 in flight, --workers 2", "one process",
        "logins/s", "≥ 1 ×", _at_least(1.0), (REDIS,),
        _versus(_login(16), "service", service="service2", channels=4)),
]  # fmt: skip
ROW_KEYS = [row.key for row in ROWS]
QUICK_ROWS = ("login16", "lock16")
# --quick fails (exit status 1) only on a gross regression of these ratios.
QUICK_FLOORS = {"login16": 0.6, "lock16": 0.3}


def guarded_ratio(sample: Sample) -> float:
    """The better of the calls/s ratio and the CPU-per-call ratio (anchor's / service's).

    Other work on the machine moves calls/s far more than CPU per call: the guard fails
    only when both fell, which a regression of the code does and a busy neighbour rarely.
    """
    by_cpu = sample.anchor_cpu / sample.service_cpu if sample.service_cpu else math.nan
    return max((ratio for ratio in (sample.ratio, by_cpu) if not math.isnan(ratio)), default=0.0)
