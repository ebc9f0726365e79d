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
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeAlias, cast

import grpc

from ameli_grpc.domain.errors import AuthError, ErrorReason
from ameli_grpc.domain.messages import Messages

SERVICE_PREFIX = "/ameli.auth.v1.AuthService/"
# Settled: nothing under way and nothing picked up for this long; the time a call waiting in
# gRPC's queue takes to be picked up by an idle event loop is far below it.
QUIET = 0.2
_POLL = 0.02
RETRY_AFTER = timedelta(seconds=1)

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Behaviour: TypeAlias = Callable[[Any, Context], Awaitable[Any]]


class CallGate(grpc.aio.ServerInterceptor):
    """Counts the AuthService calls under way; once closed, refuses the calls picked up after.

    Placed after the caller interceptor, it wraps the servicer's methods: its
    refusal is an ``AuthError``, translated, logged and counted like any other.
    Health and reflection calls pass untouched, but their arrival counts for
    ``settled`` too.
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

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        self._last_arrival = asyncio.get_running_loop().time()
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or handler.unary_unary is None
            or not handler_call_details.method.startswith(SERVICE_PREFIX)
        ):
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._gated(cast(Behaviour, handler.unary_unary)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _gated(self, behaviour: Behaviour) -> Behaviour:
        async def gated(request: Any, context: Context) -> Any:
            if not self._open:
                raise AuthError(
                    ErrorReason.SERVICE_UNAVAILABLE,
                    Messages.SERVICE_UNAVAILABLE,
                    retry_after=RETRY_AFTER,
                )
            self._under_way += 1
            try:
                return await behaviour(request, context)
            finally:
                self._under_way -= 1

        return gated
