"""One run: the targets started on demand and kept, the load pool, the rows repeated."""

from __future__ import annotations

import sys
import tempfile
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import targets
from bench.load import LoadPool, Measurement, Stream
from bench.rows import Row, Sample
from tests.support.mail import free_port

MAX_ERROR_RATE = 0.01


@dataclass
class Run:
    """The service's settings, the targets started so far, and the errors seen."""

    stack: AsyncExitStack
    pool: LoadPool
    settings: dict[str, Any]
    warm_up: float
    seconds: float
    memory_calls: int
    started: dict[str, targets.Target] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    async def target(self, name: str) -> targets.Target:
        if name not in self.started:
            if name.startswith("service"):
                workers = 2 if name == "service2" else 1
                manager = targets.service(self.settings, workers)
            else:
                manager = targets.anchor(name)
            self.started[name] = await self.stack.enter_async_context(manager)
        return self.started[name]

    async def measure(
        self, target: str, streams: list[Stream], *, channels: int = 1, seconds: float = 0.0
    ) -> Measurement:
        running = await self.target(target)
        measured = await self.pool.measure(
            running.address,
            streams,
            self.warm_up,
            seconds or self.seconds,
            running.cpu_seconds,
            channels,
        )
        for stream, result in zip(streams, measured.streams, strict=True):
            if result.error_rate > MAX_ERROR_RATE:
                errors = dict(result.errors) or "no call"
                self.errors.append(f"{target}, {stream.call} × {stream.in_flight}: {errors}")
        return measured

    async def rss(self, target: str) -> int:
        return (await self.target(target)).rss_bytes()


@dataclass
class Outcome:
    row: Row
    median: Sample
    samples: list[Sample]


def median(samples: list[Sample]) -> Sample:
    """The repetition of median ratio (the lower one of an even count), whole: its figures
    and its ratio come from the same back-to-back measurement."""
    ordered = sorted(samples, key=lambda sample: sample.ratio)
    return ordered[(len(ordered) - 1) // 2]


async def run_rows(
    rows: list[Row], backend: str, options: dict[str, Any], processes: int
) -> tuple[list[Outcome], list[str]]:
    """Each row ``repeat`` times (the rows in turn, so that a slow minute hits all of them)."""
    smtp_port = free_port()
    accounts = 64
    async with AsyncExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ameli-bench-")))
        stored = await stack.enter_async_context(targets.storage(backend, directory))
        settings = targets.service_settings(
            stored, directory, smtp_port, 4 * accounts, options["previous_key"]
        )
        await targets.load(settings, accounts)
        pool = LoadPool(processes, smtp_port)
        stack.callback(pool.close)
        run = Run(stack, pool, settings, **options["timing"])
        samples: dict[str, list[Sample]] = {row.key: [] for row in rows}
        for repetition in range(options["repeat"]):
            for row in rows:
                if row.once and repetition:
                    continue
                sample = await row.measure(run)
                samples[row.key].append(sample)
                # progress on stderr: a full run is long
                print(f"{row.key} {repetition + 1}: {sample.ratio:.2f} ×", file=sys.stderr)
        outcomes = [Outcome(row, median(samples[row.key]), samples[row.key]) for row in rows]
        return outcomes, run.errors
