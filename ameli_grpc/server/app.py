"""The grpc.aio server: services, interceptors, health, reflection, limits, drain and stop.

It serves an ``Application`` that the composition root (``ameli_grpc.bootstrap``)
built, with the ``ServerOptions`` it derived from the settings: this package
knows neither the adapters nor the settings.

The stop, in order (``RunningServer.drain``): health NOT_SERVING at once; every
call still served for ``drain_delay`` (the load balancers notice and move
away); then no new call taken (``CallGate``); then every call under way
answered, within ``shutdown_grace``; only then gRPC's own stop. The caller
closes the adapters (database, Redis, the argon2 pool) after that, when no
call can need them any more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
import structlog
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ameli_grpc.domain.advisor import AdvisorUseCases
from ameli_grpc.domain.clock import Clock
from ameli_grpc.domain.login import LoginUseCases
from ameli_grpc.server.callers import CallerKeys
from ameli_grpc.server.drain import QUIET, CallGate
from ameli_grpc.server.health import Check, HealthMonitor
from ameli_grpc.server.interceptors import NO_RPC_OBSERVER, AuthServiceInterceptor, RpcObserver
from ameli_grpc.server.listening import CannotListen, ensure_can_listen
from ameli_grpc.server.servicer import AuthServicer

log = structlog.get_logger("ameli_grpc.server")

# Beyond the grace period, how long a stop may still take before it is given up on.
STOP_MARGIN = 5.0
# Once every call has its answer, gRPC's own stop still lets the answers leave for this long.
FLUSH_GRACE = 1.0


@dataclass(frozen=True)
class Application:
    """What the server exposes: the two use-case sets, who may call them, how health is judged."""

    login: LoginUseCases
    advisor: AdvisorUseCases
    caller_keys: CallerKeys
    clock: Clock
    health_checks: Sequence[Check] = ()
    rpc_observer: RpcObserver = NO_RPC_OBSERVER


@dataclass
class ServerOptions:
    """How to listen; ``credentials`` None is cleartext (the composition root decides when).

    Beyond ``max_concurrent_rpcs`` calls under way, gRPC itself answers
    RESOURCE_EXHAUSTED; a request larger than ``max_message_bytes`` too.
    """

    listen: str
    credentials: grpc.ServerCredentials | None = None
    max_message_bytes: int = 64 * 1024
    max_concurrent_rpcs: int = 1000
    # Calls in flight on one connection, announced to the client (HTTP/2
    # SETTINGS_MAX_CONCURRENT_STREAMS), which holds its further calls until one ends; 0: no bound.
    max_concurrent_streams: int = 32
    health_interval: float = 5.0
    shutdown_grace: float = 10.0
    drain_delay: float = 5.0
    reuse_port: bool = False
    reflection: bool = True
    # What the ``serving`` line says of the adapters, TLS, callers, metrics (no secret).
    summary: Mapping[str, object] = field(default_factory=dict)
    # Connections: a GOAWAY after ``max_connection_age`` (0: never), with the shutdown grace
    # for the calls under way on it; the server pings an idle client every ``keepalive_time``
    # and drops it without an answer within ``keepalive_timeout``; a client may ping every
    # ``min_client_ping_interval``, calls or not (gateways keep their channels warm).
    max_connection_age: float = 300.0
    keepalive_time: float = 60.0
    keepalive_timeout: float = 20.0
    min_client_ping_interval: float = 10.0

    def grpc_options(self) -> list[tuple[str, int]]:
        """The grpc.aio server's channel arguments."""
        options = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.so_reuseport", 1 if self.reuse_port else 0),
            ("grpc.keepalive_time_ms", _ms(self.keepalive_time)),
            ("grpc.keepalive_timeout_ms", _ms(self.keepalive_timeout)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(self.min_client_ping_interval)),
            ("grpc.http2.max_ping_strikes", 2),
        ]
        if self.max_concurrent_streams > 0:
            options += [
                ("grpc.max_concurrent_streams", self.max_concurrent_streams),
                # Counted as HTTP/2 counts them, so that the client's further calls wait for
                # a stream to end; by default gRPC counts a stream until it is freed, later,
                # and resets the calls beyond (REFUSED_STREAM), which clients do not retry.
                ("grpc.http.overload_protection", 0),
            ]
        if self.max_connection_age > 0:
            options += [
                ("grpc.max_connection_age_ms", _ms(self.max_connection_age)),
                # At least a second: a grace of 0 would cut the calls under way at the GOAWAY.
                ("grpc.max_connection_age_grace_ms", _ms(max(self.shutdown_grace, 1.0))),
            ]
        return options


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    monitor: HealthMonitor
    gate: CallGate
    grace: float
    drain_delay: float = 0.0

    async def drain(self, hurry: asyncio.Event | None = None) -> None:
        """SIGTERM's answer: NOT_SERVING at once, every call still served for ``drain_delay``
        (``hurry`` set ends the delay early: a second signal), then ``stop``."""
        await self.monitor.stop()
        log.info("draining", drain_delay_seconds=self.drain_delay, grace_seconds=self.grace)
        hurry = hurry or asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hurry.wait(), self.drain_delay)
        await self.stop(quiet=QUIET)

    async def stop(self, quiet: float = 0.0) -> None:
        """Take no new call, answer every call under way (up to the grace period), stop gRPC.

        With ``quiet``, also wait until no call has been picked up for that long,
        so that none is left in gRPC's queue (``CallGate.settled``): the drain
        after SIGTERM does, while calls may still come in; a test's teardown
        need not. Bounded: beyond the grace period the calls still running are
        cancelled, and a stop that outlasts it by ``STOP_MARGIN`` is given up on
        (and logged) rather than holding the process for ever.
        """
        await self.monitor.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        self.gate.close()
        log.info("stopping", calls_under_way=self.gate.under_way, grace_seconds=self.grace)
        settled = await self.gate.settled(deadline, quiet)
        if self.gate.under_way:  # the grace period is over: gRPC cancels them
            log.warning("stop_grace_expired", calls_under_way=self.gate.under_way)
            grace = 0.0
        else:  # every call taken has its answer; let the answers leave
            if not settled:
                log.warning("stop_while_calls_arrive", grace_seconds=self.grace)
            grace = max(deadline - loop.time(), FLUSH_GRACE)
        try:
            async with asyncio.timeout(grace + STOP_MARGIN):
                await self.server.stop(grace)
        except TimeoutError:
            log.warning("stop_timed_out", grace_seconds=self.grace)


