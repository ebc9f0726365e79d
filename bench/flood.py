"""``python -m bench --flood N``: a legitimate login beside N unknown-NIR logins (SPEC §7.5).

One caller logs in on the mobile app, first idle, then while N callers send wrong
passwords for unknown NIRs, with the production shedding (``AMELI_MAX_PENDING_HASHES``,
``--max-pending``; ``AMELI_MAX_HASH_WAIT``, ``--max-wait``) and with shedding off, side
by side in one run (the service restarted on the same data for each). Every legitimate
call must be answered within 3 × its idle p99 or shed at once with RetryInfo, "at once"
meaning no later than an answer may come: exit status 1 otherwise (with shedding on).
"""

from __future__ import annotations

import asyncio
import tempfile
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import report, targets
from bench.load import LoadPool, Stream, StreamResult
from tests.support.mail import free_port

FLOOD_WARM_UP = 2.0  # seconds at least: the flood builds up before the window
LINE = "{:<48}{:>7}{:>7}{:>9}{:>8}{:>13}{:>14}{:>12}{:>15}"


@dataclass(frozen=True)
class Shedding:
    """The service's bounds: ``AMELI_MAX_PENDING_HASHES``, ``AMELI_MAX_HASH_WAIT`` and
    ``AMELI_OVERLOAD_HASH_WAIT`` (seconds, 0: none), ``AMELI_MAX_CONCURRENT_STREAMS``."""

    max_pending: int
    max_wait: float
    overload_wait: float
    max_streams: int

    def settings(self) -> dict[str, float]:
        return {
            "max_pending_hashes": self.max_pending,
            "max_hash_wait": self.max_wait,
            "overload_hash_wait": self.overload_wait,
            "max_concurrent_streams": self.max_streams,
        }

    def __str__(self) -> str:
        return (
            f"{self.max_pending} / {self.max_wait:g} / {self.overload_wait:g} / {self.max_streams}"
        )


OFF = Shedding(10**6, 0.0, 0.0, 0)
LEGEND = "pending / wait (s) / wait of a standing queue (s) / calls a connection"


@dataclass
class FloodRun:
    name: str
    shedding: Shedding
    flooding: int
    legitimate: StreamResult | None = None
    flood: StreamResult | None = None

    def within(self, bound: float) -> float:
        """The share of legitimate calls answered, or shed, within ``bound``: a refusal
        is "at once" when it comes no later than an answer may."""
        result = self.legitimate or StreamResult()
        outcomes = result.latencies + result.shed_latencies
        return sum(1 for latency in outcomes if latency <= bound) / len(outcomes) if outcomes else 0


async def _measure(
    backend: str,
    runs: list[FloodRun],
    timing: dict[str, float],
    processes: int,
    flood_nice: int,
) -> None:
    smtp_port = free_port()
    async with AsyncExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ameli-bench-")))
        stored = await stack.enter_async_context(targets.storage(backend, directory))
        settings = targets.service_settings(stored, directory, smtp_port, max_pending=0)
        await targets.load(settings, 1)
        pool = LoadPool(processes, smtp_port, others_nice=flood_nice)
        stack.callback(pool.close)
        for run in runs:
            streams = [Stream("login_mobile", 1)]
            streams += [Stream("flood", run.flooding)] if run.flooding else []
            warm_up = max(timing["warm_up"], FLOOD_WARM_UP if run.flooding else 0.0)
            served = {**settings, **run.shedding.settings()}
            async with targets.service(served) as service:
                done = await pool.measure(service.address, streams, warm_up, timing["seconds"])
            run.legitimate = done.streams[0]
            run.flood = done.streams[1] if run.flooding else None


def _print(runs: list[FloodRun], seconds: float) -> float:
    idle_p99 = runs[0].legitimate.percentile(99) if runs[0].legitimate else 0.0
    print()
    print(LINE.format("legitimate login", "calls", "shed", "p99 ms", "× idle", "≤3× idle",
                      "slowest shed", "flood shed", "flood verified"))  # fmt: skip
    for run in runs:
        legit = run.legitimate or StreamResult()
        flood = run.flood or StreamResult()
        flood_total = flood.calls + flood.shed
        p99 = legit.percentile(99)
        print(
            LINE.format(
                run.name,
                legit.calls,
                legit.shed,
                f"{p99 * 1000:.1f}",
                f"{p99 / idle_p99:.1f}" if idle_p99 else "—",
                f"{run.within(3 * idle_p99):.1%}",
                f"{legit.slowest_shed * 1000:.1f} ms",
                f"{flood.shed / flood_total:.1%}" if flood_total else "—",
                f"{flood.calls / seconds:.0f}/s" if flood_total else "—",
            )
        )
    for run in runs:
        if run.flood is not None and run.flood.errors:
            print(f"{run.name}: the flood met answers other than its own: {dict(run.flood.errors)}")
    return idle_p99


def flood(
    backend: str,
    flooding: int,
    shedding: Shedding,
    timing: dict[str, float],
    processes: int,
    flood_nice: int = 0,
) -> int:
    """Measure and print; 0 if the target was met with ``shedding``, 1 otherwise."""
    report.header(backend, 1, timing["seconds"], processes)
    print(f"flood        : {flooding} parallel unknown-NIR logins beside one legitimate login")
    if flood_nice:
        print(f"               the flood's processes niced by {flood_nice} (its CPU elsewhere)")
    print(f"shedding     : {LEGEND} (0: none)")
    runs = [
        FloodRun("idle", shedding, 0),
        FloodRun(f"flood, shedding at {shedding}", shedding, flooding),
        FloodRun("flood, shedding off", OFF, flooding),
    ]
    asyncio.run(_measure(backend, runs, timing, processes, flood_nice))
    idle_p99 = _print(runs, timing["seconds"])
    return 0 if runs[1].within(3 * idle_p99) >= 0.99 else 1
