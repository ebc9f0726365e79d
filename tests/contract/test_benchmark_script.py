"""``scripts/benchmark.py``, run as its users run it: a subprocess of the project's Python."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PHASES = ("check_credentials_mobile", "web_login_full_flow", "lock_status_under_load")


def run_benchmark(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own script, fixed arguments, no shell)
        [sys.executable, str(REPO_ROOT / "scripts" / "benchmark.py"), *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_benchmark_script_reports_every_phase() -> None:
    """The benchmark script runs end to end and reports every phase."""
    finished = run_benchmark("--seconds", "1", "--concurrency", "4", "--accounts", "8")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    for phase in PHASES:
        assert phase in finished.stdout, f"{phase} missing from:\n{finished.stdout}"


def test_the_benchmark_measures_a_key_rotation_under_way() -> None:
    """``--previous-key`` runs every phase with a previous secret key configured."""
    finished = run_benchmark(
        "--seconds", "0.5", "--concurrency", "2", "--accounts", "4", "--previous-key"
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "previous key : set" in finished.stdout
    for phase in PHASES:
        assert phase in finished.stdout


def test_the_flood_benchmark_reports_the_legitimate_login() -> None:
    """``--flood`` measures a legitimate login idle, then beside a flood, shedding on and off.

    Its exit status says whether the 3 × idle p99 target was met: a measure, not asserted.
    """
    finished = run_benchmark("--flood", "8", "--max-pending", "4", "--seconds", "0.5")
    assert finished.returncode in (0, 1), finished.stdout + finished.stderr
    assert "Traceback" not in finished.stderr
    for row in ("idle", "flood, shedding at 4", "flood, shedding off"):
        assert row in finished.stdout, f"{row} missing from:\n{finished.stdout}"
