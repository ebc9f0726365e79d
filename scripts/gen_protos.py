"""Generate the Python stubs of the contract into the client distribution.

Runs ``python -m grpc_tools.protoc`` with the mypy-protobuf plugins over every
``.proto`` file under ``protos/`` and writes ``*_pb2.py``, ``*_pb2_grpc.py`` and
their typed ``.pyi`` into ``clients/python/`` (``ameli/auth/v1/...``).

    python scripts/gen_protos.py           # regenerate the committed stubs
    python scripts/gen_protos.py --check   # exit 1 with a diff if they are stale

Both modes generate into a temporary directory first, so ``--check`` never
touches the working tree and a failed run never leaves half-written stubs.

The stubs are generated with old, pinned tools (``STUB_TOOLS``) so that the
client package runs on the oldest grpcio and protobuf the protobuf
compatibility policy allows (see clients/python/README.md): the code generated
by grpcio-tools 1.72.1 (protoc 30, gencode 6.30.0) needs grpcio >= 1.72.1 and
protobuf >= 6.30.0, and protobuf 7 still runs it. The script runs protoc from a
dedicated virtual environment, ``.venv-stubs``, holding exactly those pins; it
creates it from PyPI when missing or pinned differently, so any interpreter can
run the script and every machine generates the same bytes.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"
OUTPUT_ROOT = REPO_ROOT / "clients" / "python"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")

# The generator's exact versions. grpcio-tools brings its own protoc (30, gencode
# 6.30.0) and the grpc plugin (GRPC_GENERATED_VERSION 1.72.1): changing it
# changes the client's floors, to be updated in clients/python/pyproject.toml and
# the Makefile's FLOOR_PINS. The protobuf runtime here only runs the mypy-protobuf
# plugin (which needs >= 6.32.1) and does not change the generated code.
STUB_TOOLS = (
    "grpcio-tools==1.72.1",
    "grpcio==1.72.1",
    "protobuf==6.33.6",
    "mypy-protobuf==5.1.0",
    "types-protobuf==6.30.2.20250516",
)
STUBS_VENV = REPO_ROOT / ".venv-stubs"
PINS_FILE = STUBS_VENV / "stub-tools.txt"


def proto_files() -> list[Path]:
    """The contract's ``.proto`` files, relative to ``protos/``, in a stable order."""
    return sorted(path.relative_to(PROTO_ROOT) for path in PROTO_ROOT.rglob("*.proto"))


def stubs_python() -> Path:
    """The interpreter of ``.venv-stubs``, (re)created with ``STUB_TOOLS`` if needed."""
    python = STUBS_VENV / "bin" / "python"
    wanted = "\n".join(STUB_TOOLS) + "\n"
    if python.exists() and PINS_FILE.exists() and PINS_FILE.read_text() == wanted:
        return python
    print(f"creating {STUBS_VENV.name} with {' '.join(STUB_TOOLS)}", file=sys.stderr)
    shutil.rmtree(STUBS_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(STUBS_VENV)], check=True)  # noqa: S603
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--only-binary=:all:", *STUB_TOOLS], check=True)  # noqa: S603
    PINS_FILE.write_text(wanted)
    return python


def protoc_command(python: Path, out_dir: Path) -> list[str]:
    """The ``grpc_tools.protoc`` invocation writing every stub under ``out_dir``.

    ``python -m grpc_tools.protoc`` adds the well-known types bundled with
    grpcio-tools (google/protobuf/timestamp.proto...) to the include path.
    """
    bin_dir = python.parent
    return [
        str(python),
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out=quiet:{out_dir}",
        f"--mypy_grpc_out=quiet:{out_dir}",
        *(path.as_posix() for path in proto_files()),
    ]


def generate(out_dir: Path) -> dict[Path, bytes]:
    """Run protoc into ``out_dir``; return the generated files by relative path."""
    command = protoc_command(stubs_python(), out_dir)
    subprocess.run(command, check=True, cwd=PROTO_ROOT)  # noqa: S603
    return {
        path.relative_to(out_dir): path.read_bytes()
        for path in sorted(out_dir.rglob("*"))
        if path.is_file()
    }


def committed_stubs() -> set[Path]:
    """Generated-looking files currently in the client distribution."""
    return {
        path.relative_to(OUTPUT_ROOT)
        for path in (OUTPUT_ROOT / "ameli").rglob("*")
        if path.is_file() and path.name.endswith(GENERATED_SUFFIXES)
    }


def write(generated: dict[Path, bytes]) -> None:
    """Replace the committed stubs by ``generated``, removing stale ones."""
    changed = False
    for stale in sorted(committed_stubs() - generated.keys()):
        (OUTPUT_ROOT / stale).unlink()
        print(f"removed clients/python/{stale.as_posix()}")
        changed = True
    for relative, content in generated.items():
        target = OUTPUT_ROOT / relative
        if target.exists() and target.read_bytes() == content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        print(f"wrote clients/python/{relative.as_posix()}")
        changed = True
    if not changed:
        print("generated stubs are up to date")


def diff_lines(relative: Path, generated: bytes | None) -> list[str]:
    """Unified diff from the committed file to the freshly generated one."""
    committed_path = OUTPUT_ROOT / relative
    committed = committed_path.read_bytes() if committed_path.exists() else None
    if committed == generated:
        return []
    name = f"clients/python/{relative.as_posix()}"
    fromfile = f"{name} (committed)" if committed is not None else "/dev/null"
    tofile = f"{name} (generated)" if generated is not None else "/dev/null"
    lines = list(
        difflib.unified_diff(
            _text_lines(committed), _text_lines(generated), fromfile=fromfile, tofile=tofile
        )
    )
    # Empty files and byte-level differences (encoding, line endings) have no text diff.
    return lines or [f"--- {fromfile}\n", f"+++ {tofile}\n", "Binary or empty files differ\n"]


def _text_lines(content: bytes | None) -> list[str]:
    if content is None:
        return []
    return content.decode("utf-8", errors="replace").splitlines(keepends=True)


def check(generated: dict[Path, bytes]) -> int:
    """Print a diff and return 1 if the committed stubs differ from ``generated``."""
    stale = False
    for relative in sorted(generated.keys() | committed_stubs()):
        lines = list(diff_lines(relative, generated.get(relative)))
        if lines:
            stale = True
            sys.stdout.writelines(lines)
            if not lines[-1].endswith("\n"):
                sys.stdout.write("\n")
    if stale:
        print("generated stubs are out of date: run scripts/gen_protos.py", file=sys.stderr)
        return 1
    print("generated stubs are up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write anything; exit 1 with a unified diff if the stubs are stale",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gen_protos-") as tmp:
        generated = generate(Path(tmp))
        if args.check:
            return check(generated)
        write(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
