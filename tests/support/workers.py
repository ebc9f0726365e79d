"""Worker bodies for the supervisor's tests: started by ``spawn``, so importable and light."""

from __future__ import annotations

import multiprocessing
import signal
import sys


def first_fails_others_serve(exit_code: int) -> None:
    """Worker 0 exits at once with ``exit_code``; the others run until SIGTERM, then exit 0."""
    if multiprocessing.current_process().name.endswith("-0"):
        sys.exit(exit_code)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.sigwait({signal.SIGTERM})  # the supervisor's SIGTERM is the clean stop
