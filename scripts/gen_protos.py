"""Generate the Python stubs of the contract into the client distribution.

Runs ``python -m grpc_tools.protoc`` with the mypy-protobuf plugins over every
``.proto`` file under ``protos/`` and writes ``*_pb2.py``, ``*_pb2_grpc.py`` and
their typed ``.pyi`` into ``clients/python/`` (``ameli/auth/v1/...``).

    python scripts/gen_protos.py           # regenerate the committed stubs
    python scripts/gen_protos.py --check   # exit 1 with a diff if they are stale

Both modes generate into a temporary directory first, so ``--check`` never
touches the working tree and a failed run never leaves half-written stubs.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"
OUTPUT_ROOT = REPO_ROOT / "clients" / "python"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def proto_files() -> list[Path]:
    """The contract's ``.proto`` files, relative to ``protos/``, in a stable order."""
    return sorted(path.relative_to(PROTO_ROOT) for path in PROTO_ROOT.rglob("*.proto"))


def find_plugin(name: str) -> str:
    """A protoc plugin installed next to this interpreter (the venv), else on PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    on_path = shutil.which(name)
    if on_path is None:
        sys.exit(f"{name} not found: install mypy-protobuf in this environment")
    return on_path


def protoc_command(out_dir: Path) -> list[str]:
    """The ``grpc_tools.protoc`` invocation writing every stub under ``out_dir``."""
    bundled_protos = resources.files("grpc_tools") / "_proto"
    return [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={bundled_protos}",
        f"--plugin=protoc-gen-mypy={find_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={find_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out=quiet:{out_dir}",
        f"--mypy_grpc_out=quiet:{out_dir}",
        *(path.as_posix() for path in proto_files()),
    ]


def generate(out_dir: Path) -> dict[Path, bytes]:
    """Run protoc into ``out_dir``; return the generated files by relative path."""
    subprocess.run(protoc_command(out_dir), check=True, cwd=PROTO_ROOT)  # noqa: S603
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
