"""``ameli_grpc.testing`` used as another team uses it: installed, from a directory of its own."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path

from ameli.auth import AuthServiceError

from ameli_grpc.testing import AmeliTestServer
from bench.common import unknown_nir

CONSUMER = Path(__file__).resolve().parents[1] / "plugin_consumer"
# NIRs without an account, each tried once (no lock refuses it).
UNKNOWN_NIRS = [unknown_nir(serial) for serial in range(200)]


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


async def test_the_kit_sheds_logins_by_their_count_only(tmp_path: Path) -> None:
    """200 wrong passwords at once on two hashing threads are seconds of wait, which a
    production server sheds (AMELI_MAX_HASH_WAIT); the kit answers them all, so that a slow
    CI machine never changes a test's answers. Its count bound is set out of the way here."""
    with AmeliTestServer(tmp_path, max_pending_hashes=1000, hash_workers=2) as server:
        client = server.client
        # one verify first, so that its duration is known (the bound in time needs one)
        await _refusal(client.check_credentials(nir=UNKNOWN_NIRS[0], password="faux"))

        reasons = await asyncio.gather(
            *(_refusal(client.check_credentials(nir=n, password="faux")) for n in UNKNOWN_NIRS)
        )

    assert set(reasons) == {"INVALID_CREDENTIALS"}


async def _refusal(call: Awaitable[object]) -> str:
    try:
        await call
    except AuthServiceError as error:
        return error.reason
    raise AssertionError("a wrong password was accepted")
