"""The load generator: asyncio + grpc.aio callers in processes of their own (spawned).

A ``LoadPool`` keeps its processes for the whole run; each measurement sends them
``Stream``s (a call and how many in flight), split over the processes, with one shared
timetable (wall clock): a warm-up, then the measured window. A slot owns its account
(slot ``i`` of a stream logs in as account ``first_account + i``), so that no account
ever has two calls in flight. Process 0 also runs the SMTP capture server of the web
login (``smtp_port``): the service mails the codes there and the web callers read them.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

from bench.common import MOBILE_KEY, PORTAL_KEY

CALLS = ("lock_status", "login_mobile", "login_web", "flood")
START_MARGIN = 0.3  # seconds between sending a job and its start, for every process to get it


@dataclass(frozen=True)
class Stream:
    call: str
    in_flight: int
    first_account: int = 0


@dataclass
class StreamResult:
    """What one stream did within the measured window (calls that ended in it)."""

    latencies: list[float] = field(default_factory=list)  # of the calls answered
    errors: Counter[str] = field(default_factory=Counter)
    shed_latencies: list[float] = field(default_factory=list)  # of the calls shed

    @property
    def calls(self) -> int:
        return len(self.latencies)

    @property
    def shed(self) -> int:
        return len(self.shed_latencies)

    @property
    def slowest_shed(self) -> float:
        return max(self.shed_latencies, default=0.0)

    @property
    def error_rate(self) -> float:
        total = self.calls + self.errors.total()
        return self.errors.total() / total if total else 1.0

    def merge(self, other: StreamResult) -> None:
        self.latencies += other.latencies
        self.errors.update(other.errors)
        self.shed_latencies += other.shed_latencies

    def percentile(self, p: float) -> float:
        """Seconds; NaN without a call."""
        ordered = sorted(self.latencies)
        if not ordered:
            return math.nan
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


@dataclass(frozen=True)
class Job:
    address: str
    streams: tuple[tuple[Stream, tuple[int, ...]], ...]  # each stream with this process's slots
    start: float  # time.time() of the first call
    measure_from: float
    until: float
    channels: int = 1
    keys: tuple[str, str] = (PORTAL_KEY, MOBILE_KEY)  # the portal's and the mobile back end's


@dataclass
class Measurement:
    streams: list[StreamResult]
    seconds: float
    cpu_seconds: float  # of the target's processes over the window

    def rate(self, stream: int = 0) -> float:
        return self.streams[stream].calls / self.seconds

    def cpu_per_call(self, stream: int = 0) -> float:
        calls = self.streams[stream].calls
        return self.cpu_seconds / calls if calls else math.nan


def split(streams: Sequence[Stream], processes: int) -> list[list[tuple[Stream, tuple[int, ...]]]]:
    """Each process's slots of each stream (maybe none), round robin; the web login's all in
    process 0; a flood's in the other processes (when there are), so that the legitimate
    callers' latencies are the service's, not those of a load process the flood saturates."""
    parts: list[list[tuple[Stream, tuple[int, ...]]]] = [[] for _ in range(processes)]
    for stream in streams:
        first = 1 if stream.call == "flood" and processes > 1 else 0
        ways = 1 if stream.call == "login_web" else processes - first
        for index, part in enumerate(parts):
            position = index - first
            mine = range(position, stream.in_flight, ways) if 0 <= position < ways else range(0)
            part.append((stream, tuple(mine)))
    return parts


class LoadPool:
    """``processes`` spawned load processes, ready when constructed; ``close()`` them.

    ``others_nice``: added to the nice value of every process but the first (where a
    flood runs, ``split``), so that they take only the cores the service leaves, as a
    load from another machine would.
    """

    def __init__(self, processes: int = 2, smtp_port: int = 0, others_nice: int = 0) -> None:
        context = get_context("spawn")
        self._jobs = [context.Queue() for _ in range(processes)]
        self._results: Any = context.Queue()
        self._processes = [
            context.Process(
                target=_process_main,
                args=(jobs, self._results, smtp_port if index == 0 else 0),
                kwargs={"nice": others_nice if index else 0},
                daemon=True,
            )
            for index, jobs in enumerate(self._jobs)
        ]
        for process in self._processes:
            process.start()
        for _ in self._processes:
            self._results.get(timeout=60)  # "ready": imports done, SMTP listening

    async def measure(
        self,
        address: str,
        streams: Sequence[Stream],
        warm_up: float,
        seconds: float,
        cpu: Callable[[], float] = lambda: 0.0,
        channels: int = 1,
        keys: tuple[str, str] = (PORTAL_KEY, MOBILE_KEY),
    ) -> Measurement:
        """Run ``streams`` against ``address``; ``cpu()`` is read at both ends of the window."""
        start = time.time() + START_MARGIN
        measure_from, until = start + warm_up, start + warm_up + seconds
        for jobs, part in zip(self._jobs, split(streams, len(self._jobs)), strict=True):
            jobs.put(Job(address, tuple(part), start, measure_from, until, channels, keys))
        await asyncio.sleep(measure_from - time.time())
        cpu_at_start = cpu()
        await asyncio.sleep(until - time.time())
        cpu_used = cpu() - cpu_at_start
        merged = [StreamResult() for _ in streams]
        for _ in self._jobs:
            results = await asyncio.to_thread(self._results.get, True, 60 + 2 * warm_up)
            for total, part in zip(merged, results, strict=True):
                total.merge(part)
        return Measurement(merged, seconds, cpu_used)

    def close(self) -> None:
        for jobs in self._jobs:
            jobs.put(None)
        for process in self._processes:
            process.join(10)
            if process.is_alive():
                process.kill()


def _process_main(jobs: Any, results: Any, smtp_port: int, nice: int = 0) -> None:
    if nice:
        os.nice(nice)
    asyncio.run(_serve_jobs(jobs, results, smtp_port))


async def _serve_jobs(jobs: Any, results: Any, smtp_port: int) -> None:
    from bench.callers import Inbox, run_job  # after spawn: grpc imported in this process

    inbox = Inbox(asyncio.get_running_loop(), smtp_port)
    try:
        results.put("ready")
        while (job := await asyncio.to_thread(jobs.get)) is not None:
            results.put(await run_job(job, inbox))
    finally:
        inbox.close()
