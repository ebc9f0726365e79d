"""``ameli_grpc.testing`` used as another team uses it: installed, from a directory of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONSUMER = Path(__file__).resolve().parents[1] / "plugin_consumer"


def consumer_environment() -> dict[str, str]:
    """This process's environment without the pytest settings it may carry."""
    return {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}


def test_another_team_runs_its_tests_with_the_installed_plugin(tmp_path: Path) -> None:
    """Their tests (web login, lock lifted by the clock, advisor reset, a synchronous test
    with the blocking clients) pass in their own directory, with no conftest, the fixture
    found through the ``pytest11`` entry point."""
    shutil.copy(CONSUMER / "pytest.ini", tmp_path / "pytest.ini")
    shutil.copy(CONSUMER / "check_ameli_plugin.py", tmp_path / "test_ameli_plugin.py")
    result = subprocess.run(  # noqa: S603 (our own interpreter, fixed arguments, no shell)
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=consumer_environment(),
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


def test_the_plugin_is_found_through_its_entry_point() -> None:
    """The installed distribution declares the plugin under ``pytest11``."""
    from importlib.metadata import entry_points

    plugins = {entry.name: entry.value for entry in entry_points(group="pytest11")}
    assert plugins.get("ameli_grpc") == "ameli_grpc.testing"
