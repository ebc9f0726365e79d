"""One interceptor around every AuthService call: who is calling, and how it ended.

- caller authentication: ``authorization: Bearer <key>`` → a role; a role may
  call only its methods (SPEC §5); health and reflection stay open;
- error translation in one place: ``AuthError`` → its rich status,
  ``DependencyUnavailable`` → UNAVAILABLE, anything else → INTERNAL with
  nothing of the cause leaked to the caller;
- one log line per call, with no personal data (method, outcome, duration).
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
import structlog

from ameli_grpc.domain.clock import Clock
from ameli_grpc.domain.errors import AuthError, DependencyUnavailable, ErrorReason
from ameli_grpc.domain.messages import Messages
from ameli_grpc.server.errors import internal_status, refusal_status

SERVICE_PREFIX = "/ameli.auth.v1.AuthService/"
log = structlog.get_logger("ameli_grpc.rpc")

Behaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class Role(enum.Enum):
    PORTAL = "portal"
    ADVISOR = "advisor"


ALLOWED_METHODS: dict[Role, frozenset[str]] = {
    Role.PORTAL: frozenset({"CheckCredentials", "RequestCode", "VerifyCode", "GetLockStatus"}),
    Role.ADVISOR: frozenset({"GetLockStatus", "ResetAccount"}),
}


class CallerKeys:
    """The bearer keys of the calling applications; with none configured, dev mode lets all in."""

    def __init__(self, keys: Mapping[Role, frozenset[str]]) -> None:
        self._roles: dict[bytes, set[Role]] = {}
        for role, role_keys in keys.items():
            for key in role_keys:
                self._roles.setdefault(_fingerprint(key), set()).add(role)

    @property
    def open(self) -> bool:
        return not self._roles

    def roles(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> set[Role] | None:
        """The roles of the presented key; None when no known key is presented."""
        if self.open:
            return set(Role)
        for name, value in metadata or ():
            if (
                name == "authorization"
                and isinstance(value, str)
                and value[:7].lower() == "bearer "
            ):
                return self._roles.get(_fingerprint(value[7:].strip()))
        return None


class AuthServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, keys: CallerKeys, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(SERVICE_PREFIX):
            return handler
        if handler.unary_unary is None:
            return handler
        method = details.method.removeprefix(SERVICE_PREFIX)
        roles = self._keys.roles(details.invocation_metadata)
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(method, roles, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, method: str, roles: set[Role] | None, behaviour: Behaviour) -> Behaviour:
        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
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
                log.warning("dependency_unavailable", method=method, error=type(error).__name__)
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


def _fingerprint(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
