"""The names our worker threads show in ``top -H`` and ``/proc/<pid>/task/*/comm``."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util

_PR_SET_NAME = 15


def name_this_thread(name: bytes) -> None:
    """The kernel's name of the calling thread (``comm``, at most 15 bytes); where that
    cannot be set (not Linux), the thread keeps the process's name."""
    library = ctypes.util.find_library("c")
    if library is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(library, use_errno=True).prctl(
            _PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0
        )
