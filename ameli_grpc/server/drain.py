"""The call gate: which AuthService calls are under way, and none taken once the server stops.

Stopping a grpc.aio server cancels, at once, every call that has reached the
process but that grpc.aio has not yet handed to the application (a busy event
loop picks calls up late: a burst of logins leaves many waiting there). So
the server is not stopped while calls still arrive or run: the gate is closed
first — a call picked up from then on is refused ``UNAVAILABLE`` /
``SERVICE_UNAVAILABLE`` with ``RetryInfo``, a normal refusal the gateway retries
elsewhere — and the stop waits until no call is under way and none has been
picked up for a moment (``settled``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from ameli_grpc.domain.errors import AuthError, ErrorReason
from ameli_grpc.domain.messages import Messages

# Settled: nothing under way and nothing picked up for this long; the time a call waiting in
# gRPC's queue takes to be picked up by an idle event loop is far below it.
QUIET = 0.2
_POLL = 0.02
RETRY_AFTER = timedelta(seconds=1)


class CallGate:
    """Counts the AuthService calls under way; once closed, refuses the calls picked up after.

    The caller interceptor (``server.interceptors``) tells it of every call
    picked up (``arrived``: health and reflection calls too, they count for
    ``settled``) and runs each servicer method inside ``entered``: its refusal
    is an ``AuthError``, translated, logged and counted like any other. One
    interceptor, not two: each layer of grpc.aio interception costs every call.
    """

    def __init__(self) -> None:
        self._open = True
        self._under_way = 0
        self._last_arrival = 0.0

    @property
    def under_way(self) -> int:
        """AuthService calls whose behaviour has started and not yet returned."""
        return self._under_way

    def close(self) -> None:
        """From now on, every AuthService call picked up is refused (the ones under way go on)."""
        self._open = False

    def arrived(self) -> None:
        """A call of any service was picked up now."""
        self._last_arrival = asyncio.get_running_loop().time()

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Around a servicer method: counted while it runs; refused once the gate is closed."""
        if not self._open:
            raise AuthError(
                ErrorReason.SERVICE_UNAVAILABLE,
                Messages.SERVICE_UNAVAILABLE,
                retry_after=RETRY_AFTER,
            )
        self._under_way += 1
        try:
            yield
        finally:
            self._under_way -= 1

    async def settled(self, deadline: float, quiet: float = QUIET) -> bool:
        """Wait until no call is under way and none has been picked up for ``quiet`` seconds.

        ``deadline`` is on the event loop's clock; False if it passes first.
        """
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if self._under_way == 0 and now - self._last_arrival >= quiet:
                return True
            if now >= deadline:
                return False
            await asyncio.sleep(min(_POLL, deadline - now))
