"""The client README's Python examples, executed verbatim so that they cannot rot.

Each ```python block of ``clients/python/README.md`` runs in a subprocess:
a block whose first line names a test file (``# test_….py``) is written under
that name and run with pytest (it brings its own server, ``ameli_grpc.testing``);
any other block runs with python against a server holding the demo accounts,
``AMELI_AUTH_TARGET`` and ``AMELI_AUTH_API_KEY`` (a portal key) in its
environment. A block right after ``<!-- not executed… -->`` is skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ameli.auth.nir import nir_is_valid

from ameli_grpc.demo import DEMO_CASES
from ameli_grpc.testing import AmeliTestServer

README = Path(__file__).resolve().parents[2] / "clients" / "python" / "README.md"
_FENCE = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
_TEST_FILE = re.compile(r"# (test_\w+\.py)\b")
_NOT_EXECUTED = "<!-- not executed"
# A NIR as people write it: 13 or 15 characters, digits (2A/2B for Corsica), spaces allowed.
_NIR_LIKE = re.compile(r"(?<![\w-])[12](?: ?[0-9AB]){12}(?:(?: ?\d){2})?(?![\w-])")


@dataclass(frozen=True)
class Snippet:
    line: int
    code: str
    executed: bool

    @property
    def test_file(self) -> str | None:
        found = _TEST_FILE.match(self.code)
        return found.group(1) if found else None


def snippets(text: str) -> list[Snippet]:
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        line = text.count("\n", 0, match.start()) + 1
        found.append(Snippet(line, match.group(1), not before.startswith(_NOT_EXECUTED)))
    return found


SNIPPETS = snippets(README.read_text(encoding="utf-8"))


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without its pytest settings, plus ``extra``."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    return {**kept, **extra}


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[AmeliTestServer]:
    """The plugin's server with the demo accounts (``ameli-grpc demo-data``) loaded."""
    with AmeliTestServer(tmp_path / "server") as server:
        for case in DEMO_CASES:
            row = case.row
            server.add_account(
                row.nir,
                row.password,
                email=row.email,
                email_validated=row.email_validated,
                mobile_phone=row.mobile_phone,
                affiliation=row.affiliation,
            )
        yield server


def run(arguments: list[str], directory: Path, env: dict[str, str]) -> None:
    result = subprocess.run(  # noqa: S603 (our own interpreter, the README's code, no shell)
        [sys.executable, *arguments],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "snippet",
    [snippet for snippet in SNIPPETS if snippet.executed and snippet.test_file is None],
    ids=lambda snippet: f"line-{snippet.line}",
)
def test_a_gateway_snippet_runs_against_the_demo_server(
    snippet: Snippet, demo_server: AmeliTestServer, tmp_path: Path
) -> None:
    """The block runs to its end, talking to a server that holds the demo accounts."""
    (tmp_path / "snippet.py").write_text(snippet.code, encoding="utf-8")
    env = environment(
        AMELI_AUTH_TARGET=demo_server.target, AMELI_AUTH_API_KEY=demo_server.portal_key
    )
    run(["snippet.py"], tmp_path, env)


@pytest.mark.parametrize(
    "snippet",
    [snippet for snippet in SNIPPETS if snippet.executed and snippet.test_file is not None],
    ids=lambda snippet: f"line-{snippet.line}",
)
def test_an_integration_test_snippet_passes_with_pytest(snippet: Snippet, tmp_path: Path) -> None:
    """The test file of the README passes, its server started by the installed plugin."""
    assert snippet.test_file is not None
    (tmp_path / snippet.test_file).write_text(snippet.code, encoding="utf-8")
    arguments = ["-m", "pytest", "-q", "-p", "no:cacheprovider", snippet.test_file]
    run(arguments, tmp_path, environment())


def test_the_readme_has_an_integration_test_and_skips_little() -> None:
    """There is a test-file snippet, and most blocks are executed."""
    assert any(snippet.test_file for snippet in SNIPPETS)
    skipped = [snippet for snippet in SNIPPETS if not snippet.executed]
    assert len(skipped) * 2 <= len(SNIPPETS), [snippet.line for snippet in skipped]


def test_every_nir_in_the_readme_is_valid() -> None:
    """Each NIR the README shows passes the service's check (key included)."""
    text = README.read_text(encoding="utf-8")
    nirs = [match.group() for match in _NIR_LIKE.finditer(text)]
    assert nirs
    assert [nir for nir in nirs if not nir_is_valid(nir)] == []


def test_the_snippet_reader_honours_the_markers() -> None:
    """Blocks are found with their line; the marker skips only the block right after it."""
    text = (
        "intro\n\n<!-- not executed: needs a person -->\n```python\nprint(1)\n```\n\n"
        "```python\n# test_x.py\nimport pytest\n```\n\n```sh\nls\n```\n"
    )
    found = snippets(text)
    assert [(snippet.line, snippet.executed, snippet.test_file) for snippet in found] == [
        (4, False, None),
        (8, True, "test_x.py"),
    ]
