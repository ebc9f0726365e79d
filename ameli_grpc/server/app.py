"""The grpc.aio server: services, interceptor, health, reflection, limits, graceful stop.

It serves an ``Application`` that the composition root (``ameli_grpc.bootstrap``)
built, with the ``ServerOptions`` it derived from the settings: this package
knows neither the adapters nor the settings.
"""

from __future__ import annotations

import asyncio
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
from ameli_grpc.server.health import Check, HealthMonitor
from ameli_grpc.server.interceptors import NO_RPC_OBSERVER, AuthServiceInterceptor, RpcObserver
from ameli_grpc.server.listening import CannotListen, ensure_can_listen
from ameli_grpc.server.servicer import AuthServicer

log = structlog.get_logger("ameli_grpc.server")

# Beyond the grace period, how long a stop may still take before it is given up on.
STOP_MARGIN = 5.0


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
    health_interval: float = 5.0
    shutdown_grace: float = 10.0
    reuse_port: bool = False
    reflection: bool = True
    # What the ``serving`` line says of the adapters, TLS, callers, metrics (no secret).
    summary: Mapping[str, object] = field(default_factory=dict)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    monitor: HealthMonitor
    grace: float

    async def stop(self) -> None:
        """Stop taking calls, let the ones under way finish (up to the grace period).

        Bounded: a stop that outlasts the grace period by ``STOP_MARGIN`` is
        given up on (and logged) rather than holding the process for ever.
        """
        await self.monitor.stop()
        try:
            async with asyncio.timeout(self.grace + STOP_MARGIN):
                await self.server.stop(self.grace)
        except TimeoutError:
            log.warning("stop_timed_out", grace_seconds=self.grace)


async def start_server(app: Application, options: ServerOptions) -> RunningServer:
    server = grpc.aio.server(
        interceptors=[AuthServiceInterceptor(app.caller_keys, app.clock, app.rpc_observer)],
        options=[
            ("grpc.max_receive_message_length", options.max_message_bytes),
            ("grpc.max_send_message_length", options.max_message_bytes),
            ("grpc.so_reuseport", 1 if options.reuse_port else 0),
        ],
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
    return RunningServer(server, port, monitor, options.shutdown_grace)


def _bind(server: grpc.aio.Server, options: ServerOptions) -> int:
    """The bound port; ``CannotListen`` (probed first, so gRPC logs nothing) if it cannot be."""
    ensure_can_listen(options.listen, reuse_port=options.reuse_port)
    try:
        if options.credentials is None:
            return server.add_insecure_port(options.listen)
        return server.add_secure_port(options.listen, options.credentials)
    except RuntimeError:  # taken between the probe and the bind
        raise CannotListen(f"cannot listen on {options.listen}") from None
