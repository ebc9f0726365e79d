"""One interceptor around every AuthService call: who is calling, and how it ended.

- caller authentication: ``authorization: Bearer <key>`` → a named caller and
  its roles; a role may call only its methods (SPEC §5, §7.1); health and
  reflection stay open; a caller refused is refused before its request is
  parsed (SPEC §7.5), so unknown callers cost no protobuf decoding;
- the request's form, before any effect (``server.validation``, SPEC §8):
  bytes that are not the message, and fields out of their rules, are
  ``INVALID_REQUEST`` like any refusal. grpc.aio would answer UNKNOWN, naming
  the parser's exception, if the deserializer raised: ours never does, it
  hands the behaviour a ``Malformed`` marker instead;
- error translation in one place: ``AuthError`` → its rich status,
  ``DependencyUnavailable`` → UNAVAILABLE, anything else → INTERNAL with
  nothing of the cause leaked to the caller;
- one ``rpc`` log line per call, with no personal data: method, gRPC code,
  refusal reason, caller, peer (the calling gateway's address), duration,
  worker pid, request id; the caller's name (never its key) is bound to every
  log line of the call;
- the call counted (``RpcObserver``: the Prometheus metrics, SPEC §9);
- the request id (SPEC §9): the caller's ``x-request-id`` when it is sane, else a
  new UUID, bound to every log line of the call, given to the audit trail
  (``domain.context``) and echoed in the response's initial metadata, refusals
  included.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, cast

import grpc
import structlog

from ameli_grpc.domain.clock import Clock
from ameli_grpc.domain.context import CallContext, enter_call
from ameli_grpc.domain.errors import AuthError, DependencyUnavailable, ErrorReason
from ameli_grpc.domain.messages import Messages
from ameli_grpc.server.callers import Caller, CallerKeys, current_caller
from ameli_grpc.server.drain import CallGate
from ameli_grpc.server.errors import internal_status, refusal_status
from ameli_grpc.server.validation import check_request

SERVICE_NAME = "ameli.auth.v1.AuthService"
SERVICE_PREFIX = f"/{SERVICE_NAME}/"
_PREFIX_LENGTH = len(SERVICE_PREFIX)
REQUEST_ID_KEY = "x-request-id"
# 1 to 128 printable ASCII characters, no space at either end; anything else is replaced.
_SANE_REQUEST_ID = re.compile(r"[!-~](?:[ -~]{0,126}[!-~])?")
log = structlog.get_logger("ameli_grpc.rpc")
# The process's pid, read once rather than by a system call per call (and again in a fork).
_PID = os.getpid()


def _refresh_pid() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)

# Strings: grpc's classes are generic only in their type stubs.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Behaviour: TypeAlias = Callable[[Any, Context], Awaitable[Any]]
Deserializer: TypeAlias = Callable[[bytes], Any]


class RpcObserver(Protocol):
    """Told of each AuthService call: when it starts, and how it ended (the metrics)."""

    def started(self, method: str) -> None: ...

    def handled(self, method: str, code: str, reason: str, seconds: float) -> None:
        """``code`` is the gRPC status name (``OK``, ``UNAUTHENTICATED``…), ``reason`` the
        refusal's ``ErrorReason`` value or empty."""


class NoRpcObserver:
    def started(self, method: str) -> None:
        pass

    def handled(self, method: str, code: str, reason: str, seconds: float) -> None:
        pass


NO_RPC_OBSERVER: RpcObserver = NoRpcObserver()

# The call under way: its caller (None: no known key) and its request id.
_this_call: ContextVar[tuple[Caller | None, str]] = ContextVar("this_call")


