"""Entry point of ``ameli-advisor`` (and ``python -m ameli.advisor``): gRPC kept quiet.

gRPC's C-core reads ``GRPC_VERBOSITY`` and ``GRPC_TRACE`` once, when grpc is
first imported, and then writes its own lines (handshake failures, fork
support...) straight to the terminal. ``ameli.auth`` imports grpc, so this
module lives outside it and sets them before importing the command line: the
advisor sees only the command's French sentences. A developer who wants gRPC's
lines calls ``ameli.auth.advisor_cli.main`` from a Python of their own.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main() -> int:
    """Run ``ameli-advisor`` with the process's arguments; returns its exit status."""
    os.environ["GRPC_VERBOSITY"] = "NONE"
    os.environ["GRPC_TRACE"] = ""
    from ameli.auth.advisor_cli import main as run  # grpc imported only now

    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
