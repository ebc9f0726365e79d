"""What is known of the call under way, beyond its request: who is calling, and its id.

The server's interceptor sets it for each call (``enter_call``: each call runs in a
task of its own, whose context dies with it); the audit trail
reads it, so every audit row names the calling application and the request id
without each use case passing them along. Outside a call (the command line,
unit tests) it is empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class CallContext:
    caller: str | None = None  # the calling application's name, never its key
    request_id: str | None = None  # x-request-id (SPEC §9), also on the call's log lines


_NO_CALL = CallContext()
_current: ContextVar[CallContext | None] = ContextVar("call_context", default=None)


def current_call() -> CallContext:
    return _current.get() or _NO_CALL


def enter_call(context: CallContext) -> None:
    """``context`` is the call's from now on, in the current context (the call's task)."""
    _current.set(context)


@contextmanager
def calling(context: CallContext) -> Iterator[None]:
    """``context`` is the call's for the duration of the block."""
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)