class AuthServiceInterceptor(grpc.aio.ServerInterceptor):
    """Per call: who calls and its request id, set in the call's own context; the wrapped
    handler of each method is built once (``_handler_of``), not per call.

    grpc.aio runs each call in a task of its own, from the lookup of its
    handler to its answer, and a task has its own copy of the context
    variables: what ``intercept_service`` sets there is the call's alone, seen
    by its behaviour, its log lines and its audit rows, and needs no reset.
    """

    def __init__(
        self,
        keys: CallerKeys,
        clock: Clock,
        gate: CallGate,
        observer: RpcObserver = NO_RPC_OBSERVER,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._gate = gate
        self._observer = observer
        # By full method name and whether the caller may call it; a servicer's handlers
        # are registered before the server starts and stay what they are.
        self._handlers: dict[tuple[str, bool], Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        details = handler_call_details
        self._gate.arrived()
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        full_method = details.method
        if not full_method.startswith(SERVICE_PREFIX):
            return handler
        caller = self._keys.caller(details.invocation_metadata)
        rid = request_id(details.invocation_metadata)
        name = _name(caller)
        _this_call.set((caller, rid))  # this call's context only (see the class)
        structlog.contextvars.bind_contextvars(caller=name, request_id=rid)
        enter_call(CallContext(name, rid))
        allowed = caller is not None and caller.may_call(full_method[_PREFIX_LENGTH:])
        wrapped = self._handlers.get((full_method, allowed))
        if wrapped is None:
            wrapped = self._handlers[(full_method, allowed)] = self._handler_of(
                full_method[_PREFIX_LENGTH:], handler, allowed
            )
        return wrapped

    def _handler_of(self, method: str, handler: Handler, allowed: bool) -> Handler:
        """``handler`` guarded; a refused caller's bytes are never parsed (``_guarded``
        refuses it before the behaviour would see a request)."""
        # grpc.aio hands this interceptor the servicer's coroutine method
        behaviour = cast(Behaviour, handler.unary_unary)

        async def guarded(request: Any, context: Context) -> Any:
            caller, rid = _this_call.get()
            return await self._guarded(method, caller, behaviour, request, context, rid)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=_tolerant(handler.request_deserializer) if allowed else _unparsed,
            response_serializer=handler.response_serializer,
        )

    async def _guarded(
        self,
        method: str,
        caller: Caller | None,
        behaviour: Behaviour,
        request: Any,
        context: Context,
        rid: str,
    ) -> Any:
        started = time.perf_counter()
        self._observer.started(method)
        status: grpc.Status | None = None
        code, reason = grpc.StatusCode.OK, ""
        try:
            # First: every answer carries it, a refusal or an unexpected error too. Once these
            # headers are out, gRPC clients no longer retry the call: the client's channel
            # retries UNAVAILABLE for transport failures, never for a refusal of ours.
            await context.send_initial_metadata(((REQUEST_ID_KEY, rid),))
            if caller is None or not caller.may_call(method):
                raise AuthError(ErrorReason.CALLER_NOT_ALLOWED, Messages.CALLER_NOT_ALLOWED)
            current_caller.set(caller)
            if isinstance(request, Malformed):
                log.info("malformed_request", method=method, error=request.error)
                raise AuthError(ErrorReason.INVALID_REQUEST, Messages.INVALID_REQUEST)
            check_request(request)  # before the behaviour: nothing has happened yet
            with self._gate.entered():  # refused once the server stops (``server.drain``)
                return await behaviour(request, context)
        except AuthError as error:
            reason = error.reason.value
            unauthenticated = grpc.StatusCode.UNAUTHENTICATED if caller is None else None
            status = refusal_status(error, self._clock.now(), unauthenticated)
        except DependencyUnavailable as error:
            reason = ErrorReason.SERVICE_UNAVAILABLE.value
            log.warning(
                "dependency_unavailable",
                method=method,
                dependency=error.dependency,
                error=error.detail,
            )
            status = refusal_status(_unavailable(), self._clock.now())
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the caller gave up, or the server stopped
            raise
        except Exception:
            log.exception("unexpected_error", method=method)
            status = internal_status()
        finally:
            code = status.code if status is not None else code
            self._handled(method, caller, context, rid, (code, reason), started)
        assert status is not None  # every branch that did not return or raise set it
        await context.abort(status.code, status.details, status.trailing_metadata)

    def _handled(
        self,
        method: str,
        caller: Caller | None,
        context: Context,
        rid: str,
        ending: tuple[grpc.StatusCode, str],
        started: float,
    ) -> None:
        """Count the call and write its ``rpc`` line."""
        code, reason = ending
        seconds = time.perf_counter() - started
        self._observer.handled(method, code.name, reason, seconds)
        if not log.is_enabled_for(logging.INFO):  # AMELI_LOG_LEVEL=warning: no line to build
            return
        log.info(
            "rpc",
            method=method,
            code=code.name,
            reason=reason,
            caller=_name(caller),  # also bound above; explicit for capture_logs
            peer=context.peer(),
            pid=_PID,
            request_id=rid,
            outcome=reason or code.name,
            duration_ms=round(seconds * 1000, 1),
        )


def request_id(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The caller's ``x-request-id`` if it is 1–128 printable ASCII characters, else a UUID4."""
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and _SANE_REQUEST_ID.fullmatch(value):
            return value
    return str(uuid.uuid4())


def _unparsed(_request: bytes) -> None:
    """The request of a caller that may not call: left as bytes nobody reads."""
    return None


@dataclass(frozen=True)
class Malformed:
    """Request bytes that are not the message; ``error`` names why, for the log only."""

    error: str


def _tolerant(deserializer: Deserializer | None) -> Deserializer | None:
    """The method's deserializer, answering ``Malformed`` instead of raising."""
    if deserializer is None:
        return None
    parse = deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as error:  # DecodeError, or whatever else a parser raises on bytes
            return Malformed(type(error).__name__)

    return deserialize


def _name(caller: Caller | None) -> str:
    """The caller's name for the logs; never its key."""
    return caller.name if caller else "unknown"


def _unavailable() -> AuthError:
    return AuthError(ErrorReason.SERVICE_UNAVAILABLE, Messages.SERVICE_UNAVAILABLE)