async def start_server(app: Application, options: ServerOptions) -> RunningServer:
    gate = CallGate()
    server = grpc.aio.server(
        interceptors=[AuthServiceInterceptor(app.caller_keys, app.clock, gate, app.rpc_observer)],
        options=options.grpc_options(),
        maximum_concurrent_rpcs=options.max_concurrent_rpcs,
    )
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(app.login, app.advisor), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if options.reflection:
        reflection.enable_server_reflection(
            (
                auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
    port = _bind(server, options)
    await server.start()
    monitor = HealthMonitor(health_servicer, app.health_checks, options.health_interval)
    await monitor.start()
    if app.caller_keys.open:
        log.warning(
            "dev_mode_no_caller_keys",
            listen=options.listen,
            detail="every caller is accepted; configure API keys before any other use",
        )
    log.info("serving", listen=options.listen, port=port, **options.summary)
    return RunningServer(server, port, monitor, gate, options.shutdown_grace, options.drain_delay)


def _bind(server: grpc.aio.Server, options: ServerOptions) -> int:
    """The bound port; ``CannotListen`` (probed first, so gRPC logs nothing) if it cannot be."""
    ensure_can_listen(options.listen, reuse_port=options.reuse_port)
    try:
        if options.credentials is None:
            return server.add_insecure_port(options.listen)
        return server.add_secure_port(options.listen, options.credentials)
    except RuntimeError:  # taken between the probe and the bind
        raise CannotListen(f"cannot listen on {options.listen}") from None
