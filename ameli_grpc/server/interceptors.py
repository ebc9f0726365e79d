"""One interceptor around every AuthService call: who is calling, and how it ended.

- caller authentication: ``authorization: Bearer <key>`` → a role; a role may
  call only its methods (SPEC §5); health and reflection stay open;
- error translation in one place: ``AuthError`` → its rich status,
  ``DependencyUnavailable`` → UNAVAILABLE, anything else → INTERNAL with
  nothing of the cause leaked to the caller;
- one log line per call, with no personal data (method, outcome, duration).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc
import structlog

from ameli_grpc.domain.clock import Clock
from ameli_grpc.domain.errors import AuthError, DependencyUnavailable, ErrorReason
from ameli_grpc.domain.messages import Messages
from ameli_grpc.server.callers import ALLOWED_METHODS, CallerKeys, Role
from ameli_grpc.server.errors import internal_status, refusal_status

SERVICE_PREFIX = "/ameli.auth.v1.AuthService/"
log = structlog.get_logger("ameli_grpc.rpc")

# Strings: grpc's classes are generic only in their type stubs.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Behaviour: TypeAlias = Callable[[Any, Context], Awaitable[Any]]


class AuthServiceInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, keys: CallerKeys, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        details = handler_call_details
        handler = await continuation(details)
        if handler is None or not details.method.startswith(SERVICE_PREFIX):
            return handler
        if handler.unary_unary is None:
            return handler
        method = details.method.removeprefix(SERVICE_PREFIX)
        roles = self._keys.roles(details.invocation_metadata)
        return grpc.unary_unary_rpc_method_handler(
            # grpc.aio hands this interceptor the servicer's coroutine method
            self._wrap(method, roles, cast(Behaviour, handler.unary_unary)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, method: str, roles: set[Role] | None, behaviour: Behaviour) -> Behaviour:
        async def guarded(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            outcome = "OK"
            try:
                self._check_caller(method, roles)
                return await behaviour(request, context)
            except AuthError as error:
                outcome = error.reason.value
                code = grpc.StatusCode.UNAUTHENTICATED if roles is None else None
                status = refusal_status(error, self._clock.now(), code)
            except DependencyUnavailable as error:
                outcome = ErrorReason.SERVICE_UNAVAILABLE.value
                log.warning(
                    "dependency_unavailable",
                    method=method,
                    dependency=error.dependency,
                    error=error.detail,
                )
                status = refusal_status(_unavailable(), self._clock.now())
            except Exception:
                outcome = "INTERNAL"
                log.exception("unexpected_error", method=method)
                status = internal_status()
            finally:
                log.info(
                    "rpc",
                    method=method,
                    outcome=outcome,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                )
            await context.abort(status.code, status.details, status.trailing_metadata)

        return guarded

    @staticmethod
    def _check_caller(method: str, roles: set[Role] | None) -> None:
        if roles is None or not any(method in ALLOWED_METHODS[role] for role in roles):
            raise AuthError(ErrorReason.CALLER_NOT_ALLOWED, Messages.CALLER_NOT_ALLOWED)


def _unavailable() -> AuthError:
    return AuthError(ErrorReason.SERVICE_UNAVAILABLE, Messages.SERVICE_UNAVAILABLE)
