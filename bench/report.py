"""The report: the machine, argon2's parameters, then one line per row with its ratio."""

from __future__ import annotations

import math
import os
import timeit

import argon2

from ameli_grpc.adapters.argon2_hasher import OWASP_PARAMETERS
from bench.common import PASSWORD
from bench.run import Outcome

LINE = "{:<14}{:<60}{:>12}{:>10}{:>12}{:>10}{:>9}  {:<11}{}"


def one_verify_ms() -> float:
    hasher = argon2.PasswordHasher.from_parameters(OWASP_PARAMETERS)
    digest = hasher.hash(PASSWORD)
    return min(timeit.repeat(lambda: hasher.verify(digest, PASSWORD), number=1, repeat=5)) * 1000


def header(backend: str, repeat: int, seconds: float, processes: int) -> None:
    p = OWASP_PARAMETERS
    print(f"backend      : {backend}; each target in its own process, 127.0.0.1")
    print(f"cores        : {os.cpu_count()}, shared by the targets and the load")
    print(
        f"argon2id     : m={p.memory_cost} KiB, t={p.time_cost}, p={p.parallelism}; "
        f"one verify ≈ {one_verify_ms():.1f} ms"
    )
    print(
        f"load         : {processes} load processes (grpc.aio); {seconds:g} s windows after a "
        f"warm-up; service and anchor back to back, {repeat} time(s): the run of median ratio"
    )


def _value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:.1f} ms" if unit == "ms" else f"{value:,.1f}".replace(",", " ")


def _cpu(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} µs"


def table(outcomes: list[Outcome]) -> None:
    """One line per row: the repetition of median ratio."""
    print()
    print(LINE.format("row", "what (unit)", "service", "CPU/call", "anchor", "CPU/call", "ratio",
                      "target", "verdict"))  # fmt: skip
    for outcome in outcomes:
        row, m = outcome.row, outcome.median
        verdict = "PASS" if row.passes(m.ratio) else "MISS"
        print(
            LINE.format(
                row.key,
                f"{row.title} ({row.unit})"[:60],
                _value(m.service, row.unit),
                _cpu(m.service_cpu),
                _value(m.anchor, row.unit),
                _cpu(m.anchor_cpu),
                f"{m.ratio:.2f} ×",
                row.target,
                verdict,
            )
        )
    print("\ncompared with:")
    for outcome in outcomes:
        print(f"  {outcome.row.key:<14}{outcome.row.anchor}")
